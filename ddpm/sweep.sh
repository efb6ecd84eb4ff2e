#!/bin/sh
# The measurement behind make train's defaults (ddpm/README.md, "The 30-minute recipe"): each line of a
# sweep file trains one run for a fixed time budget and scores it with build/eval, and the rows
# go into one Markdown table.
#
#   [BUILD=build] sh ddpm/sweep.sh SWEEP_FILE OUT_DIR MINUTES N DDIM_STEPS DATA_DIR
#
# A sweep file has one configuration per line, `name | train flags | eval flags` ('#' starts a
# comment). `@other` in place of the train flags scores the run of the line named `other` again
# with this line's eval flags (the sampler choices), without training anything. Each run trains
# into OUT_DIR/<name> for MINUTES of wall time (train --minutes: the step count is sized to the
# budget from the run's own pace), then N samples (DDIM_STEPS unless the eval flags say
# otherwise) are scored by the ruler (build/eval --json's ruler_* fields: the mean FID over its
# judges and their standard deviation, the mean KID with its standard error, precision and recall)
# against N held-out test digits, beside the floor: N real training digits against the same test
# digits. Rows go to OUT_DIR/table.md as each run finishes, so an
# interrupted sweep keeps what it measured; started again, it skips the runs that are done.
#
# Long: every line costs MINUTES plus its evaluation. Run nothing else on the machine meanwhile,
# since the budget is wall time.
set -eu
[ $# -eq 6 ] || { echo "usage: sh ddpm/sweep.sh SWEEP_FILE OUT_DIR MINUTES N DDIM_STEPS DATA_DIR" >&2; exit 2; }
file=$1 out=$2 minutes=$3 n=$4 ddim=$5 data=$6
[ -f "$file" ] || { echo "sweep: no sweep file $file" >&2; exit 1; }
mkdir -p "$out"
table=$out/table.md

# A number from eval's one-line JSON: field "$2" of "$1".
field() { printf '%s\n' "$1" | sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p"; }
# Flags as Markdown code, '-' for none.
code() { if [ -n "$1" ]; then printf '`%s`' "$1"; else printf -- '-'; fi; }
bin=${BUILD:-build}

if [ ! -f "$table" ]; then
    {
        echo "Sweep \`$file\`: $minutes-minute runs on $data, each scored at n = $n (DDIM $ddim unless the eval flags say otherwise) against $n held-out test digits."
        echo
        echo "FID: the mean over the ruler's judges and their sd; KID x 10^3: the judges' mean and its standard error (ddpm/eval/README.md)."
        echo
        echo "| run | train flags | eval flags | steps | images/s | FID mean | FID sd | KID x 10^3 | KID se x 10^3 | precision | recall | floor FID mean | floor KID x 10^3 |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    } > "$table"
elif ! grep -q '^| run | .* | FID mean |' "$table"; then
    echo "sweep: $table has the single judge's columns (written before the ruler); give another OUT_DIR, or move the table aside" >&2
    exit 1
fi

grep -v '^[[:space:]]*#' "$file" | grep -v '^[[:space:]]*$' | while IFS='|' read -r name train_flags eval_flags; do
    name=$(echo "$name" | tr -d '[:space:]')
    train_flags=$(echo "$train_flags" | sed 's/^ *//; s/ *$//')
    eval_flags=$(echo "${eval_flags:-}" | sed 's/^ *//; s/ *$//')
    if grep -q "^| $name |" "$table"; then echo "sweep: $name is in $table already; skipped"; continue; fi
    run=$out/$name
    case $train_flags in
        @*) run=$out/${train_flags#@}
            [ -f "$run/checkpoint.safetensors" ] || { echo "sweep: $name scores $run, which has no checkpoint (is its line above this one?)" >&2; exit 1; } ;;
        *)  echo "sweep: training $name ($train_flags) for $minutes minutes"
            # word splitting of the flags is intended
            # shellcheck disable=SC2086
            "$bin/train" --data "$data" --out "$run" --resume --minutes "$minutes" --grad-norms-every 0 $train_flags ;;
    esac
    echo "sweep: scoring $name ($n samples${eval_flags:+, $eval_flags})"
    # shellcheck disable=SC2086
    json=$("$bin/eval" --data "$data" --checkpoint "$run/checkpoint.safetensors" --n "$n" --sampler ddim --ddim-steps "$ddim" --bpd-n 0 --json $eval_flags)
    last=$(tail -n 1 "$run/loss.csv")  # step,loss,grad_norm,lr,seconds
    steps=${last%%,*}
    seconds=${last##*,}
    batch=$(head -c 65536 "$run/checkpoint.safetensors" | grep -ao ' batch=[0-9]*' | head -n 1 | cut -d= -f2)  # the header's "train" key
    ips=$(awk -v s="$steps" -v t="$seconds" -v b="$batch" 'BEGIN { printf "%.1f", s * b / t }')
    kid=$(awk -v k="$(field "$json" ruler_kid)" 'BEGIN { printf "%.2f", 1000 * k }')
    kid_se=$(awk -v k="$(field "$json" ruler_kid_se)" 'BEGIN { printf "%.2f", 1000 * k }')
    floor_kid=$(awk -v k="$(field "$json" ruler_floor_kid)" 'BEGIN { printf "%.2f", 1000 * k }')
    printf '| %s | %s | %s | %s | %s | %.2f | %.2f | %s | %s | %.3f | %.3f | %.2f | %s |\n' "$name" "$(code "$train_flags")" "$(code "$eval_flags")" \
        "$steps" "$ips" "$(field "$json" ruler_fid_mean)" "$(field "$json" ruler_fid_sd)" "$kid" "$kid_se" "$(field "$json" ruler_precision)" \
        "$(field "$json" ruler_recall)" "$(field "$json" ruler_floor_fid_mean)" "$floor_kid" >> "$table"
    tail -n 1 "$table"
done
echo "sweep: $table"
