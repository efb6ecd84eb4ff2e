// The one-page run report (ddpm/report/report.h): a tiny run's folder turned into report.html, which must
// be well-formed, self-contained (no http:, https: or file: reference; every image a PNG data: URI
// that decodes with valid CRCs), show the numbers of the CSV files exactly, draw the gradient map,
// and, where a headless Chromium is installed, render to a screenshot that is not blank.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include "ddpm/inspect.h"
#include "ddpm/report/report.h"
#include "ddpm/trainer.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tensor/formats/png.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;
using namespace dl::test;

namespace {

// A run of 4 steps of a ch-4 U-Net on 8 synthetic 16x16 images, checkpoints at steps 2 and 4,
// gradient norms every step, two evaluations (made-up numbers: the page shows what the CSV says),
// a per-t sweep and one figure, as train, inspect and figures would leave them.
void tiny_run(const std::string& dir) {
    Philox gen{3};
    TrainConfig c;
    c.data_dir = "synthetic";
    c.batch = 2;
    c.steps = 4;
    c.seed = 7;
    c.model.ch = 4;
    c.model.ch_mult = {1, 2, 2};
    c.model.num_res_blocks = 1;
    c.model.groups = 2;
    c.model.dropout = 0;
    TrainState st(c, Dataset(synthetic_images(8, 16, gen)));
    RunFolder run(dir, st.model, 1);
    st.model.train();
    while (st.step < c.steps) {
        Tensor x0 = st.data.next_batch(int(c.batch), st.data_gen);
        std::vector<int64_t> t = randint(c.batch, c.T, st.noise_gen);
        Tensor eps = randn(x0.shape(), st.noise_gen);
        st.model.zero_grad();
        Variable loss = training_loss(st.schedule, eps_model(st.model), x0, t, eps, &st.dropout_gen);
        loss.backward();
        run.record_grad_norms(st.step + 1, st.model.flat_grads());
        double lr = c.lr.at(st.step + 1, c.steps), norm = st.update(lr);
        run.log({st.step, loss.value().item(), norm, lr, 0.25 * double(st.step)});
        if (st.step % 2 == 0) {
            run.save(st);
            run.write_samples(st.sample_ema(4, Sampler{SamplerKind::Ddim, 2, 0}), st.step);
            RulerMetrics m;
            m.n = 4, m.n_reference = 4, m.fid_mean = 100.0 / double(st.step), m.fid_sd = 3, m.fid_min = 90.0 / double(st.step);
            m.fid_max = 110.0 / double(st.step), m.kid_mean = 0.01, m.kid_se = 0.002, m.precision = 0.125 * double(st.step), m.recall = 0.3;
            run.record_eval(st.step, m);
        }
    }
    write_per_t_csv(dir + "/per_t.csv", {{0, 500, 250, 0.9, 2.0}, {500, 1000, 750, 0.1, 0.5}});
    make_dirs(dir + "/figures");
    write_png_grid(dir + "/figures/forward.png", st.data.images({0, 1, 2}), 3);
}

// The text of every <td id="..."> cell, and every table's rows as comma-joined cells.
std::string cell(const std::string& html, const std::string& id) {
    size_t at = html.find("id=\"" + id + "\">");
    REQUIRE_MESSAGE(at != std::string::npos, "no cell id=", id);
    at = html.find('>', at) + 1;
    return html.substr(at, html.find('<', at) - at);
}
std::vector<std::string> table_rows(const std::string& html, const std::string& id) {
    size_t at = html.find("<table id=\"" + id + "\">");
    REQUIRE_MESSAGE(at != std::string::npos, "no table id=", id);
    size_t end = html.find("</table>", at);
    std::vector<std::string> rows;
    for (size_t r = html.find("<tr>", at); r < end; r = html.find("<tr>", r + 1)) {
        std::string row;
        size_t row_end = html.find("</tr>", r);
        bool first = true;
        for (size_t c = html.find("<td", r); c < row_end; c = html.find("<td", c + 1), first = false) {
            size_t from = html.find('>', c) + 1;
            if (!first) row += ',';
            row += html.substr(from, html.find("</td>", from) - from);
        }
        if (!row.empty()) rows.push_back(row);
    }
    return rows;
}
std::vector<std::string> csv_lines(const std::string& path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}
std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    size_t from = 0;
    for (size_t at; (at = s.find(sep, from)) != std::string::npos; from = at + 1) parts.push_back(s.substr(from, at - from));
    parts.push_back(s.substr(from));
    return parts;
}

