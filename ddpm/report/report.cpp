#include "ddpm/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "autograd/inspect.h"
#include "ddpm/data.h"
#include "ddpm/inspect.h"
#include "ddpm/report/train_log.h"
#include "nn/checkpoint.h"
#include "tensor/parse.h"
#include "ddpm/report/grad_norm_log.h"
#include "tensor/formats/font.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tensor/formats/png.h"
#include "ddpm/report/svg.h"

namespace dl::ddpm {

std::string base64(std::string_view bytes) {
    static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (size_t i = 0; i < bytes.size(); i += 3) {  // 3 bytes -> 4 six-bit digits, '=' pads the last group
        uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
        if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
        if (i + 2 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 2]));
        out += digits[(v >> 18) & 63];
        out += digits[(v >> 12) & 63];
        out += i + 1 < bytes.size() ? digits[(v >> 6) & 63] : '=';
        out += i + 2 < bytes.size() ? digits[v & 63] : '=';
    }
    return out;
}

namespace {

std::string fmt(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}
std::string g6(double v) { return fmt("%.6g", v); }  // as the CSV files write their numbers

std::string duration(double seconds) {
    int64_t s = int64_t(std::llround(seconds));
    if (s < 60) return cat(s, " s");
    if (s < 3600) return cat(s / 60, " min ", s % 60, " s");
    return cat(s / 3600, " h ", s / 60 % 60, " min");
}

// ---- the gradient map ---------------------------------------------------------------------
// Viridis at five stops (matplotlib's colormap, whose endpoints and quarter points these are):
// dark purple for the smallest norms to yellow for the largest, readable in grey print too.
std::string viridis(double u) {
    static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    u = std::clamp(u, 0.0, 1.0) * 4;
    int k = std::min(int(u), 3);
    double f = u - k;
    char buf[8];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(std::lround(stops[k][0] + f * (stops[k + 1][0] - stops[k][0]))),
                  int(std::lround(stops[k][1] + f * (stops[k + 1][1] - stops[k][1]))),
                  int(std::lround(stops[k][2] + f * (stops[k + 1][2] - stops[k][2]))));
    return buf;
}

struct MapBlock {
    std::string prefix, label;  // the parameters' key prefix; the short text under the box
    int row = 0, col = 0;       // row: the level (ch_mult index) of its output, the middle one below the last
    std::vector<size_t> cells;  // indices into the cells
};

}  // namespace

