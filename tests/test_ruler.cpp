// The ruler (ddpm/eval/ruler.h): KID against its definition's properties (0 in expectation for
// one distribution, positive for two, unbiased unlike the V-statistic, an honest standard error),
// the judges' caches one file each, and the ranking of images made worse on purpose.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "ddpm/eval/ruler.h"
#include "tensor/cpu.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;

namespace {

// images + sigma * N(0, 1) noise, clipped to [-1, 1].
Tensor add_noise(const Tensor& images, double sigma, uint64_t seed) {
    Philox g(seed);
    Tensor noise = randn(images.shape(), g, DType::F64);
    Tensor x = images.to(DType::F64);
    for (int64_t i = 0; i < x.numel(); i++) x.set_flat(i, std::clamp(x.flat(i) + sigma * noise.flat(i), -1.0, 1.0));
    return x.to(DType::F32);
}

// n rows of F features: N(shift, scale^2) in every coordinate, mixed by a fixed random matrix
// (so that the coordinates are correlated, as a judge's features are).
Tensor gaussian_features(int64_t n, int64_t F, double shift, double scale, uint64_t seed) {
    Philox mix_gen(1234), g(seed);
    Tensor mix = mul_scalar(randn({F, F}, mix_gen, DType::F64), 1.0 / std::sqrt(double(F)));
    Tensor z = randn({n, F}, g, DType::F64);
    for (int64_t i = 0; i < z.numel(); i++) z.set_flat(i, shift + scale * z.flat(i));
    return matmul(z, mix);
}

double mean_of(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x / double(v.size());
    return s;
}

double sd_of(const std::vector<double>& v) {
    const double m = mean_of(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m) / double(v.size() - 1);
    return std::sqrt(s);
}

// Small judges for tests: two conv nets of another seed and an MLP, narrow so that they train in
// a second or two on a few hundred synthetic shapes.
std::vector<JudgeSpec> small_judges() {
    std::vector<JudgeSpec> specs(3);
    for (int i = 0; i < 2; i++) {
        specs[size_t(i)].name = cat("conv-s", i);
        specs[size_t(i)].file = cat("judge_conv", i, ".safetensors");
        specs[size_t(i)].seed = uint64_t(i);
        specs[size_t(i)].model.ch = 8;
        specs[size_t(i)].model.features = 32;
        specs[size_t(i)].epoch_multiple = 3;
    }
    specs[2].name = "mlp";
    specs[2].file = "judge_mlp.safetensors";
    specs[2].model.arch = "mlp";
    specs[2].model.hidden = 64;
    specs[2].model.features = 32;
    specs[2].epoch_multiple = 3;
    return specs;
}

// n synthetic shapes (side 16, six classes) and their labels, drawn with seed: a random n of 8n,
// so that the classes' counts vary as in an independent sample (synthetic_images deals the
// classes in turn, and two sets with exactly equal counts are closer than two independent
// samples: their KID would be negative by more than its noise).
Dataset shapes(int64_t n, uint64_t seed) {
    Philox g(seed);
    std::vector<uint8_t> all_labels, labels;
    IdxImages all = synthetic_images(8 * n, 16, g, &all_labels);
    std::vector<int64_t> pick = randperm(8 * n, g);
    IdxImages im{n, 16, 16, {}};
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = pick[size_t(i)];
        im.pixels.insert(im.pixels.end(), all.pixels.begin() + k * 256, all.pixels.begin() + (k + 1) * 256);
        labels.push_back(all_labels[size_t(k)]);
    }
    return Dataset(im, labels);
}

std::vector<int64_t> first(int64_t n) {
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) idx[size_t(i)] = i;
    return idx;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("kid: about 0 for two samples of one distribution, clearly positive for a shifted or wider one") {
    for (uint64_t seed = 0; seed < 4; seed++) {
        Tensor a = gaussian_features(400, 16, 0, 1, 10 + seed), b = gaussian_features(300, 16, 0, 1, 20 + seed);
        KidEstimate same = kid(a, b), shifted = kid(a, gaussian_features(300, 16, 0.5, 1, 30 + seed)),
                    wider = kid(a, gaussian_features(300, 16, 0, 2, 40 + seed));
        INFO("seed ", seed, ": same ", same.kid, " +- ", same.se, ", shifted ", shifted.kid, " +- ", shifted.se, ", wider ", wider.kid, " +- ", wider.se);
        CHECK(same.se > 0);
        CHECK(std::abs(same.kid) < 3 * same.se);
        CHECK(shifted.kid > 5 * shifted.se);
        CHECK(wider.kid > 5 * wider.se);
        CHECK(same.leave_out.size() == 10);
    }
    CHECK_THROWS_WITH(kid(gaussian_features(3, 4, 0, 1, 1), gaussian_features(8, 4, 0, 1, 2)),
                      "kid: needs at least 4 feature vectors per set, got 3 and 8");
    CHECK_THROWS_WITH(kid(gaussian_features(8, 4, 0, 1, 1), gaussian_features(8, 5, 0, 1, 2)), "kid: feature sizes differ: (8, 4) and (8, 5)");
}

