// The 5x7 font of font.h: glyphs drawn as text below, read into row bitmasks on first use.
#include "tensor/formats/font.h"

#include <algorithm>
#include <array>

#include "tensor/tensor.h"

namespace dl {

namespace {
constexpr int kFirstChar = 32, kNumChars = 95;  // ' ' .. '~'
constexpr int kPerBand = 8;                     // glyphs side by side in one band of the sheet

// The glyph sheet: bands of 8 characters (the comment above each band names them, "sp" is the
// space), 7 strings per band, one per pixel row, glyphs 5 characters wide ('#' ink, '.' paper)
// separated by one space. The last band holds 7 glyphs.
const char* const kSheet[] = {
    // sp    !     "     #     $     %     &     '
    "..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#..",
    "..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#..",
    "..... ..#.. .#.#. ##### #.#.. ...#. #.#.. ..#..",
    "..... ..#.. ..... .#.#. .###. ..#.. .#... .....",
    "..... ..#.. ..... ##### ..#.# .#... #.#.# .....",
    "..... ..... ..... .#.#. ####. #..## #..#. .....",
    "..... ..#.. ..... .#.#. ..#.. ...## .##.# .....",

    // (     )     *     +     ,     -     .     /
    "...#. .#... ..... ..... ..... ..... ..... .....",
    "..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#",
    ".#... ...#. #.#.# ..#.. ..... ..... ..... ...#.",
    ".#... ...#. .###. ##### ..... ##### ..... ..#..",
    ".#... ...#. #.#.# ..#.. .##.. ..... ..... .#...",
    "..#.. ..#.. ..#.. ..#.. ..#.. ..... .##.. #....",
    "...#. .#... ..... ..... .#... ..... .##.. .....",

    // 0     1     2     3     4     5     6     7
    ".###. ..#.. .###. ##### ...#. ##### ..##. #####",
    "#...# .##.. #...# ...#. ..##. #.... .#... ....#",
    "#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#.",
    "#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#..",
    "##..# ..#.. ..#.. ....# ##### ....# #...# .#...",
    "#...# ..#.. .#... #...# ...#. #...# #...# .#...",
    ".###. .###. ##### .###. ...#. .###. .###. .#...",

    // 8     9     :     ;     <     =     >     ?
    ".###. .###. ..... ..... ...#. ..... .#... .###.",
    "#...# #...# .##.. .##.. ..#.. ..... ..#.. #...#",
    "#...# #...# .##.. .##.. .#... ##### ...#. ....#",
    ".###. .#### ..... ..... #.... ..... ....# ...#.",
    "#...# ....# .##.. .##.. .#... ##### ...#. ..#..",
    "#...# ...#. .##.. ..#.. ..#.. ..... ..#.. .....",
    ".###. .##.. ..... .#... ...#. ..... .#... ..#..",

    // @     A     B     C     D     E     F     G
    ".###. .###. ####. .###. ###.. ##### ##### .###.",
    "#...# #...# #...# #...# #..#. #.... #.... #...#",
    "....# #...# #...# #.... #...# #.... #.... #....",
    ".##.# #...# ####. #.... #...# ####. ####. #.###",
    "#.#.# ##### #...# #.... #...# #.... #.... #...#",
    "#.#.# #...# #...# #...# #..#. #.... #.... #...#",
    ".###. #...# ####. .###. ###.. ##### #.... .####",

    // H     I     J     K     L     M     N     O
    "#...# .###. ..### #...# #.... #...# #...# .###.",
    "#...# ..#.. ...#. #..#. #.... ##.## #...# #...#",
    "#...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#",
    "##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#",
    "#...# ..#.. ...#. #.#.. #.... #...# #..## #...#",
    "#...# ..#.. #..#. #..#. #.... #...# #...# #...#",
    "#...# .###. .##.. #...# ##### #...# #...# .###.",

    // P     Q     R     S     T     U     V     W
    "####. .###. ####. .#### ##### #...# #...# #...#",
    "#...# #...# #...# #.... ..#.. #...# #...# #...#",
    "#...# #...# #...# #.... ..#.. #...# #...# #...#",
    "####. #...# ####. .###. ..#.. #...# #...# #.#.#",
    "#.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.#",
    "#.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.#",
    "#.... .##.# #...# ####. ..#.. .###. ..#.. .#.#.",

    // X     Y     Z     [     \     ]     ^     _
    "#...# #...# ##### .###. ..... .###. ..#.. .....",
    "#...# #...# ....# .#... #.... ...#. .#.#. .....",
    ".#.#. #...# ...#. .#... .#... ...#. #...# .....",
    "..#.. .#.#. ..#.. .#... ..#.. ...#. ..... .....",
    ".#.#. ..#.. .#... .#... ...#. ...#. ..... .....",
    "#...# ..#.. #.... .#... ....# ...#. ..... .....",
    "#...# ..#.. ##### .###. ..... .###. ..... #####",

    // `     a     b     c     d     e     f     g
    ".#... ..... #.... ..... ....# ..... ..##. .....",
    "..#.. ..... #.... ..... ....# ..... .#..# .....",
    "...#. .###. #.##. .###. .##.# .###. .#... .####",
    "..... ....# ##..# #.... #..## #...# ###.. #...#",
    "..... .#### #...# #.... #...# ##### .#... .####",
    "..... #...# #...# #...# #...# #.... .#... ....#",
    "..... .#### ####. .###. .#### .###. .#... .###.",

    // h     i     j     k     l     m     n     o
    "#.... ..#.. ...#. #.... .##.. ..... ..... .....",
    "#.... ..... ..... #.... ..#.. ..... ..... .....",
    "#.##. .##.. ..##. #..#. ..#.. ##.#. #.##. .###.",
    "##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..# #...#",
    "#...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#",
    "#...# ..#.. #..#. #.#.. ..#.. #...# #...# #...#",
    "#...# .###. .##.. #..#. .###. #...# #...# .###.",

    // p     q     r     s     t     u     v     w
    "..... ..... ..... ..... .#... ..... ..... .....",
    "..... ..... ..... ..... .#... ..... ..... .....",
    "####. .#### #.##. .#### ###.. #...# #...# #...#",
    "#...# #...# ##..# #.... .#... #...# #...# #...#",
    "####. .#### #.... .###. .#... #...# #...# #.#.#",
    "#.... ....# #.... ....# .#..# #..## .#.#. #.#.#",
    "#.... ....# #.... ####. ..##. .##.# ..#.. .#.#.",

    // x     y     z     {     |     }     ~
    "..... ..... ..... ...#. ..#.. .#... .....",
    "..... ..... ..... ..#.. ..#.. ..#.. .....",
    "#...# #...# ##### ..#.. ..#.. ..#.. .#...",
    ".#.#. #...# ...#. .#... ..#.. ...#. #.#.#",
    "..#.. .#### ..#.. ..#.. ..#.. ..#.. ...#.",
    ".#.#. ....# .#... ..#.. ..#.. ..#.. .....",
    "#...# .###. ##### ...#. ..#.. .#... .....",
};
constexpr int kBands = (kNumChars + kPerBand - 1) / kPerBand;
static_assert(sizeof(kSheet) / sizeof(kSheet[0]) == size_t(kBands * kGlyphHeight), "7 rows per band");

// One glyph: 7 rows, bit 4 of a row the leftmost pixel, bit 0 the rightmost.
using Glyph = std::array<uint8_t, kGlyphHeight>;

std::array<Glyph, kNumChars> read_sheet() {
    std::array<Glyph, kNumChars> glyphs{};
    for (int i = 0; i < kNumChars; i++)
        for (int r = 0; r < kGlyphHeight; r++) {
            const std::string row = kSheet[(i / kPerBand) * kGlyphHeight + r];
            size_t at = size_t(i % kPerBand) * kGlyphAdvance;
            if (at + kGlyphWidth > row.size()) fail("font: sheet row of '", char(kFirstChar + i), "' is too short");
            for (int c = 0; c < kGlyphWidth; c++) {
                char p = row[at + size_t(c)];
                if (p != '#' && p != '.') fail("font: bad pixel '", p, "' in the glyph of '", char(kFirstChar + i), "'");
                if (p == '#') glyphs[size_t(i)][size_t(r)] |= uint8_t(1 << (kGlyphWidth - 1 - c));
            }
        }
    return glyphs;
}

const Glyph& glyph_of(unsigned char ch) {
    static const std::array<Glyph, kNumChars> glyphs = read_sheet();
    int i = int(ch) - kFirstChar;
    if (i < 0 || i >= kNumChars) i = '?' - kFirstChar;
    return glyphs[size_t(i)];
}

void check_scale(const char* fn, int scale) {
    if (scale < 1 || scale > 16) fail(fn, ": expected scale in [1, 16], got ", scale);
}
}  // namespace

int text_width(const std::string& text, int scale) {
    check_scale("text_width", scale);
    if (text.empty()) return 0;
    // n glyphs and the n - 1 one-pixel gaps between them
    int64_t w = (int64_t(text.size()) * kGlyphAdvance - 1) * scale;
    if (w > (int64_t(1) << 30)) fail("text_width: expected text under 2^30 pixels wide, got ", text.size(), " characters");
    return int(w);
}

int text_height(int scale) {
    check_scale("text_height", scale);
    return kGlyphHeight * scale;
}

void draw_text(std::vector<uint8_t>& pixels, int width, int height, int x, int y, const std::string& text,
               uint8_t ink, int scale) {
    check_scale("draw_text", scale);
    if (width < 0 || height < 0 || pixels.size() != size_t(width) * size_t(height))
        fail("draw_text: expected ", width, "x", height, " = ", int64_t(width) * height, " pixels, got ", pixels.size());
    // 64-bit positions: x + i * advance may leave int's range for a long text far to the right
    for (size_t i = 0; i < text.size(); i++) {
        int64_t gx = int64_t(x) + int64_t(i) * kGlyphAdvance * scale;
        if (gx >= width) break;  // this character and every later one start right of the image
        const Glyph& g = glyph_of(static_cast<unsigned char>(text[i]));
        for (int r = 0; r < kGlyphHeight; r++)
            for (int c = 0; c < kGlyphWidth; c++) {
                if (!(g[size_t(r)] >> (kGlyphWidth - 1 - c) & 1)) continue;
                // the font pixel (r, c) covers [x0, x0 + scale) x [y0, y0 + scale), clipped
                int64_t x0 = gx + int64_t(c) * scale, y0 = int64_t(y) + int64_t(r) * scale;
                int64_t xa = std::max<int64_t>(x0, 0), xb = std::min<int64_t>(x0 + scale, width);
                int64_t ya = std::max<int64_t>(y0, 0), yb = std::min<int64_t>(y0 + scale, height);
                for (int64_t py = ya; py < yb; py++)
                    for (int64_t px = xa; px < xb; px++) pixels[size_t(py * width + px)] = ink;
            }
    }
}

}  // namespace dl
