// Hand-written SVG line plots. Data coordinates map linearly (or log10 for y) onto a plot
// rectangle inside a 720x440 canvas; SVG's y axis points down, hence the flip in to_py.
// Ticks are "nice" numbers: steps of 1, 2 or 5 times a power of ten, about six per axis;
// on a log axis, the powers of ten (plus 2x and 5x when the range spans under three decades).
#include "ddpm/report/svg.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>

#include "tensor/formats/io.h"
#include "tensor/tensor.h"

namespace dl {
namespace {

const char* const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
const double W = 720, H = 440, left = 80, right = 20, top = 40, bottom = 60;

std::string num(double v) {  // short, locale-free number text
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", std::abs(v) < 1e-12 ? 0.0 : v);
    return buf;
}

// Ticks covering [lo, hi] at a step of 1, 2 or 5 x 10^k giving about six intervals. Counted, not
// stepped (t += step stalls where step is below the spacing of doubles near t, e.g. near 2^53):
// at most kMaxTicks, repeats dropped; where no nice step fits (a span past the largest double, or
// too fine for the doubles), just the two ends.
constexpr int kMaxTicks = 12;
std::vector<double> linear_ticks(double lo, double hi) {
    const double raw = (hi / 6 - lo / 6), mag = std::pow(10, std::floor(std::log10(raw)));
    const double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
    std::vector<double> ticks;
    if (std::isfinite(step) && step > 0) {
        const double k0 = std::ceil(lo / step), k1 = std::floor(hi / step + 1e-9);
        if (std::isfinite(k0) && std::isfinite(k1) && k1 - k0 < kMaxTicks)
            for (double k = k0; k <= k1; k++)
                if (double t = k * step; ticks.empty() || t > ticks.back()) ticks.push_back(t);
    }
    if (ticks.size() < 2) ticks = {lo, hi};
    return ticks;
}

// Ticks for a log10 axis over [lo, hi] (given as log10 values); returned as log10 values. Over
// more than kMaxTicks decades, every n-th power of ten.
std::vector<double> log_ticks(double lo, double hi) {
    std::vector<double> ticks;
    const bool fine = hi - lo < 3;
    const double every = std::max(1.0, std::ceil((hi - lo) / kMaxTicks));
    for (double e = std::floor(lo / every) * every; e <= std::ceil(hi); e += every)
        for (double m : {1.0, 2.0, 5.0}) {
            double t = e + std::log10(m);
            if ((m == 1 || fine) && t >= lo - 1e-9 && t <= hi + 1e-9 && std::isfinite(std::pow(10, t)) && std::pow(10, t) > 0)
                ticks.push_back(t);
        }
    return ticks;
}

}  // namespace

std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '&') out += "&amp;";
        else if (c == '<') out += "&lt;";
        else if (c == '>') out += "&gt;";
        else if (c == '"') out += "&quot;";
        else out += c;
    }
    return out;
}

