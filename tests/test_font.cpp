// The 5x7 bitmap font (tensor/formats/font.h) and the labels it draws above image grids (tensor/formats/png.h).
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "tensor/formats/font.h"
#include "tensor/formats/png.h"

using namespace dl;

namespace {
// The pixels of `text` drawn alone at scale 1 into a picture just its size, ink 255 on 0.
std::vector<uint8_t> render(const std::string& text) {
    int w = std::max(text_width(text), 1), h = text_height();
    std::vector<uint8_t> px(size_t(w * h), 0);
    draw_text(px, w, h, 0, 0, text, 255);
    return px;
}
int count_ink(const std::vector<uint8_t>& px, uint8_t ink = 255) { return int(std::count(px.begin(), px.end(), ink)); }
}  // namespace

TEST_CASE("font: text size arithmetic") {
    CHECK(text_width("") == 0);
    CHECK(text_width("a") == 5);
    CHECK(text_width("ab") == 11);            // 5 + 1 + 5
    CHECK(text_width("t=999") == 29);         // 5 glyphs, 4 gaps
    CHECK(text_width("t=999", 2) == 58);
    CHECK(text_width("step 1500", 3) == 159);  // (9 * 6 - 1) * 3
    CHECK(text_height() == 7);
    CHECK(text_height(4) == 28);
    CHECK_THROWS_WITH(text_width("a", 0), "text_width: expected scale in [1, 16], got 0");
    CHECK_THROWS_WITH(text_height(17), "text_height: expected scale in [1, 16], got 17");
}

TEST_CASE("font: every printable character has its own glyph") {
    CHECK(count_ink(render(" ")) == 0);
    std::set<std::string> seen;  // each glyph as 35 characters, '#' ink and '.' paper
    for (int c = 33; c <= 126; c++) {
        std::vector<uint8_t> px = render(std::string(1, char(c)));
        std::string picture;
        for (uint8_t p : px) picture += p == 255 ? '#' : '.';
        INFO("character '", std::string(1, char(c)), "': ", picture);
        CHECK(count_ink(px) > 0);
        CHECK(seen.insert(picture).second);  // no two characters look the same
    }
    CHECK(seen.size() == 94);
    CHECK(render("1") != render("0"));
    CHECK(render("l") != render("1"));
    CHECK(render("O") != render("0"));
    // bytes without a glyph draw as '?'
    CHECK(render("\t") == render("?"));
    CHECK(render("\xC3") == render("?"));
}

TEST_CASE("font: draw_text places glyphs, scales them and leaves paper alone") {
    // '|' is the middle column, full height: at (3, 1) in a 12x10 picture of 7s, scale 1
    std::vector<uint8_t> px(12 * 10, 7);
    draw_text(px, 12, 10, 3, 1, "|", 200);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 12; x++) CHECK(px[size_t(y * 12 + x)] == (x == 5 && y >= 1 && y < 8 ? 200 : 7));

    // "-" at scale 2: the middle row (row 3) full width, as 2x2 blocks: 10 x 2 pixels
    std::vector<uint8_t> big(20 * 20, 0);
    draw_text(big, 20, 20, 0, 0, "-", 255, 2);
    CHECK(count_ink(big) == 20);
    for (int x = 0; x < 10; x++) {
        CHECK(big[size_t(6 * 20 + x)] == 255);
        CHECK(big[size_t(7 * 20 + x)] == 255);
    }
    // the second character starts 6 * scale pixels to the right of the first
    std::vector<uint8_t> two(30 * 14, 0);
    draw_text(two, 30, 14, 0, 0, "--", 255, 2);
    CHECK(two[size_t(6 * 30 + 11)] == 0);  // the 2-pixel gap
    CHECK(two[size_t(6 * 30 + 12)] == 255);
    CHECK(count_ink(two) == 40);

    CHECK_THROWS_WITH(draw_text(px, 12, 9, 0, 0, "a", 255), "draw_text: expected 12x9 = 108 pixels, got 120");
    CHECK_THROWS_WITH(draw_text(px, 12, 10, 0, 0, "a", 255, 0), "draw_text: expected scale in [1, 16], got 0");
}