// Well-formed as XML would have it, with HTML's void elements: every tag closed in order,
// attributes quoted, no stray '<' or '&' in text. Returns "" or what is wrong.
std::string structure_error(const std::string& html) {
    static const std::set<std::string> kVoid = {"meta", "img", "br", "hr", "link", "input"};
    std::vector<std::string> open;
    size_t i = 0;
    if (html.rfind("<!DOCTYPE html>", 0) != 0) return "no <!DOCTYPE html> at the start";
    i = html.find('>') + 1;
    while (i < html.size()) {
        if (html[i] == '&') {
            size_t semi = html.find(';', i);
            if (semi == std::string::npos || semi - i > 8) return cat("a bare '&' at ", i);
            i = semi + 1;
            continue;
        }
        if (html[i] != '<') {
            i++;
            continue;
        }
        size_t end = html.find('>', i);
        if (end == std::string::npos) return cat("an unclosed tag at ", i);
        std::string tag = html.substr(i + 1, end - i - 1);
        bool closing = !tag.empty() && tag[0] == '/', self_closing = !tag.empty() && tag.back() == '/';
        std::string name = tag.substr(closing, tag.find_first_of(" /", closing) - closing);
        if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(uint8_t(c)); }))
            return cat("a '<' that starts no tag at ", i, ": ", excerpt(html.substr(i, 40)));
        if (size_t(std::count(tag.begin(), tag.end(), '"')) % 2) return cat("an unbalanced quote in <", excerpt(tag), ">");
        if (closing) {
            if (open.empty() || open.back() != name) return cat("</", name, "> closes <", open.empty() ? "nothing" : open.back(), "> at ", i);
            open.pop_back();
        } else if (!self_closing && !kVoid.count(name)) {
            open.push_back(name);
            if (name == "style" || name == "title") {  // raw text up to its end tag
                end = html.find("</" + name + ">", end);
                if (end == std::string::npos) return cat("<", name, "> never closed");
                i = end;
                continue;
            }
        }
        i = end + 1;
    }
    return open.empty() ? "" : cat("<", open.back(), "> never closed");
}

std::string base64_decode(const std::string& s) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
        if (c == '=') break;
        REQUIRE_MESSAGE(v >= 0, "not a base64 digit: ", int(c));
        acc = acc << 6 | uint32_t(v), bits += 6;
        if (bits >= 8) out += char((acc >> (bits -= 8)) & 0xFF);
    }
    return out;
}

// The PNG behind every <img>: each must be a data: URI.
std::vector<PngImage> images_of(const std::string& html) {
    std::vector<PngImage> images;
    for (size_t at = html.find("<img "); at != std::string::npos; at = html.find("<img ", at + 1)) {
        const std::string prefix = "src=\"data:image/png;base64,";
        size_t src = html.find(prefix, at);
        REQUIRE_MESSAGE(src < html.find('>', at), "an <img> without a PNG data URI: ", excerpt(html.substr(at, 80)));
        src += prefix.size();
        images.push_back(decode_png(base64_decode(html.substr(src, html.find('"', src) - src)), "an <img> of the report"));
    }
    return images;
}

}  // namespace

TEST_CASE("base64 as RFC 4648's test vectors") {
    const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},       {"foo", "Zm9v"},
                                                           {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (auto [in, out] : vectors) CHECK(base64(in) == out);
    std::string all;
    for (int b = 0; b < 256; b++) all += char(b);
    CHECK(base64_decode(base64(all)) == all);
}

TEST_CASE("the run report is one well-formed, self-contained page whose numbers are the CSV files'") {
    std::string dir = temp_dir("report");
    tiny_run(dir);
    std::string path = write_run_report(dir);
    CHECK(path == dir + "/report.html");
    std::string html = read_file(path);

    CHECK(structure_error(html) == "");
    for (const char* scheme : {"http:", "https:", "file:", "<script", "<link", "url("}) CHECK_MESSAGE(html.find(scheme) == std::string::npos, scheme);

    // every picture decodes: the strip of 2 checkpoints, the latest grid, the one figure
    std::vector<PngImage> images = images_of(html);
    REQUIRE(images.size() == 3);
    CHECK(images[0].height == 2 * (16 + 4) * 2);  // one row of 16-pixel digits with its border, per checkpoint, at scale 2
    for (const PngImage& im : images) CHECK(im.width > 0);

    // the numbers are the CSV files' own text
    std::vector<std::string> loss = csv_lines(dir + "/loss.csv");
    CHECK(cell(html, "step") == "4");
    CHECK(cell(html, "steps") == "4");
    CHECK(cell(html, "last-loss") == split(loss.back(), ',')[1]);
    CHECK(cell(html, "images-per-s") == "8.0");  // 3 steps of 2 images in 0.75 s
    std::vector<std::string> eval = csv_lines(dir + "/eval.csv");
    CHECK(table_rows(html, "eval") == std::vector<std::string>(eval.begin() + 1, eval.end()));
    std::vector<std::string> grads = csv_lines(dir + "/grad_norms.csv"), names = split(grads.front(), ','), last = split(grads.back(), ',');
    std::vector<std::string> rows = table_rows(html, "grad-table");
    REQUIRE(rows.size() == names.size() - 1);
    for (size_t k = 1; k < names.size(); k++) {
        std::vector<std::string> cells = split(rows[k - 1], ',');  // name, shape "(a, b)" has commas too: |g| is the third from the end
        CHECK(cells.front() == names[k]);
        CHECK(cells[cells.size() - 3] == last[k]);
        CHECK(html.find("<title>" + names[k] + ": |g| = " + last[k] + ",") != std::string::npos);  // both maps, hover text
    }
    CHECK(html.find("id=\"per-t\"") != std::string::npos);
    CHECK(html.find("no per_t.csv") == std::string::npos);
    CHECK(html.find("no figures") == std::string::npos);
}