std::string svg_plot(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                     const std::vector<Series>& series, bool log_y) {
    auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); };
    auto ty = [&](double y) { return log_y ? std::log10(y) : y; };  // y in axis units

    // Data ranges over the usable points; an empty or flat range is widened so it can be drawn.
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const Series& s : series) {
        if (s.x.size() != s.y.size())
            fail("svg_plot: series '", s.name, "' has ", s.x.size(), " x values but ", s.y.size(), " y values");
        for (size_t i = 0; i < s.x.size(); i++)
            if (usable(s.x[i], s.y[i])) {
                x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
                y0 = std::min(y0, ty(s.y[i])), y1 = std::max(y1, ty(s.y[i]));
            }
    }
    if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    // A flat range is widened by enough to be told apart from its middle in doubles (0.5, or a
    // millionth of the value); every range is then kept within the finite doubles, and spans are
    // taken as halves (x1 / 2 - x0 / 2), which do not overflow where x1 - x0 would.
    auto widen = [](double& a, double& b) {
        if (b / 2 - a / 2 < 1e-12 * std::max(1.0, std::abs(a))) {
            const double w = std::max(0.5, 1e-6 * std::abs(a));
            a -= w, b += w;
        }
        a = std::max(a, -DBL_MAX), b = std::min(b, DBL_MAX);
    };
    widen(x0, x1);
    widen(y0, y1);
    double pad = (y1 / 2 - y0 / 2) * 0.1;  // a little air above and below the curves
    y0 = std::max(y0 - pad, -DBL_MAX), y1 = std::min(y1 + pad, DBL_MAX);

    double pw = W - left - right, ph = H - top - bottom;
    auto to_px = [&](double x) { return left + (x / 2 - x0 / 2) / (x1 / 2 - x0 / 2) * pw; };
    auto to_py = [&](double y) { return top + (1 - (y / 2 - y0 / 2) / (y1 / 2 - y0 / 2)) * ph; };

    std::string o = cat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", W, "\" height=\"", H,
                        "\" font-family=\"sans-serif\" font-size=\"12\">\n",
                        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    o += cat("<text x=\"", W / 2, "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", xml_escape(title), "</text>\n");

    // Grid lines and tick labels.
    for (double t : linear_ticks(x0, x1)) {
        double px = to_px(t);
        o += cat("<line x1=\"", num(px), "\" y1=\"", top, "\" x2=\"", num(px), "\" y2=\"", top + ph,
                 "\" stroke=\"#e0e0e0\"/>\n<text x=\"", num(px), "\" y=\"", top + ph + 16,
                 "\" text-anchor=\"middle\">", num(t), "</text>\n");
    }
    for (double t : log_y ? log_ticks(y0, y1) : linear_ticks(y0, y1)) {
        double py = to_py(t);
        o += cat("<line x1=\"", left, "\" y1=\"", num(py), "\" x2=\"", left + pw, "\" y2=\"", num(py),
                 "\" stroke=\"#e0e0e0\"/>\n<text x=\"", left - 6, "\" y=\"", num(py + 4),
                 "\" text-anchor=\"end\">", num(log_y ? std::pow(10, t) : t), "</text>\n");
    }
    o += cat("<rect x=\"", left, "\" y=\"", top, "\" width=\"", pw, "\" height=\"", ph,
             "\" fill=\"none\" stroke=\"black\"/>\n");
    o += cat("<text x=\"", left + pw / 2, "\" y=\"", H - 16, "\" text-anchor=\"middle\">", xml_escape(xlabel), "</text>\n");
    o += cat("<text transform=\"translate(18,", top + ph / 2, ") rotate(-90)\" text-anchor=\"middle\">",
             xml_escape(ylabel), log_y ? " (log scale)" : "", "</text>\n");

    // What is not drawn is said, under the title.
    size_t left_out = 0;
    for (const Series& s : series)
        for (size_t i = 0; i < s.x.size(); i++) left_out += !usable(s.x[i], s.y[i]);
    if (left_out > 0)
        o += cat("<text class=\"left-out\" x=\"", W / 2, "\" y=\"", top - 4, "\" text-anchor=\"middle\" fill=\"#a00\">", left_out,
                 left_out == 1 ? " point" : " points", " not drawn: not finite", log_y ? ", or not positive on the log axis" : "",
                 "</text>\n");

    // One polyline per run of usable points; a lone point becomes a dot.
    for (size_t k = 0; k < series.size(); k++) {
        const Series& s = series[k];
        const char* color = palette[k % std::size(palette)];
        o += cat("<g stroke=\"", color, "\" fill=\"none\" stroke-width=\"1.5\"><title>", xml_escape(s.name), "</title>\n");
        std::vector<std::pair<std::string, std::string>> run;  // pixel coordinates of a run
        auto flush = [&] {
            if (run.size() == 1)
                o += cat("<circle r=\"2\" fill=\"", color, "\" cx=\"", run[0].first, "\" cy=\"", run[0].second, "\"/>\n");
            if (run.size() > 1) {
                o += "<polyline points=\"";
                for (auto& [px, py] : run) o += px + "," + py + " ";
                o += "\"/>\n";
            }
            run.clear();
        };
        for (size_t i = 0; i < s.x.size(); i++) {
            if (usable(s.x[i], s.y[i])) run.emplace_back(num(to_px(s.x[i])), num(to_py(ty(s.y[i]))));
            else flush();
        }
        flush();
        o += "</g>\n";
    }

    // Legend, top right inside the plot.
    double lw = 0;
    for (const Series& s : series) lw = std::max(lw, 7.0 * double(s.name.size()));
    double lx = left + pw - lw - 40, ly = top + 8;
    if (!series.empty())
        o += cat("<rect x=\"", num(lx - 6), "\" y=\"", ly - 4, "\" width=\"", num(lw + 42), "\" height=\"",
                 18 * series.size() + 6, "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n");
    for (size_t k = 0; k < series.size(); k++) {
        double y = ly + 18 * double(k) + 9;
        o += cat("<line x1=\"", num(lx), "\" y1=\"", y, "\" x2=\"", num(lx + 24), "\" y2=\"", y, "\" stroke=\"",
                 palette[k % std::size(palette)], "\" stroke-width=\"2\"/>\n<text x=\"", num(lx + 30), "\" y=\"",
                 y + 4, "\">", xml_escape(series[k].name), "</text>\n");
    }
    return o + "</svg>\n";
}

void write_svg_plot(const std::string& path, const std::string& title, const std::string& xlabel,
                    const std::string& ylabel, const std::vector<Series>& series, bool log_y) {
    write_file_atomic(path, svg_plot(title, xlabel, ylabel, series, log_y));
}

}  // namespace dl