TEST_CASE("font: drawing is clipped at every edge") {
    // '#' covers its corners' neighbours; draw it hanging off each side of a 4x4 picture
    // (ASan, in make test-san, catches any write outside the vector)
    const int w = 4, h = 4;
    for (int x : {-100, -6, -3, 0, 2, 3, 100})
        for (int y : {-100, -8, -4, 0, 2, 3, 100})
            for (int scale : {1, 3}) {
                std::vector<uint8_t> px(size_t(w * h), 0);
                draw_text(px, w, h, x, y, "#@W", 255, scale);
                bool far = x <= -18 * scale || x >= w || y <= -7 * scale || y >= h;
                if (far) CHECK(count_ink(px) == 0);
            }
    // a picture with no pixels at all, and text far left of a 1-pixel picture
    std::vector<uint8_t> none;
    draw_text(none, 0, 0, 0, 0, "abc", 255);
    std::vector<uint8_t> one(1, 0);
    draw_text(one, 1, 1, -2000000000, 0, std::string(100, 'M'), 255, 16);
    draw_text(one, 1, 1, 2000000000, 2000000000, "M", 255, 16);
    CHECK(one[0] == 0);
    // a partly visible glyph keeps the pixels it has inside: the right half of 'H' at x = -2
    std::vector<uint8_t> part(5 * 7, 0), whole(5 * 7, 0);
    draw_text(part, 5, 7, -2, 0, "H", 255);
    draw_text(whole, 5, 7, 0, 0, "H", 255);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 3; x++) CHECK(part[size_t(y * 5 + x)] == whole[size_t(y * 5 + x + 2)]);
    CHECK(count_ink(part) == 7 + 2);  // the right stroke and the middle bar's last two pixels
}

namespace {
// The ink (255) of a labeled grid's band in x range [x0, x1), and anywhere in the whole picture.
int ink_in(const std::vector<uint8_t>& px, int w, int band, int x0, int x1) {
    int n = 0;
    for (int y = 0; y < band; y++)
        for (int x = x0; x < x1; x++) n += px[size_t(y * w + x)] == 255;
    return n;
}
// n black 28x28 digits (value -1), so that only labels are white
Tensor black_images(int64_t n) { return Tensor::full({n, 1, 28, 28}, -1.0); }
}  // namespace