TEST_CASE("the report says what is missing, skips a broken picture, and needs the checkpoint") {
    std::string dir = temp_dir("report_missing");
    tiny_run(dir);
    for (const char* f : {"/eval.csv", "/per_t.csv", "/figures/forward.png", "/samples.png"}) std::remove((dir + f).c_str());
    write_file_atomic(dir + "/samples_000002.png", "not a png at all");
    std::string html = run_report_html(dir);
    CHECK(structure_error(html) == "");
    CHECK(html.find("no eval.csv") != std::string::npos);
    CHECK(html.find("no per_t.csv") != std::string::npos);
    CHECK(html.find("no figures") != std::string::npos);
    CHECK(html.find("skipped in the strip: " + dir + "/samples_000002.png") != std::string::npos);
    CHECK(images_of(html).size() == 1);  // the strip, now of step 4 alone

    std::string empty = temp_dir("report_empty");
    CHECK(message_of([&] { run_report_html(empty); }).find(empty + "/checkpoint.safetensors is missing") != std::string::npos);
}

TEST_CASE("the gradient map: the U-Net's blocks, its skip connections, a log colour scale, zero in grey") {
    nn::UNetConfig config = nn::UNetConfig::reference();  // 3 levels of 2 ResBlocks, attention at 7x7
    nn::UNet net(config);
    std::vector<GradMapCell> cells;
    for (const nn::ParamSlot& s : net.layout()) cells.push_back({s.name, 1e-3, 1.0});
    cells[0].grad = 0;      // temb.fc1.weight: no gradient
    cells[1].grad = 1e-6;   // the smallest
    cells[2].grad = 1.0;    // the largest
    cells.push_back({"extra.weight", 1e-3, 1.0});
    std::string svg = gradient_map_svg(config, cells, false);
    CHECK(structure_error("<!DOCTYPE html>" + svg) == "");
    // every up ResBlock concatenates one kept output: 3 levels x (2 + 1)
    size_t arcs = 0;
    for (size_t at = svg.find("<path "); at != std::string::npos; at = svg.find("<path ", at + 1)) arcs++;
    CHECK(arcs == 9);  // one arc per skip connection
    auto fill_of = [&](const std::string& name) {
        size_t at = svg.find("<title>" + name + ":");
        REQUIRE(at != std::string::npos);
        size_t f = svg.rfind("fill=\"", at) + 6;
        return svg.substr(f, 7);
    };
    CHECK(fill_of("temb.fc1.weight") == "#d0d0d0");
    CHECK(fill_of("temb.fc1.bias") == "#440154");   // the bottom of the scale
    CHECK(fill_of("temb.fc2.weight") == "#fde725"); // the top
    CHECK(fill_of("conv_out.bias") != fill_of("temb.fc2.weight"));
    CHECK(svg.find(">other<") != std::string::npos);  // a name of no block is still drawn
    // relative: |g| / |x|, so the largest gradient on a weight 10^6 times larger drops to the bottom
    cells[2].weight = 1e6;
    std::string rel = gradient_map_svg(config, cells, true);
    CHECK(rel.find("relative gradient") != std::string::npos);
    size_t at = rel.find("<title>temb.fc2.weight:");
    CHECK(rel.substr(rel.rfind("fill=\"", at) + 6, 7) == "#440154");
}

TEST_CASE("a headless Chromium renders the report to a screenshot that is not blank") {
    if (run("command -v chromium") != 0) {
        MESSAGE("skipped: chromium is not installed (.ci/run installs Debian's package)");
        return;
    }
    std::string dir = temp_dir("report_shot");
    tiny_run(dir);
    std::string path = write_run_report(dir), out;
    int rc = run("timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1600 --screenshot=" + dir +
                     "/shot.png file://" + path,
                 &out);
    INFO(out);
    REQUIRE(rc == 0);
    PngImage shot = read_png(dir + "/shot.png");
    REQUIRE(shot.channels >= 3);
    // not blank: the page is mostly white, with text and curves and digits on it
    size_t dark = 0, colour = 0, n = size_t(shot.width) * size_t(shot.height);
    for (size_t p = 0; p < n; p++) {
        const uint8_t* px = &shot.pixels[p * size_t(shot.channels)];
        if (px[0] < 96 && px[1] < 96 && px[2] < 96) dark++;
        if (std::abs(int(px[0]) - int(px[2])) > 60) colour++;  // the viridis cells and the plot lines
    }
    MESSAGE("screenshot ", shot.width, "x", shot.height, ": ", dark, " dark and ", colour, " coloured pixels");
    CHECK(dark > n / 200);
    CHECK(colour > n / 1000);
    CHECK(dark < n / 2);
}
