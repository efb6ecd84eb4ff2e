// safetensors (round trips, hand-written files, every malformed-file error) and checkpoints
// (a training state saved and restored exactly; strict key and shape checks on restore).
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/unet.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tensor/formats/safetensors.h"
#include "tests/tiny_unet.h"

using namespace dl;
using namespace dl::nn;
using dl::test::tiny_unet;

namespace {

std::string temp_path(const std::string& name) {
    std::string dir = (std::filesystem::temp_directory_path() / ("dl_checkpoint_" + std::to_string(getpid()))).string();
    make_dirs(dir);
    return dir + "/" + name;
}

// A safetensors file from a header string and data bytes.
std::string file_with_header(const std::string& header, const std::string& data = std::string(16, '\0')) {
    uint64_t n = header.size();
    return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

}  // namespace

TEST_CASE("safetensors: F32, F64 and I64 round trip with metadata, and the header is 8-byte aligned") {
    Safetensors st;
    Tensor a = Tensor::from_vector(std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 1e-30f, 7.f}, {2, 3});
    Tensor b = Tensor::from_vector(std::vector<double>{3.141592653589793, -1e300}, {2});
    st.add("a", a);
    st.add("b.weight", b);
    st.add_i64("input.t", {0, 999, -5});
    st.add_i64("step", {42}, {});
    st.add("empty", Tensor::zeros({0, 4}));
    st.metadata["config"] = "ch=32 \"quoted\" back\\slash\nnewline \x01 caf\xc3\xa9";
    st.metadata["empty"] = "";
    std::string bytes = st.serialize();
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes[8] == '{');
    CHECK(bytes.size() == 8 + n + 24 + 16 + 24 + 8);

    Safetensors r = Safetensors::parse(bytes, "mem.safetensors");
    REQUIRE(r.entries().size() == 5);
    CHECK(r.entries()[0].name == "a");  // the order they were added
    CHECK(r.entry("a").dtype == "F32");
    CHECK(max_abs_diff(r.tensor("a"), a) == 0);
    CHECK(r.tensor("a").shape() == Shape{2, 3});
    CHECK(r.tensor("b.weight").dtype() == DType::F64);
    CHECK(max_abs_diff(r.tensor("b.weight"), b) == 0);
    CHECK(r.i64("input.t") == std::vector<int64_t>{0, 999, -5});
    CHECK(r.entry("step").shape.empty());
    CHECK(r.i64("step") == std::vector<int64_t>{42});
    CHECK(r.tensor("empty").shape() == Shape{0, 4});
    CHECK(r.metadata == st.metadata);
    CHECK_THROWS_WITH_AS(r.tensor("nope"), doctest::Contains("mem.safetensors: no tensor named \"nope\""), Error);
    CHECK_THROWS_WITH_AS(r.tensor("step"), doctest::Contains("\"step\" is I64, expected F32 or F64"), Error);
    CHECK_THROWS_WITH_AS(r.i64("a"), doctest::Contains("\"a\" is F32, expected I64"), Error);
    CHECK_THROWS_AS(st.add("a", a), Error);
    CHECK_THROWS_AS(st.add("__metadata__", a), Error);

    std::string path = temp_path("round_trip.safetensors");
    st.save(path);
    Safetensors f = Safetensors::load(path);
    CHECK(f.source == path);
    CHECK(max_abs_diff(f.tensor("a"), a) == 0);
    CHECK(f.metadata == st.metadata);
}

TEST_CASE("safetensors: reads a header written by someone else: spaces, escapes, any key order, padding") {
    std::string header =
        "{ \"x\" : { \"shape\" : [ 2 ], \"data_offsets\" : [ 8, 16 ], \"dtype\" : \"F32\" },\n"
        "  \"__metadata__\" : { \"format\" : \"pt\", \"note\" : \"a\\u00e9\\n\\\"\\ud83d\\ude00\" },\n"
        "  \"y\\/z\" : { \"dtype\" : \"I64\", \"shape\" : [ ], \"data_offsets\" : [ 0, 8 ] } }    ";
    std::string data(16, '\0');
    int64_t seven = 7;
    float xs[2] = {0.25f, -8.f};
    std::memcpy(&data[0], &seven, 8);
    std::memcpy(&data[8], xs, 8);
    Safetensors r = Safetensors::parse(file_with_header(header, data), "theirs.safetensors");
    CHECK(r.i64("y/z") == std::vector<int64_t>{7});
    CHECK(r.tensor("x").flat(1) == -8.0);
    CHECK(r.metadata.at("format") == "pt");
    CHECK(r.metadata.at("note") == "a\xc3\xa9\n\"\xf0\x9f\x98\x80");
}