std::string gradient_map_svg(const nn::UNetConfig& config, const std::vector<GradMapCell>& cells, bool relative) {
    // The blocks in the order the forward pass runs them (nn/unet.h), with the outputs that the
    // down path keeps for the up path's concatenations.
    const int L = int(config.ch_mult.size()), nrb = int(config.num_res_blocks);
    auto has_attn = [&](int level) {
        int64_t res = config.resolution >> level;
        return std::find(config.attn_res.begin(), config.attn_res.end(), res) != config.attn_res.end();
    };
    std::vector<MapBlock> blocks;
    std::vector<size_t> kept;                      // blocks whose output a skip connection carries
    std::vector<std::pair<size_t, size_t>> skips;  // (kept block, the up ResBlock that takes it)
    auto add = [&](std::string prefix, std::string label, int row) {
        blocks.push_back({std::move(prefix), std::move(label), row, int(blocks.size()), {}});
        return blocks.size() - 1;
    };
    add("temb", "temb", 0);
    if (config.num_classes > 0) add("label_emb", "label", 0);  // added to temb
    kept.push_back(add("conv_in", "in", 0));
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < nrb; j++) {
            size_t b = add(cat("down.", i, ".res.", j), "res", i);
            if (has_attn(i)) b = add(cat("down.", i, ".attn.", j), "attn", i);
            kept.push_back(b);
        }
        if (i + 1 < L) kept.push_back(add(cat("down.", i, ".downsample"), "down", i + 1));  // drawn where its output lives
    }
    add("mid.res1", "res", L);
    add("mid.attn", "attn", L);
    add("mid.res2", "res", L);
    for (int i = L - 1; i >= 0; i--) {
        for (int j = 0; j <= nrb; j++) {
            size_t b = add(cat("up.", i, ".res.", j), "res", i);
            if (!kept.empty()) skips.push_back({kept.back(), b}), kept.pop_back();
            if (has_attn(i)) add(cat("up.", i, ".attn.", j), "attn", i);
        }
        if (i > 0) add(cat("up.", i, ".upsample"), "up", i - 1);
    }
    add("norm_out", "norm", 0);
    add("conv_out", "out", 0);
    size_t other = add("", "other", 0);

    std::map<std::string, size_t> by_prefix;
    for (size_t b = 0; b < other; b++) by_prefix[blocks[b].prefix] = b;
    for (size_t c = 0; c < cells.size(); c++) {  // the longest prefix of the key that names a block
        size_t b = other;
        const std::string& name = cells[c].name;
        for (size_t cut = name.rfind('.'); cut != std::string::npos && cut > 0; cut = name.rfind('.', cut - 1))
            if (auto it = by_prefix.find(name.substr(0, cut)); it != by_prefix.end()) {
                b = it->second;
                break;
            }
        blocks[b].cells.push_back(c);
    }
    if (blocks[other].cells.empty()) blocks.pop_back();

    // The colour scale: log10 of the positive finite values, from the smallest to the largest.
    auto value = [&](const GradMapCell& c) { return relative ? (c.weight > 0 ? c.grad / c.weight : NAN) : c.grad; };
    double lo = INFINITY, hi = -INFINITY;
    for (const GradMapCell& c : cells)
        if (double v = value(c); std::isfinite(v) && v > 0) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
    if (lo > hi) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;

    // Geometry: a column per block, a row per level; a block's cells stacked in its box.
    const double cw = 24, gap = 8, cell_h = 7, left = 110, top = 70;
    size_t most = 1;
    for (const MapBlock& b : blocks) most = std::max(most, b.cells.size());
    const double row_h = double(most) * cell_h + 60;
    auto bx = [&](const MapBlock& b) { return left + b.col * (cw + gap); };
    auto by = [&](const MapBlock& b) { return top + b.row * row_h; };
    auto bh = [&](const MapBlock& b) { return std::max(1.0, double(b.cells.size())) * cell_h; };
    const double width = left + double(blocks.size()) * (cw + gap) + 20, height = top + (L + 1) * row_h + 40;

    std::string o = cat("<svg width=\"", width, "\" height=\"", height, "\" viewBox=\"0 0 ", width, " ", height,
                        "\" font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    o += cat("<text x=\"10\" y=\"18\" font-size=\"14\">",
             relative ? "relative gradient |g| / |x| of each parameter tensor" : "gradient norm |g| of each parameter tensor",
             " (hover a cell for its name and numbers)</text>\n");
    for (int i = 0; i <= L; i++) {  // the levels
        std::string text = i < L ? cat(config.resolution >> i, "x", config.resolution >> i, ", ", config.ch * config.ch_mult[size_t(i)], " ch")
                                 : cat(config.resolution >> (L - 1), "x", config.resolution >> (L - 1), " middle");
        o += cat("<text x=\"10\" y=\"", top + i * row_h + 12, "\">", xml_escape(text), "</text>\n");
    }
    // the data path between consecutive blocks, then the skip connections as arcs over the tops
    o += "<g stroke=\"#bbb\" stroke-width=\"1.5\" fill=\"none\">\n";
    for (size_t b = config.num_classes > 0 ? 3 : 2; b < blocks.size() && !blocks[b].prefix.empty(); b++) {  // from conv_in on
        const MapBlock &p = blocks[b - 1], &q = blocks[b];
        o += cat("<line x1=\"", bx(p) + cw, "\" y1=\"", by(p) + bh(p) / 2, "\" x2=\"", bx(q), "\" y2=\"", by(q) + bh(q) / 2, "\"/>\n");
    }
    o += "</g>\n<g stroke=\"#e377c2\" stroke-width=\"1\" fill=\"none\" opacity=\"0.7\"><title>skip connections: each kept output to the up "
         "ResBlock that concatenates it</title>\n";
    const double span = double(blocks.size()) * (cw + gap);
    for (auto [s, d] : skips) {  // both ends on one row: the kept output and its consumer share a resolution
        double x1 = bx(blocks[s]) + cw / 2, x2 = bx(blocks[d]) + cw / 2, y = by(blocks[s]);
        double lift = 8 + 44 * (x2 - x1) / span;  // wider arcs higher, all within the gap above the row
        o += cat("<path d=\"M", x1, " ", y, " C", x1, " ", y - lift, " ", x2, " ", y - lift, " ", x2, " ", y, "\"/>\n");
    }
    o += "</g>\n";
    for (const MapBlock& b : blocks) {
        double x = bx(b), y = by(b);
        for (size_t k = 0; k < b.cells.size(); k++) {
            const GradMapCell& c = cells[b.cells[k]];
            double v = value(c);
            std::string fill = std::isfinite(v) && v > 0 ? viridis((std::log10(v) - lo) / (hi - lo)) : "#d0d0d0";
            o += cat("<rect x=\"", x, "\" y=\"", y + double(k) * cell_h, "\" width=\"", cw, "\" height=\"", cell_h - 1, "\" fill=\"", fill,
                     "\"><title>", xml_escape(c.name), ": |g| = ", g6(c.grad), ", |x| = ", g6(c.weight),
                     ", |g|/|x| = ", c.weight > 0 ? g6(c.grad / c.weight) : std::string("-"), "</title></rect>\n");
        }
        o += cat("<rect x=\"", x - 0.5, "\" y=\"", y - 0.5, "\" width=\"", cw + 1, "\" height=\"", bh(b), "\" fill=\"none\" stroke=\"#333\"><title>",
                 xml_escape(b.prefix.empty() ? "parameters outside the U-Net's blocks" : b.prefix), "</title></rect>\n");
        o += cat("<text x=\"", x + cw / 2, "\" y=\"", y + bh(b) + 12, "\" text-anchor=\"middle\">", xml_escape(b.label), "</text>\n");
    }
    // temb feeds every ResBlock: said in words rather than drawn as 2 (L + 1) nrb more lines
    o += cat("<text x=\"", bx(blocks[0]), "\" y=\"", by(blocks[0]) + bh(blocks[0]) + 24, "\">(to every res)</text>\n");
    // the colour legend
    double ly = height - 24, lx = left, lw = 240;
    for (int k = 0; k < 24; k++)
        o += cat("<rect x=\"", lx + k * lw / 24, "\" y=\"", ly, "\" width=\"", lw / 24 + 0.5, "\" height=\"10\" fill=\"", viridis((k + 0.5) / 24), "\"/>\n");
    o += cat("<text x=\"", lx - 6, "\" y=\"", ly + 9, "\" text-anchor=\"end\">", g6(std::pow(10, lo)), "</text>\n");
    o += cat("<text x=\"", lx + lw + 6, "\" y=\"", ly + 9, "\">", g6(std::pow(10, hi)), " (log scale); grey: zero</text>\n");
    return o + "</svg>\n";
}