TEST_CASE("kid: unbiased; its mean over many small draws of one distribution is near 0, the biased estimator's is not") {
    std::vector<double> unbiased, biased;
    for (uint64_t d = 0; d < 400; d++) {
        Tensor a = gaussian_features(8, 4, 0, 1, 1000 + 2 * d), b = gaussian_features(8, 4, 0, 1, 1001 + 2 * d);
        unbiased.push_back(mmd2_poly(a, b, true));
        biased.push_back(mmd2_poly(a, b, false));
        if (d < 5) CHECK(kid(a, b).kid == doctest::Approx(unbiased.back()).epsilon(1e-9));  // grouped sums, the same U-statistic
    }
    const double sem_u = sd_of(unbiased) / std::sqrt(400.0), sem_b = sd_of(biased) / std::sqrt(400.0);
    MESSAGE("over 400 draws of 8 and 8: unbiased ", mean_of(unbiased), " +- ", sem_u, ", biased ", mean_of(biased), " +- ", sem_b);
    CHECK(std::abs(mean_of(unbiased)) < 3 * sem_u);
    CHECK(mean_of(biased) > 10 * sem_b);
}

TEST_CASE("kid: Binkowski's average over random subsets converges to the whole sets' U-statistic, which kid() computes") {
    Tensor a = gaussian_features(40, 6, 0, 1, 5), b = gaussian_features(50, 6, 0.2, 1.1, 6);
    Philox g(7);
    std::vector<double> subset;
    for (int s = 0; s < 3000; s++) {
        std::vector<int64_t> pa = randperm(40, g), pb = randperm(50, g);
        pa.resize(10);
        pb.resize(12);
        subset.push_back(mmd2_poly(gather(a, pa), gather(b, pb)));
    }
    const double whole = kid(a, b).kid, sem = sd_of(subset) / std::sqrt(double(subset.size()));
    MESSAGE("3000 subsets of 10 and 12: ", mean_of(subset), " +- ", sem, "; the whole sets: ", whole);
    CHECK(std::abs(mean_of(subset) - whole) < 3 * sem);
}

TEST_CASE("kid: the jackknife standard error is about the spread of KID over independent draws (conservative if anything)") {
    for (double shift : {0.0, 0.25}) {
        std::vector<double> values, ses;
        for (uint64_t d = 0; d < 60; d++) {
            KidEstimate k = kid(gaussian_features(150, 8, 0, 1, 500 + 2 * d), gaussian_features(150, 8, shift, 1, 501 + 2 * d));
            values.push_back(k.kid);
            ses.push_back(k.se);
        }
        MESSAGE("shift ", shift, ": KID ", mean_of(values), ", sd over 60 draws ", sd_of(values), ", mean jackknife se ", mean_of(ses));
        CHECK(mean_of(ses) > 0.8 * sd_of(values));
        CHECK(mean_of(ses) < 2.0 * sd_of(values));
    }
}

TEST_CASE("train_classifier: the same network with or without a progress callback (the cosine decay counts steps either way)") {
    Dataset train = shapes(128, 31);
    nn::ClassifierConfig cfg;
    cfg.ch = 4;
    cfg.features = 16;
    int64_t calls = 0;
    auto quiet = train_classifier(train, 3, 0, nullptr, cfg), counted = train_classifier(train, 3, 0, [&](int64_t, int64_t) { calls++; }, cfg);
    CHECK(calls == 3 * (128 / 64));
    const Tensor a = quiet->flat_parameters(), b = counted->flat_parameters();
    REQUIRE(a.numel() == b.numel());
    int64_t differ = 0;
    for (int64_t i = 0; i < a.numel(); i++) differ += a.flat(i) != b.flat(i);
    CHECK(differ == 0);
}