TEST_CASE("safetensors: every malformed file is an error naming the file and what was expected") {
    auto err = [](const std::string& bytes) -> std::string {
        try {
            Safetensors::parse(bytes, "bad.safetensors");
        } catch (const Error& e) {
            return e.what();
        }
        return "no error";
    };
    auto ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    CHECK(err(file_with_header(ok)) == "no error");
    // the tensors must cover the data exactly: bytes after the last one, or a hole, are refused
    CHECK(err(file_with_header(ok, std::string(17, '\0'))) ==
          "bad.safetensors: 1 bytes after the last tensor's data (the tensors cover 16 of 17); the tensors must cover the data exactly");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}")) ==
          "bad.safetensors: bytes [0, 8) of the data belong to no tensor (before \"x\"); the tensors must cover the data exactly");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", "")) == "no error");
    CHECK(err("abc") == "bad.safetensors: truncated: 3 bytes, expected at least 8 (the header length)");
    CHECK(err(file_with_header(ok).substr(0, 20)).find("bad.safetensors: bad header length 55: the file has 12 bytes") == 0);
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}")) ==
          "bad.safetensors: \"x\": unknown dtype \"F16\", expected F32, F64 or I64");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}")) ==
          "bad.safetensors: \"x\": data_offsets [0, 32] out of range: the data after the header has 16 bytes");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}")) ==
          "bad.safetensors: \"x\": data_offsets [0, 16] hold 16 bytes, but F32 (3) needs 12");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}")) ==
          "bad.safetensors: tensors \"x\" [0, 8) and \"y\" [4, 12) overlap");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[4]}}")) == "bad.safetensors: \"x\": missing field \"data_offsets\"");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}")) ==
          "bad.safetensors: \"x\": shape: expected a non-negative integer, found -4");
    CHECK(err(file_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]")) ==
          "bad.safetensors: JSON line 1 column 54: expected ',' or '}', found the end of the header");
    CHECK(err(file_with_header("{\"x\" 5}")) == "bad.safetensors: JSON line 1 column 6: expected ':', found '5}'");
    CHECK(err(file_with_header("[1, 2]")) == "bad.safetensors: the header is an array, expected an object");
    CHECK(err(file_with_header("{\"__metadata__\":{\"k\":3}}")) == "bad.safetensors: \"__metadata__\": \"k\" is a number, expected a string");
    CHECK(err(file_with_header("{\"a\":{},\"a\":{}}")) ==
          "bad.safetensors: JSON line 1 column 9: expected a key other than \"a\" (keys are unique), found '\"a\":{}}'");
}

TEST_CASE("checkpoint: a training state saved and loaded restores model, Adam, EMA, step and RNG exactly") {
    UNetConfig cfg = tiny_unet();
    UNet model(cfg, 1);
    Adam adam(model.num_parameters(), DType::F32, AdamConfig{0.9, 0.999, 1e-8, 0.01, true});
    Ema ema(model.flat_parameters(), 0.99);
    Philox dropout_gen(21), data_gen(22, 7);
    Variable x(Tensor::full({2, 1, 8, 8}, 0.5));
    for (int s = 0; s < 2; s++) {
        model.zero_grad();
        mse_loss(model.forward(x, {3, 4}, &dropout_gen), Variable(Tensor::zeros({2, 1, 8, 8}))).backward();
        adam.step(model.flat_parameters(), model.flat_grads(), 1e-3);
        ema.update(model.flat_parameters());
    }
    Checkpoint ck = capture(model, &adam, &ema, 2);
    ck.rngs["dropout"] = dropout_gen;
    ck.rngs["data"] = data_gen;
    CHECK(ck.metadata.at("model") == cfg.str());
    ck.metadata["train"] = "lr=0.001 batch=64";
    std::string path = temp_path("ckpt.safetensors");
    save_checkpoint(path, ck);
    CHECK_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(getpid())));  // the temporary was renamed

    Checkpoint back = load_checkpoint(path);
    CHECK(back.step == 2);
    CHECK(back.adam_t == 2);
    CHECK(back.metadata.at("train") == "lr=0.001 batch=64");
    CHECK(back.metadata.count("format") == 1);
    CHECK(back.rngs.at("dropout").seed == 21);
    CHECK(back.rngs.at("dropout").offset == dropout_gen.offset);
    CHECK(back.rngs.at("data").offset == 7);
    REQUIRE(back.model.size() == model.named_parameters().size());
    CHECK(back.model[0].name == "temb.fc1.weight");  // the state_dict keys, in order
    CHECK(back.ema[0].name == "temb.fc1.weight");

    UNet fresh(UNetConfig::parse(back.metadata.at("model")), 99);
    Adam adam2(fresh.num_parameters(), DType::F32);
    Ema ema2(fresh.flat_parameters(), 0.99);
    restore(back, fresh, &adam2, &ema2);
    CHECK(max_abs_diff(fresh.flat_parameters(), model.flat_parameters()) == 0);
    CHECK(max_abs_diff(ema2.shadow, ema.shadow) == 0);
    CHECK(max_abs_diff(adam2.m, adam.m) == 0);
    CHECK(max_abs_diff(adam2.v, adam.v) == 0);
    CHECK(adam2.t == 2);
    CHECK(max_abs_diff(ema.shadow, model.flat_parameters()) > 0);  // the EMA is its own state

    // The raw file: the model keys are exactly the state_dict keys, next to the prefixed state.
    Safetensors raw = Safetensors::load(path);
    CHECK(raw.contains("down.0.res.0.conv1.weight"));
    CHECK(raw.contains("ema.down.0.res.0.conv1.weight"));
    CHECK(raw.contains("adam.m.mid.attn.qkv.weight"));
    CHECK(raw.contains("adam.v.conv_out.bias"));
    CHECK(raw.i64("rng.data") == std::vector<int64_t>{22, 7});
}