TEST_CASE("font: labeled grid puts a band on top with each label above its column") {
    const int nrow = 3, scale = 2;
    int w0 = 0, h0 = 0, w = 0, h = 0;
    std::vector<uint8_t> plain = labeled_grid(black_images(6), nrow, scale, {}, w0, h0);
    CHECK(w0 == (3 * 30 + 2) * 2);
    CHECK(h0 == (2 * 30 + 2) * 2);
    CHECK(count_ink(plain) == 0);

    std::vector<std::string> cols = {"a", "t=50", "x_0"};  // at most 47 pixels at font scale 2
    std::vector<uint8_t> px = labeled_grid(black_images(6), nrow, scale, GridLabels{"", cols}, w, h);
    const int band = 4 + 7 * 2 + 4;  // gap, the labels at font scale 2, gap
    CHECK(w == w0);
    REQUIRE(h == h0 + band);
    // under the band: the unlabeled grid, pixel for pixel
    CHECK(std::vector<uint8_t>(px.begin() + band * w, px.end()) == plain);
    // column c's images span x in [4 + 60c, 60 + 60c): its label lies in [2 + 60c, 62 + 60c),
    // all of it (each font pixel a 2x2 block), between the band's gaps
    for (int c = 0; c < nrow; c++) {
        INFO("column ", c);
        CHECK(ink_in(px, w, band, 2 + 60 * c, 62 + 60 * c) == 4 * count_ink(render(cols[size_t(c)])));
    }
    CHECK(count_ink(px) == ink_in(px, w, band, 0, w));
    CHECK(ink_in(px, w, 4, 0, w) == 0);                                    // the top gap
    CHECK(std::count(px.begin() + (band - 4) * w, px.begin() + band * w, 255) == 0);  // the bottom gap

    // a title alone, then a title above the column labels
    std::vector<uint8_t> t = labeled_grid(black_images(6), nrow, scale, GridLabels{"step 1500", {}}, w, h);
    CHECK(h == h0 + band);
    CHECK(count_ink(t) == ink_in(t, w, band, 0, w));
    CHECK(count_ink(t) == 4 * count_ink(render("step 1500")));
    std::vector<uint8_t> both = labeled_grid(black_images(6), nrow, scale, GridLabels{"step 1500", cols}, w, h);
    CHECK(h == h0 + 4 + 14 + 4 + 14 + 4);
    CHECK(ink_in(both, w, 4 + 14 + 4, 0, w) == count_ink(t));  // the title's line

    // the number of labels is 0 or nrow
    CHECK_THROWS_WITH(labeled_grid(black_images(6), nrow, scale, GridLabels{"", {"a", "b"}}, w, h),
                      "labeled_grid: expected 0 or nrow = 3 column labels, got 2");
    CHECK_THROWS_WITH(write_png_grid("unused.png", black_images(6), nrow, scale, GridLabels{"", {"a", "b", "c", "d"}}),
                      "labeled_grid: expected 0 or nrow = 3 column labels, got 4");
    CHECK_THROWS_WITH(labeled_grid(black_images(6), nrow, 0, {}, w, h), "labeled_grid: expected scale in [1, 16], got 0");
}

TEST_CASE("font: long labels shrink, then are cut, never overlapping") {
    int w0 = 0, h0 = 0, w = 0, h = 0;
    labeled_grid(black_images(2), 2, 2, {}, w0, h0);
    // "t=999" is 58 pixels wide at font scale 2, more than a 60-pixel column less a blank
    // character (12 pixels): font scale 1 for every label
    std::vector<std::string> cols = {"t=999", "t=0"};
    std::vector<uint8_t> px = labeled_grid(black_images(2), 2, 2, GridLabels{"", cols}, w, h);
    const int band = 4 + 7 + 4;
    REQUIRE(h == h0 + band);
    CHECK(ink_in(px, w, band, 2, 62) == count_ink(render("t=999")));
    CHECK(ink_in(px, w, band, 62, 122) == count_ink(render("t=0")));

    // at scale 1 a column is 30 pixels: 5 glyphs (29 pixels) fit, 1 pixel from the next
    // label; longer labels are cut
    labeled_grid(black_images(2), 2, 1, {}, w0, h0);
    const int band1 = 2 + 7 + 2;
    px = labeled_grid(black_images(2), 2, 1, GridLabels{"", {"t=999", "t=856"}}, w, h);
    REQUIRE(h == h0 + band1);
    CHECK(ink_in(px, w, band1, 1, 31) == count_ink(render("t=999")));
    CHECK(ink_in(px, w, band1, 31, 61) == count_ink(render("t=856")));
    px = labeled_grid(black_images(2), 2, 1, GridLabels{"", {"abcdefgh", "ABCDEFGH"}}, w, h);
    CHECK(ink_in(px, w, band1, 1, 31) == count_ink(render("abcde")));
    CHECK(ink_in(px, w, band1, 31, 61) == count_ink(render("ABCDE")));
    CHECK(count_ink(px) == ink_in(px, w, band1, 0, w));

    // fewer images than nrow: the grid has 2 columns and the third label is not drawn
    px = labeled_grid(black_images(2), 3, 1, GridLabels{"", {"1", "2", "3"}}, w, h);
    CHECK(w == w0);
    CHECK(count_ink(px) == count_ink(render("12")));
}
