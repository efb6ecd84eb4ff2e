// The small U-Net of the tests: 8x8 and 4x4, one ResBlock per level, attention at 4x4, dropout 0.1.
// Every kind of block (the skip 1x1 convs, both resampling convs) at a size a float64 gradcheck
// and the sanitizer build can afford; ch 4 (channels 4, 8) costs about 4x less than ch 8.
#pragma once
#include "nn/unet.h"

namespace dl::test {

inline nn::UNetConfig tiny_unet(int64_t ch = 8) {
    nn::UNetConfig c;
    c.ch = ch;
    c.ch_mult = {1, 2};
    c.num_res_blocks = 1;
    c.attn_res = {4};
    c.groups = ch / 2;
    c.dropout = 0.1;
    c.resolution = 8;
    return c;
}

}  // namespace dl::test