TEST_CASE("checkpoint: restoring into another configuration names the key and both shapes") {
    UNet small(tiny_unet(), 1);
    std::string path = temp_path("small.safetensors");
    save_checkpoint(path, capture(small, nullptr, nullptr, 0));
    Checkpoint ck = load_checkpoint(path);
    CHECK(ck.ema.empty());
    UNetConfig wider = tiny_unet();
    wider.ch = 16;
    UNet big(wider, 1);
    CHECK_THROWS_WITH_AS(restore(ck, big, nullptr, nullptr),
                         doctest::Contains("shape mismatch for \"temb.fc1.weight\": expected (64, 16), found (32, 8)"), Error);
    UNet same(tiny_unet(), 2);
    Ema ema_same(same.flat_parameters(), 0.9);
    CHECK_THROWS_WITH_AS(restore(ck, same, nullptr, &ema_same), doctest::Contains("no EMA parameters"), Error);
    ck.model.pop_back();
    CHECK_THROWS_WITH_AS(restore(ck, same, nullptr, nullptr), doctest::Contains("missing key \"conv_out.bias\""), Error);
    CHECK_THROWS_WITH_AS(load_checkpoint(temp_path("does_not_exist")), doctest::Contains("does_not_exist"), Error);
}

// Not part of `make test`: writes the file tests/check_checkpoint.py loads into the PyTorch
// reference. Run: ./build/run_tests -tc='*check_checkpoint.py*' --no-skip [DL_CHECK_OUT=path]
TEST_CASE("checkpoint: write the reference U-Net for tests/check_checkpoint.py" * doctest::skip()) {
    const char* env = std::getenv("DL_CHECK_OUT");
    std::string path = env ? env : "/tmp/dl_unet_check.safetensors";
    UNetConfig cfg = UNetConfig::reference();
    UNet model(cfg, 2024);
    Adam adam(model.num_parameters(), DType::F32);
    Ema ema(model.flat_parameters(), 0.995);
    Philox g(1);
    Variable x(randn({4, 1, 28, 28}, g)), eps(randn({4, 1, 28, 28}, g));
    std::vector<int64_t> t{0, 1, 500, 999};
    // one training step, so that the EMA and Adam entries are not trivial
    Philox dropout_gen(3);
    mse_loss(model.forward(x, t, &dropout_gen), eps).backward();
    adam.step(model.flat_parameters(), model.flat_grads(), 1e-3);
    ema.update(model.flat_parameters());
    // the reference check: eval-mode output and the gradients of the MSE loss at the saved weights
    model.eval();
    model.zero_grad();
    Variable out = model.forward(x, t);
    mse_loss(out, eps).backward();
    save_checkpoint(path, capture(model, &adam, &ema, 1));

    Safetensors probe;
    probe.add("x", x.value());
    probe.add_i64("t", t);
    probe.add("eps", eps.value());
    probe.add("out", out.value());
    for (const auto& p : model.named_parameters()) probe.add("grad." + p.name, p.var.grad());
    probe.save(path + ".probe");
    MESSAGE("wrote ", path, " and ", path, ".probe");
}
