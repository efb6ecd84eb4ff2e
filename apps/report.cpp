// build/report RUN_DIR: writes RUN_DIR/report.html, one self-contained page of the run
// (ddpm/report/report.h): configuration, speed, loss and learning-rate curves, the samples of each
// checkpoint, FID / precision / recall, loss against t, the figures, and the gradient map.
// build/train rewrites it at every checkpoint; `make report` adds the per-t sweep and the figures.
#include <cstdio>

#include "apps/cli.h"
#include "ddpm/report/report.h"
#include "tensor/formats/io.h"

using namespace dl;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "report", "writes RUN_DIR/report.html: one self-contained page of a training run");
    std::string dir = args.positional("RUN_DIR", "runs/mnist", "the run's folder (build/train --out)");
    args.done();
    std::string path = ddpm::write_run_report(dir);
    std::printf("wrote %s (%.1f kB)\n", path.c_str(), double(read_file(path).size()) / 1000);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