TEST_CASE("ruler: one cache file per judge; a second load trains nothing, a changed key retrains that judge only") {
    const std::string dir = test::temp_dir("ruler_cache");
    Dataset train = shapes(256, 1), test = shapes(64, 2);
    std::vector<JudgeSpec> specs = small_judges();
    int64_t calls = 0, last = 0, total = 0;
    ProgressFn progress = [&](int64_t step, int64_t steps) { calls++, last = step, total = steps; };
    Ruler first_load = load_or_train_ruler(dir, train, test, 40, progress, specs);
    CHECK(first_load.trained_now() == 3);
    CHECK(last == total);  // one count over the three judges
    CHECK(total == judge_steps(train, specs[0]) + judge_steps(train, specs[1]) + judge_steps(train, specs[2]));
    std::vector<std::string> bytes;
    for (const JudgeSpec& s : specs) {
        REQUIRE(file_exists(dir + "/" + s.file));
        bytes.push_back(read_file(dir + "/" + s.file));
    }
    const Tensor images = shapes(40, 3).images(first(40));
    const RulerMetrics before = first_load.score(images);

    calls = 0;
    Ruler again = load_or_train_ruler(dir, train, test, 40, progress, specs);
    CHECK(again.trained_now() == 0);
    CHECK(calls == 0);
    const RulerMetrics cached = again.score(images);  // the cached weights score exactly as the trained ones
    for (size_t i = 0; i < specs.size(); i++) CHECK(cached.judges[i].fid == before.judges[i].fid);

    specs[1].seed = 7;  // one judge's recipe changes: that judge alone is trained again
    Ruler changed = load_or_train_ruler(dir, train, test, 40, progress, specs);
    CHECK(!changed.judges[0].trained_now);
    CHECK(changed.judges[1].trained_now);
    CHECK(!changed.judges[2].trained_now);
    CHECK(total == judge_steps(train, specs[1]));
    CHECK(read_file(dir + "/" + specs[0].file) == bytes[0]);
    CHECK(read_file(dir + "/" + specs[1].file) != bytes[1]);
    CHECK(read_file(dir + "/" + specs[2].file) == bytes[2]);

    // a cache of another data set: the judge of that file is trained again, the others kept
    std::filesystem::copy_file(dir + "/" + specs[2].file, dir + "/mlp_kept.safetensors");
    Ruler other = load_or_train_ruler(dir, shapes(256, 9), test, 40, nullptr, {specs[2]});
    CHECK(other.trained_now() == 1);
    Ruler back = load_or_train_ruler(dir, train, test, 40, nullptr, specs);
    CHECK(back.judges[0].trained_now == false);
    CHECK(back.judges[1].trained_now == false);
    CHECK(back.judges[2].trained_now == true);

    specs[2].file = specs[0].file;
    CHECK_THROWS_WITH(load_or_train_ruler(dir, train, test, 40, nullptr, specs), doctest::Contains("share a name or the cache file"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("ruler: the first default judge is the single judge of before, sharing its cache") {
    const std::string dir = test::temp_dir("ruler_single");
    Dataset train = shapes(256, 11), test = shapes(60, 12);
    Judge single = load_or_train_judge(dir, train, test, 60);
    CHECK(single.trained_now);
    JudgeSpec mlp = small_judges()[2];
    Ruler r = load_or_train_ruler(dir, train, test, 60, nullptr, {default_judges()[0], mlp});
    CHECK(!r.first().trained_now);
    CHECK(r.first().cache == single.cache);
    const Tensor images = shapes(60, 13).images(first(60));
    RulerMetrics m = r.score(images);
    SampleMetrics s = single.score(images);
    CHECK(m.judges[0].fid == s.fid);
    CHECK(m.histogram == s.histogram);
    CHECK(m.confidence == s.confidence);
    CHECK(m.summary().fid == m.fid_mean);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("ruler: images made worse rank below better ones by every judge, in FID and KID, and by the means") {
    const std::string dir = test::temp_dir("ruler_rank");
    Dataset train = shapes(384, 21), test = shapes(300, 22);
    Ruler r = load_or_train_ruler(dir, train, test, 300, nullptr, small_judges());
    for (const Judge& j : r.judges) {
        INFO(j.name);
        CHECK(j.test_accuracy > 0.8);
    }
    const Tensor clean = shapes(300, 23).images(first(300));  // new draws of the same distribution
    std::vector<RulerMetrics> m = {r.score(clean), r.score(add_noise(clean, 0.25, 1)), r.score(add_noise(clean, 0.5, 2))};
    for (size_t k = 0; k < m.size(); k++)
        for (const JudgeScore& s : m[k].judges) MESSAGE("strength ", k, " ", s.name, ": FID ", s.fid, " KID ", s.kid, " +- ", s.kid_se);
    for (size_t k = 0; k + 1 < m.size(); k++) {
        INFO("strength ", k, " against ", k + 1);
        CHECK(m[k].judges_better_than(m[k + 1]) == int64_t(r.judges.size()));
        for (size_t i = 0; i < r.judges.size(); i++) {
            INFO(m[k].judges[i].name, ": FID ", m[k].judges[i].fid, " -> ", m[k + 1].judges[i].fid, ", KID ", m[k].judges[i].kid, " -> ",
                 m[k + 1].judges[i].kid);
            CHECK(m[k].judges[i].fid < m[k + 1].judges[i].fid);
            CHECK(m[k].judges[i].kid < m[k + 1].judges[i].kid);
        }
        CHECK(m[k].fid_mean < m[k + 1].fid_mean);
        CHECK(m[k].kid_mean < m[k + 1].kid_mean);
    }
    CHECK(std::abs(m[0].kid_mean) < 3 * m[0].kid_se);      // clean draws: KID about 0
    CHECK(m[2].kid_mean > 5 * m[2].kid_se);                // the strong noise: clearly not
    CHECK(m[0].fid_min <= m[0].fid_mean);
    CHECK(m[0].fid_mean <= m[0].fid_max);
    std::system(("rm -rf " + dir).c_str());
}

// The measurement behind ddpm/eval/README.md's table, on real digits (a copy of the data: the
// judges are cached beside it). Run: RULER_DATA=dir ./build/run_tests -tc='ruler: measure*' --no-skip
TEST_CASE("ruler: measure the floor, subset spread and noise ranking on real digits" * doctest::skip()) {
    const char* env = std::getenv("RULER_DATA");
    REQUIRE(env != nullptr);
    const std::string dir = env;
    Dataset train(dir, "train"), test(dir, "test");
    const int64_t n = std::min<int64_t>(2000, test.size());
    const Precision was = precision();
    set_precision(Precision::WINOGRAD);  // as build/eval and build/train run
    set_flush_denormals();
    for (const JudgeSpec& s : default_judges()) {  // each judge alone, to time its training
        auto t0 = std::chrono::steady_clock::now();
        Ruler one = load_or_train_ruler(dir, train, test, n, nullptr, {s});
        std::printf("%-8s %s in %.1f s (with its test accuracy and reference features)\n", s.name.c_str(),
                    one.trained_now() ? "trained" : "loaded", seconds_since(t0));
    }
    auto t0 = std::chrono::steady_clock::now();
    Ruler ruler = load_or_train_ruler(dir, train, test, n);
    std::printf("the ruler: %lld trained now, loaded in %.1f s\n", (long long)ruler.trained_now(), seconds_since(t0));
    for (const Judge& j : ruler.judges)
        std::printf("  %-8s %8lld parameters, test accuracy %.2f%% on %lld\n", j.name.c_str(), (long long)j.net->num_parameters(),
                    100 * j.test_accuracy, (long long)test.size());
    // four disjoint sets of n training digits (the 8,000 hold four of 2,000): the spread of the
    // figures between them is what chance alone moves a run's score by
    Philox pick(1);
    std::vector<int64_t> perm = randperm(train.size(), pick);
    auto row = [&](const std::string& name, const Tensor& images) {
        auto t = std::chrono::steady_clock::now();
        RulerMetrics m = ruler.score(images);
        std::string per;
        for (const JudgeScore& s : m.judges) per += cat(" ", s.name, " ", s.fid, " KID ", s.kid, " +- ", s.kid_se, ";");
        std::printf("| %s | %lld | %.2f +- %.2f [%.2f, %.2f] | %.4f +- %.4f | %.3f | %.3f |%s  %.1f s\n", name.c_str(), (long long)m.n, m.fid_mean,
                    m.fid_sd, m.fid_min, m.fid_max, m.kid_mean, m.kid_se, m.precision, m.recall, per.c_str(), seconds_since(t));
        return m;
    };
    std::vector<RulerMetrics> real;
    for (int64_t s = 0; (s + 1) * n <= train.size(); s++)
        real.push_back(row(cat("real train digits, subset ", s), train.images(std::vector<int64_t>(perm.begin() + s * n, perm.begin() + (s + 1) * n))));
    double fid_mean = 0, fid_sd = 0, kid_mean = 0, kid_sd = 0, R = double(real.size());
    for (const RulerMetrics& m : real) fid_mean += m.fid_mean / R, kid_mean += m.kid_mean / R;
    for (const RulerMetrics& m : real) fid_sd += (m.fid_mean - fid_mean) * (m.fid_mean - fid_mean) / (R - 1), kid_sd += (m.kid_mean - kid_mean) * (m.kid_mean - kid_mean) / (R - 1);
    std::printf("over the %lld subsets: FID mean %.2f sd %.2f, KID mean %.4f sd %.4f\n", (long long)real.size(), fid_mean, std::sqrt(fid_sd), kid_mean, std::sqrt(kid_sd));
    const Tensor base = train.images(std::vector<int64_t>(perm.begin(), perm.begin() + n));
    for (double sigma : {0.1, 0.2, 0.4}) row(cat("subset 0 + noise ", sigma), add_noise(base, sigma, 7));
    set_precision(was);
}