// ---- the page -----------------------------------------------------------------------------
namespace {

const char* kStyle = R"(body { font-family: sans-serif; max-width: 1240px; margin: 1em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { image-rendering: pixelated; } .scroll { overflow-x: auto; } .note { color: #777; }
.plots svg { max-width: 100%; height: auto; } figure { display: inline-block; margin: 0.5em; } figcaption { font-size: 0.9em; })";

std::string img(const std::string& png_bytes, const std::string& alt) {
    return cat("<img src=\"data:image/png;base64,", base64(png_bytes), "\" alt=\"", xml_escape(alt), "\"/>");
}
// An SVG plot for inlining in HTML, where the namespace declaration is implied.
std::string inline_svg(std::string svg) {
    const std::string ns = " xmlns=\"http://www.w3.org/2000/svg\"";
    if (size_t at = svg.find(ns); at != std::string::npos) svg.erase(at, ns.size());
    return svg;
}
std::string note(const std::string& text) { return "<p class=\"note\">" + xml_escape(text) + "</p>\n"; }

// "key=value key=value" (TrainConfig::str(), UNetConfig::str()) as table rows.
std::string config_rows(const std::string& text) {
    std::string o;
    for (size_t i = 0; i < text.size();) {
        size_t end = std::min(text.find(' ', i), text.size());
        std::string field = text.substr(i, end - i);
        size_t eq = field.find('=');
        if (!field.empty())
            o += eq == std::string::npos ? cat("<tr><td colspan=\"2\">", xml_escape(field), "</td></tr>\n")
                                         : cat("<tr><td>", xml_escape(field.substr(0, eq)), "</td><td>", xml_escape(field.substr(eq + 1)), "</td></tr>\n");
        i = end + 1;
    }
    return o;
}

// The value of `key` in "key=value ..." text, or "".
std::string field_of(const std::string& text, const std::string& key) {
    for (size_t at = 0; (at = text.find(key + "=", at)) != std::string::npos; at++)
        if (at == 0 || text[at - 1] == ' ') {
            size_t from = at + key.size() + 1, end = text.find(' ', from);
            return text.substr(from, end == std::string::npos ? std::string::npos : end - from);
        }
    return "";
}

