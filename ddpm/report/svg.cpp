// Hand-written SVG line plots. Data coordinates map linearly (or log10 for y) onto a plot
// rectangle inside a 720x440 canvas; SVG's y axis points down, hence the flip in to_py.
// Ticks are "nice" numbers: steps of 1, 2 or 5 times a power of ten, about six per axis;
// on a log axis, the powers of ten (plus 2x and 5x when the range spans under three decades).
#include "ddpm/report/svg.h"

#include <algorithm>
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

// Ticks covering [lo, hi] at a step of 1, 2 or 5 x 10^k giving about six intervals.
std::vector<double> linear_ticks(double lo, double hi) {
    double raw = (hi - lo) / 6, mag = std::pow(10, std::floor(std::log10(raw)));
    double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3.5 ? 2 : raw / mag < 7.5 ? 5 : 10);
    std::vector<double> ticks;
    for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(t);
    return ticks;
}

// Ticks for a log10 axis over [lo, hi] (given as log10 values); returned as log10 values.
std::vector<double> log_ticks(double lo, double hi) {
    std::vector<double> ticks;
    bool fine = hi - lo < 3;
    for (double e = std::floor(lo); e <= std::ceil(hi); e++)
        for (double m : {1.0, 2.0, 5.0}) {
            double t = e + std::log10(m);
            if ((m == 1 || fine) && t >= lo - 1e-9 && t <= hi + 1e-9) ticks.push_back(t);
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
    if (x1 - x0 < 1e-12 * std::max(1.0, std::abs(x0))) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-12 * std::max(1.0, std::abs(y0))) y0 -= 0.5, y1 += 0.5;
    double pad = (y1 - y0) * 0.05;  // a little air above and below the curves
    y0 -= pad, y1 += pad;

    double pw = W - left - right, ph = H - top - bottom;
    auto to_px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
    auto to_py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

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
