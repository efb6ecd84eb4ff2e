// A 5x7 bitmap font for printable ASCII (32..126), drawn from scratch, so that pictures can
// carry their own labels ("t=999", "step 1500") the way a textbook figure does.
//
// Every glyph is 5 pixels wide and 7 tall and characters advance by 6 pixels (1 pixel of
// space between them). Lower-case letters stand on row 6 (x-height 5 rows); g, p, q and y have
// a 3-row bowl on rows 2-4 so that their tails fit in the same 7 rows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dl {

constexpr int kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6;  // advance = width + 1 px

// The size of text drawn at `scale` (each font pixel a scale x scale block), in pixels. The
// width has no trailing space: text_width("ab") == 11, text_width("") == 0.
int text_width(const std::string& text, int scale = 1);
int text_height(int scale = 1);  // 7 * scale

// Draws text with its top-left corner at (x, y) into a gray image `pixels` (height x width,
// row-major, one byte per pixel), each font pixel a scale x scale block of `ink`; the pixels
// between strokes are left as they are. What falls outside the image is clipped (x and y may be
// negative). A byte with no glyph (outside 32..126: a tab, UTF-8) draws as '?'.
void draw_text(std::vector<uint8_t>& pixels, int width, int height, int x, int y, const std::string& text,
               uint8_t ink, int scale = 1);

}  // namespace dl