// Grids as RunFolder::write_samples draws them: write_png_grid's border (kGridPad) at scale 2.
constexpr int kGridScale = 2;

// One row of digits of each checkpoint's grid (its last row: a title band may sit on top),
// stacked under each other with the step written on the left. Grids that cannot be read are
// named in `notes` and left out.
std::string sample_strip(const std::string& dir, int64_t side, std::string& notes) {
    std::vector<std::pair<int64_t, std::string>> grids;  // (step, file)
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = entry.path().filename().string();
        int64_t step = 0;
        if (name.size() == 18 && name.rfind("samples_", 0) == 0 && name.substr(14) == ".png" && name[8] != '-' &&
            read_integer(std::string_view(name).substr(8, 6), step))
            grids.push_back({step, entry.path().string()});
    }
    std::sort(grids.begin(), grids.end());
    const size_t most = 12;  // evenly spaced, always the first and the last
    std::vector<std::pair<int64_t, std::string>> pick;
    for (size_t k = 0; k < std::min(most, grids.size()); k++) pick.push_back(grids[grids.size() <= most ? k : k * (grids.size() - 1) / (most - 1)]);

    const int band = int(side + 2 * kGridPad) * kGridScale;  // one row of digits with the border above and below
    const int label_w = text_width("step 000000", 2) + 16;
    int width = 0;
    std::vector<std::pair<int64_t, PngImage>> rows;
    for (auto& [step, path] : pick) {
        try {
            PngImage im = read_png(path);
            if (im.channels != 1 || im.height < band || im.width % kGridScale || (im.width / kGridScale - kGridPad) % (side + kGridPad))
                fail(path, ": not a grid of ", side, "x", side, " grey digits at scale ", kGridScale, " (", im.width, "x", im.height, ", ",
                     im.channels, " channels)");
            width = std::max(width, im.width);
            rows.push_back({step, std::move(im)});
        } catch (const Error& e) {
            notes += note(cat("skipped in the strip: ", e.what()));
        }
    }
    if (rows.empty()) return "";
    const int W = label_w + width, H = band * int(rows.size());
    std::vector<uint8_t> px(size_t(W) * size_t(H), 0);
    for (size_t r = 0; r < rows.size(); r++) {
        const PngImage& im = rows[r].second;
        for (int y = 0; y < band; y++)
            std::copy_n(&im.pixels[size_t(im.height - band + y) * size_t(im.width)], im.width, &px[(r * size_t(band) + size_t(y)) * size_t(W) + size_t(label_w)]);
        draw_text(px, W, H, 8, int(r) * band + (band - text_height(2)) / 2, cat("step ", rows[r].first), 255, 2);
    }
    return img(encode_png_gray(px.data(), W, H), "one row of the sample grid at each checkpoint");
}

// A PNG file as an <img>, or a note when it is not one. A grey one is written again by our
// encoder, which compresses (files from before it did are stored uncompressed).
std::string png_file(const std::string& path, const std::string& caption) {
    std::string bytes = read_file(path);
    try {
        PngImage im = decode_png(bytes, path);
        if (im.channels == 1) bytes = encode_png_gray(im.pixels.data(), im.width, im.height);
    } catch (const Error& e) {
        return note(cat("skipped: ", e.what()));
    }
    return "<figure>" + img(bytes, caption) + "<figcaption>" + xml_escape(caption) + "</figcaption></figure>\n";
}

}  // namespace

