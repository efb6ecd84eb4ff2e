// SVG line plots written by hand (loss curves, learning rates, timings): a title, axes with
// tick labels, one colored polyline per series and a legend. Opens in any browser.
#pragma once
#include <string>
#include <vector>

namespace dl {

struct Series {
    std::string name;      // shown in the legend
    std::vector<double> x;  // same length as y
    std::vector<double> y;
};

// Writes the plot atomically. Any finite data is drawn, whatever its magnitude. Points with a
// non-finite x or y are skipped (the line breaks there); with log_y the y axis is log10 and points
// with y <= 0 are skipped too; a line under the title says how many points were left out.
// Throws dl::Error naming the path when a series' x and y lengths differ.
void write_svg_plot(const std::string& path, const std::string& title, const std::string& xlabel,
                    const std::string& ylabel, const std::vector<Series>& series, bool log_y);

// The SVG text write_svg_plot writes.
std::string svg_plot(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                     const std::vector<Series>& series, bool log_y);

// Text fit for XML and HTML content and attribute values: & < > " escaped.
std::string xml_escape(const std::string& s);

}  // namespace dl