std::string run_report_html(const std::string& dir) {
    const std::string ckpt_path = dir + "/checkpoint.safetensors";
    if (!file_exists(ckpt_path)) fail("report: ", ckpt_path, " is missing; train writes it at the first checkpoint (build/train --out ", dir, ")");
    nn::Checkpoint ck = nn::load_checkpoint(ckpt_path);
    const std::string train = ck.metadata.count("train") ? ck.metadata.at("train") : "";
    nn::UNetConfig config = nn::UNetConfig::parse(ck.meta("model"));
    nn::UNet net(config);
    nn::restore(ck, net, nullptr, nullptr);

    TrainLog log;
    log.read_csv(dir + "/loss.csv", ck.step);
    EvalLog evals;
    const bool single_judge = EvalLog::single_judge_csv(dir + "/eval.csv");  // before the ruler: not drawn
    if (!single_judge) evals.read_csv(dir + "/eval.csv", ck.step);
    GradNormLog grads(net);
    grads.read_csv(dir + "/grad_norms.csv", ck.step);

    std::string o = cat("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>DDPM run ", xml_escape(dir),
                        "</title>\n<style>\n", kStyle, "\n</style>\n</head>\n<body>\n");
    o += cat("<h1>DDPM run <code>", xml_escape(dir), "</code> at step ", ck.step, "</h1>\n");

    // ---- the run in numbers ----
    const std::string steps_text = field_of(train, "steps"), data_dir = field_of(train, "data");
    o += "<h2 id=\"run\">The run</h2>\n<table id=\"summary\">\n";
    o += cat("<tr><td>step</td><td class=\"n\" id=\"step\">", ck.step, "</td></tr>\n");
    o += cat("<tr><td>steps planned</td><td class=\"n\" id=\"steps\">", xml_escape(steps_text.empty() ? "?" : steps_text), "</td></tr>\n");
    if (!log.rows.empty()) {
        const LogRow &first = log.rows.front(), &last = log.rows.back();
        double batch = std::atof(field_of(train, "batch").c_str());
        double per_s = last.seconds > first.seconds ? batch * double(last.step - first.step) / (last.seconds - first.seconds) : NAN;
        o += cat("<tr><td>images/s</td><td class=\"n\" id=\"images-per-s\">", fmt("%.1f", per_s), "</td></tr>\n");
        o += cat("<tr><td>wall time</td><td class=\"n\" id=\"wall-time\">", duration(last.seconds), "</td></tr>\n");
        o += cat("<tr><td>loss at step ", last.step, "</td><td class=\"n\" id=\"last-loss\">", g6(last.loss), "</td></tr>\n");
        o += cat("<tr><td>mean loss, last ", TrainLog::kSmoothing, " steps</td><td class=\"n\" id=\"recent-loss\">", g6(log.smoothed_loss()), "</td></tr>\n");
    }
    o += cat("<tr><td>parameters</td><td class=\"n\">", net.num_parameters(), "</td></tr>\n</table>\n");
    std::string data_text = data_dir;
    try {
        IdxImages images = read_idx_images(data_dir + "/train-images-idx3-ubyte");
        data_text += cat(": ", images.n, " images of ", images.rows, "x", images.cols);
    } catch (const Error&) {
        data_text += " (not readable from here)";
    }
    o += "<h2 id=\"config\">Configuration</h2>\n<div class=\"scroll\"><table>\n";
    o += cat("<tr><th colspan=\"2\">data</th></tr>\n<tr><td colspan=\"2\">", xml_escape(data_text), "</td></tr>\n");
    o += "<tr><th colspan=\"2\">training</th></tr>\n" + config_rows(train);
    o += "<tr><th colspan=\"2\">model</th></tr>\n" + config_rows(ck.meta("model"));
    o += "</table></div>\n";

    // ---- curves ----
    o += "<h2 id=\"training\">Loss and learning rate</h2>\n<div class=\"plots\">\n";
    if (log.rows.empty()) o += note("no loss.csv rows yet");
    else o += inline_svg(log.svg("training loss")) + inline_svg(log.lr_svg("learning rate"));
    o += "</div>\n";

    // ---- samples ----
    o += "<h2 id=\"samples\">Samples</h2>\n";
    std::string strip_notes, strip = sample_strip(dir, config.resolution, strip_notes);
    if (!strip.empty())
        o += "<p>The same noise at every checkpoint (DDIM from the EMA weights), one row of the grid each, so a digit can be followed as it "
             "forms:</p>\n<div class=\"scroll\">" + strip + "</div>\n";
    o += strip_notes;
    if (file_exists(dir + "/samples.png")) o += png_file(dir + "/samples.png", "the latest grid (samples.png)");
    else o += note("no samples.png yet");

    // ---- quality ----
    o += "<h2 id=\"quality\">Sample quality</h2>\n";
    if (single_judge) {
        o += note("eval.csv holds the single judge's columns of before the ruler; build/train --resume keeps it as eval_single_judge.csv");
    } else if (evals.rows.empty()) {
        o += note("no eval.csv: build/train --eval-every N scores the samples during the run; build/eval scores a checkpoint");
    } else {
        o += "<div class=\"plots\">" + inline_svg(evals.fid_svg("FID")) + inline_svg(evals.pr_svg("precision and recall")) + "</div>\n";
        o += "<table id=\"eval\">\n<tr><th>step</th><th>n</th><th>FID mean</th><th>FID sd</th><th>FID min</th><th>FID max</th><th>KID</th><th>KID se</th>"
             "<th>precision</th><th>recall</th><th>class entropy</th><th>confidence</th></tr>\n";
        for (const EvalRow& r : evals.rows)
            o += cat("<tr><td class=\"n\">", r.step, "</td><td class=\"n\">", r.n, "</td><td class=\"n\">", g6(r.fid_mean), "</td><td class=\"n\">",
                     g6(r.fid_sd), "</td><td class=\"n\">", g6(r.fid_min), "</td><td class=\"n\">", g6(r.fid_max), "</td><td class=\"n\">",
                     g6(r.kid_mean), "</td><td class=\"n\">", g6(r.kid_se), "</td><td class=\"n\">",
                     g6(r.precision), "</td><td class=\"n\">", g6(r.recall), "</td><td class=\"n\">", g6(r.class_entropy),
                     "</td><td class=\"n\">", g6(r.confidence), "</td></tr>\n");
        o += "</table>\n";
    }

    // ---- against t ----
    o += "<h2 id=\"per-t\">Loss and gradient against t</h2>\n";
    if (file_exists(dir + "/per_t.csv"))
        o += "<div class=\"plots\">" + inline_svg(per_t_svg(read_per_t_csv(dir + "/per_t.csv"), "loss and gradient norm against t")) + "</div>\n";
    else
        o += note(cat("no per_t.csv: build/inspect --checkpoint ", ckpt_path, " --per-t --per-t-out ", dir, "/per_t (make report runs it)"));

    // ---- the diffusion process ----
    o += "<h2 id=\"figures\">The diffusion process</h2>\n";
    const std::pair<const char*, const char*> figures[] = {{"forward", "the forward process q(x_t | x_0)"},
                                                           {"oracle_reverse", "the reverse process with the true posterior"},
                                                           {"reverse", "the learned reverse process from noise"},
                                                           {"one_to_many", "one x_t, eight learned reverse runs"},
                                                           {"classes", "class-conditional: one row per class"},
                                                           {"guidance", "one class as the guidance weight w grows"}};
    bool any = false;
    for (auto [name, caption] : figures)
        if (std::string path = cat(dir, "/figures/", name, ".png"); file_exists(path)) {
            o += png_file(path, cat(caption, " (", name, ".png)"));
            any = true;
        }
    if (!any) o += note(cat("no figures: build/figures --checkpoint ", ckpt_path, " --out ", dir, "/figures (make report runs it)"));

    // ---- the gradient map ----
    o += "<h2 id=\"gradients\">Where the gradient flows</h2>\n";
    if (grads.rows.empty()) {
        o += note("no grad_norms.csv rows: build/train --grad-norms-every N records them");
    } else {
        const GradNormLog::Row& row = grads.rows.back();
        const Tensor& flat = net.flat_parameters();
        std::vector<GradMapCell> cells;
        for (size_t k = 0; k < grads.slots.size(); k++)
            cells.push_back({grads.slots[k].name, row.norms[k], tensor_stats(flat.rows(grads.slots[k].offset, grads.slots[k].numel)).l2});
        o += cat("<p id=\"grad-step\">Gradient norms before clipping at step ", row.step, " (grad_norms.csv); parameter norms at step ", ck.step,
                 " (the checkpoint's trained weights).</p>\n");
        o += "<div class=\"scroll\">" + gradient_map_svg(config, cells, false) + "</div>\n";
        o += "<div class=\"scroll\">" + gradient_map_svg(config, cells, true) + "</div>\n";
        o += "<table id=\"grad-table\">\n<tr><th>parameter</th><th>shape</th><th>|g|</th><th>|x|</th><th>|g| / |x|</th></tr>\n";
        for (size_t k = 0; k < cells.size(); k++)
            o += cat("<tr><td>", xml_escape(cells[k].name), "</td><td>", shape_str(grads.slots[k].shape), "</td><td class=\"n\">", g6(cells[k].grad),
                     "</td><td class=\"n\">", g6(cells[k].weight), "</td><td class=\"n\">",
                     cells[k].weight > 0 ? g6(cells[k].grad / cells[k].weight) : std::string("-"), "</td></tr>\n");
        o += "</table>\n";
    }
    return o + "</body>\n</html>\n";
}

std::string write_run_report(const std::string& dir) {
    std::string path = dir + "/report.html";
    write_file_atomic(path, run_report_html(dir));
    return path;
}

}  // namespace dl::ddpm
