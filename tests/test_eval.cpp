// The evaluation: the bound's pieces against numerical integration, the matrix square root, FID and
// precision/recall on feature sets with known answers, the judge learning, and build/eval's errors.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "autograd/ops.h"
#include "ddpm/eval/eval.h"
#include "ddpm/eval/likelihood.h"
#include "ddpm/report/train_log.h"
#include "tensor/formats/io.h"
#include "ddpm/eval/linalg.h"
#include "tensor/formats/npy.h"
#include "tensor/ops.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;

namespace {

// n points around `classes` cluster centres in F dimensions (point i in cluster i % classes), plus noise.
Tensor clusters(int64_t n, int64_t F, int64_t classes, double noise, uint64_t seed, int64_t only_below = -1) {
    Philox centres(99), g(seed);
    Tensor c = mul_scalar(randn({classes, F}, centres, DType::F64), 5.0);
    Tensor x = randn({n, F}, g, DType::F64);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = i % (only_below > 0 ? only_below : classes);
        for (int64_t f = 0; f < F; f++) x.set_flat(i * F + f, c.flat(k * F + f) + noise * x.flat(i * F + f));
    }
    return x;
}

// The number after "key": in a line of JSON (NaN when the key is missing).
double json_number(const std::string& text, const std::string& key) {
    size_t at = text.find("\"" + key + "\": ");
    return at == std::string::npos ? NAN : std::atof(text.c_str() + at + key.size() + 4);
}

Tensor identity(int64_t n) {
    Tensor e = Tensor::zeros({n, n}, DType::F64);
    for (int64_t i = 0; i < n; i++) e.set_flat(i * n + i, 1);
    return e;
}

Tensor random_spd(int64_t n, uint64_t seed) {
    Philox g(seed);
    Tensor a = randn({n, n}, g, DType::F64);
    return add(matmul(a, a, false, true), mul_scalar(identity(n), 0.1));  // A A^T + 0.1 I
}

}  // namespace

TEST_CASE("normal_kl: 0 for identical Gaussians, and the integral of p log(p / q) otherwise") {
    CHECK(normal_kl(0.3, -1.2, 0.3, -1.2) == doctest::Approx(0).epsilon(1e-15));
    // KL(N(0.5, 0.6^2) || N(-0.2, 1.3^2)) by the midpoint rule on [-10, 10]
    const double m1 = 0.5, s1 = 0.6, m2 = -0.2, s2 = 1.3;
    auto pdf = [](double x, double m, double s) { return std::exp(-0.5 * (x - m) * (x - m) / (s * s)) / (s * std::sqrt(2 * M_PI)); };
    double kl = 0, h = 1e-3;
    for (double x = -10 + h / 2; x < 10; x += h) kl += h * pdf(x, m1, s1) * std::log(pdf(x, m1, s1) / pdf(x, m2, s2));
    CHECK(normal_kl(m1, 2 * std::log(s1), m2, 2 * std::log(s2)) == doctest::Approx(kl).epsilon(1e-6));
}

TEST_CASE("the discretized Gaussian: the 256 bins' probabilities sum to 1, and a sharp one puts nearly all on its bin") {
    for (double mean : {-1.0, -0.3, 0.0, 0.77, 1.0})
        for (double log_scale : {-5.0, -2.0, 0.0}) {
            CAPTURE(mean);
            CAPTURE(log_scale);
            double total = 0;
            for (int k = 0; k < 256; k++) total += std::exp(discretized_gaussian_log_likelihood(k / 127.5 - 1, mean, log_scale));
            CHECK(total == doctest::Approx(1).epsilon(1e-9));
        }
    CHECK(std::exp(discretized_gaussian_log_likelihood(100 / 127.5 - 1, 100 / 127.5 - 1, -8)) > 0.999);
    CHECK(discretized_gaussian_log_likelihood(1, -1, -8) == doctest::Approx(std::log(1e-12)));  // clamped, never -inf
}

TEST_CASE("calc_bpd_loop: with the oracle network every KL term vanishes and the bound is prior + decoder") {
    Schedule s = make_schedule(ScheduleKind::Linear, 50);
    Philox g(5);
    Tensor x0 = Dataset(synthetic_images(3, 8, g)).images({0, 1, 2});  // (3, 1, 8, 8) on the 256-level grid
    // the eps that made x_t from x0; right for the whole set at once, so the loop runs batches of 3
    EpsModel oracle = [&](const Variable& xt, const std::vector<int64_t>& t, Philox*) {
        return Variable(div(sub(xt.value(), mul(extract(s.sqrt_alphas_cumprod, t, DType::F32), x0.rows(0, xt.shape()[0]))),
                            extract(s.sqrt_one_minus_alphas_cumprod, t, DType::F32)));
    };
    int64_t passes = 0;
    BpdReport r = calc_bpd_loop(s, oracle, x0, 1, 3, g, VarianceKind::BetaTilde, [&](int64_t done, int64_t) { passes = done; });
    CHECK(passes == 50);
    REQUIRE(r.t.size() == 50);
    CHECK(r.t.front() == 49);
    CHECK(r.t.back() == 0);
    for (size_t k = 0; k + 1 < r.t.size(); k++) CHECK(r.term_bpd[k] < 1e-6);
    CHECK(r.total_bpd == doctest::Approx(r.prior_bpd + r.decoder_bpd + 0).epsilon(1e-4));
    CHECK(r.decoder_bpd > 0);
    // a network that predicts no noise is much worse; with stride 7 one t of each block of 7
    // stands for its block, and the bound is the prior plus the weighted terms
    EpsModel zero = [](const Variable& xt, const std::vector<int64_t>&, Philox*) { return Variable(Tensor::zeros(xt.shape())); };
    BpdReport bad = calc_bpd_loop(s, zero, x0, 7, 2, g);
    REQUIRE(bad.t.size() == 8);  // 7 blocks of [1, 49], then the decoder
    double weights = 0, sum = bad.prior_bpd;
    for (size_t k = 0; k < bad.t.size(); k++) {
        if (k + 1 < bad.t.size()) {
            CHECK(bad.t[k] <= 49 - 7 * int64_t(k));  // inside its block [43 - 7k, 49 - 7k]
            CHECK(bad.t[k] >= 43 - 7 * int64_t(k));
        }
        weights += bad.weight[k];
        sum += bad.weight[k] * bad.term_bpd[k];
    }
    CHECK(bad.t.back() == 0);
    CHECK(weights == 50);  // every one of the T terms but the prior, once
    CHECK(bad.total_bpd == doctest::Approx(sum).epsilon(1e-9));
    CHECK(bad.total_bpd > r.total_bpd + 1);
    CHECK(bad.total_se > 0);
    CHECK_THROWS_WITH(calc_bpd_loop(s, zero, x0, 50, 2, g), "calc_bpd_loop: t_stride must be in [1, T = 50), got 50");
}

TEST_CASE("symmetric_eigen and sqrtm_psd: V diag(w) V^T is A, V is orthonormal, sqrt(A)^2 is A") {
    for (int64_t n : {1, 2, 7, 40}) {
        CAPTURE(n);
        Tensor a = random_spd(n, uint64_t(n));
        SymmetricEigen e = symmetric_eigen(a);
        Tensor w = Tensor::zeros({n, n}, DType::F64);
        for (int64_t i = 0; i < n; i++) w.set_flat(i * n + i, e.values[size_t(i)]);
        CHECK(max_abs_diff(matmul(matmul(e.vectors, w), e.vectors, false, true), a) < 1e-9 * (1 + e.values.back()));
        CHECK(max_abs_diff(matmul(e.vectors, e.vectors, true, false), identity(n)) < 1e-12);
        for (int64_t i = 1; i < n; i++) CHECK(e.values[size_t(i - 1)] <= e.values[size_t(i)]);
        Tensor r = sqrtm_psd(a);
        CHECK(max_abs_diff(matmul(r, r), a) < 1e-9 * (1 + e.values.back()));
        CHECK(max_abs_diff(r, permute(r, {1, 0})) < 1e-12);
    }
    Tensor asym = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
    CHECK_THROWS_WITH(symmetric_eigen(asym), doctest::Contains("symmetric_eigen: the matrix is not symmetric"));
}

TEST_CASE("fid: about 0 for a set against itself, growing with added noise, and the Gaussian closed form") {
    Tensor a = clusters(600, 6, 10, 1.0, 1);
    CHECK(fid(a, a) < 1e-8);
    double last = 0;
    for (double noise : {0.1, 0.5, 1.0, 2.0}) {
        Philox g(7);
        double d = fid(a, add(a, mul_scalar(randn(a.shape(), g, DType::F64), noise)));
        CHECK(d > last);
        last = d;
    }
    // N(0, I) against N(mu, 4 I) in F = 4 dimensions: |mu|^2 + F (1 + 4 - 2 sqrt(4)) = |mu|^2 + F
    Philox g(8);
    Tensor x = randn({20000, 4}, g, DType::F64), y = add(mul_scalar(randn({20000, 4}, g, DType::F64), 2.0), Tensor::full({4}, 0.5, DType::F64));
    CHECK(fid(x, y) == doctest::Approx(4 * 0.25 + 4).epsilon(0.03));
}

TEST_CASE("precision and recall: 1 for a set against itself; recall falls without half the classes, precision with noise") {
    Tensor real = clusters(500, 8, 10, 1.0, 2);
    PrecisionRecall self = precision_recall(real, real);
    CHECK(self.precision == 1.0);
    CHECK(self.recall == 1.0);
    PrecisionRecall fresh = precision_recall(real, clusters(500, 8, 10, 1.0, 3));  // another draw of the same
    CHECK(fresh.precision > 0.8);
    CHECK(fresh.recall > 0.8);
    PrecisionRecall half = precision_recall(real, clusters(500, 8, 10, 1.0, 3, /*only_below=*/5));
    CHECK(half.precision > 0.8);
    CHECK(half.recall < 0.6);
    PrecisionRecall noisy = precision_recall(real, clusters(500, 8, 10, 3.0, 4));
    CHECK(noisy.precision < 0.5);
    CHECK_THROWS_WITH(precision_recall(real, real.rows(0, 3)), "precision_recall: needs more than k = 3 vectors per set, got 500 and 3");
}

TEST_CASE("the judge learns: its loss falls on a small set of shapes, and it labels them well") {
    Philox g(9);
    std::vector<uint8_t> labels;
    IdxImages im = synthetic_images(384, 16, g, &labels);
    Dataset data(im, labels);
    std::vector<int64_t> all;
    std::vector<int64_t> y;
    for (int64_t i = 0; i < 384; i++) all.push_back(i), y.push_back(labels[size_t(i)]);
    nn::ClassifierConfig cfg;
    cfg.side = 16;
    cfg.classes = 6;
    nn::Classifier fresh(cfg, 0);  // as train_classifier starts
    double before = cross_entropy(fresh.forward(Variable(data.images(all))), y).value().item();
    auto net = train_classifier(data, 30, 0);
    double after = cross_entropy(net->forward(Variable(data.images(all))), y).value().item();
    MESSAGE("judge loss ", before, " -> ", after, ", accuracy ", classifier_accuracy(*net, data));
    CHECK(after < before / 4);
    CHECK(classifier_accuracy(*net, data) > 0.9);
    Tensor bad = data.images({0, 1});
    bad.set_flat(3, NAN);
    CHECK_THROWS_WITH(judge_images(*net, bad), "eval: image value 3 is nan; expected finite pixels in [-1, 1]");
    CHECK_THROWS_WITH(judge_images(*net, Tensor::zeros({2, 1, 4, 4})), "eval: expected images (N, 1, 16, 16), got (2, 1, 4, 4)");
    CHECK_THROWS_WITH(train_classifier(Dataset(im), 1, 0), doctest::Contains("the judge needs the IDX label files"));
}

TEST_CASE("the judge refuses held-out labels outside the classes its train labels name, before it trains") {
    Philox g(4);
    std::vector<uint8_t> train_labels, test_labels;
    IdxImages train_im = synthetic_images(64, 16, g, &train_labels), test_im = synthetic_images(8, 16, g, &test_labels);
    const int64_t classes = 1 + *std::max_element(train_labels.begin(), train_labels.end());
    test_labels[5] = uint8_t(classes);  // one past the judge's last class
    std::string dir = (std::filesystem::temp_directory_path() / ("dl_judge_labels_" + std::to_string(getpid()))).string();
    make_dirs(dir);
    CHECK_THROWS_WITH(load_or_train_judge(dir, Dataset(train_im, train_labels), Dataset(test_im, test_labels), 8),
                      cat("eval: label ", classes, " of test image 5 is outside the judge's classes [0, ", classes,
                          ") (the train labels name ", classes, ")").c_str());
    CHECK(!file_exists(dir + "/classifier.safetensors"));  // refused before a judge was trained or cached
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("build/eval: the judge is cached by the data's checksum; bad samples get clear errors") {
    std::string bin = test::build_dir(), dir = test::temp_dir("eval"), out;
    write_synthetic_idx(dir + "/data", 300, 4);
    std::string eval = bin + "/eval --threads 2 --data " + dir + "/data";
    REQUIRE(test::run(eval, &out) == 0);
    INFO(out);
    CHECK(out.find("trained now") != std::string::npos);
    REQUIRE(test::run(eval + " --json", &out) == 0);
    CHECK(out.find("\"accuracy\": ") != std::string::npos);  // and from the cache this time
    REQUIRE(test::run(eval, &out) == 0);
    CHECK(out.find("cached") != std::string::npos);
    // another data set, the same folder: the checksum differs, so the judge is trained again
    write_synthetic_idx(dir + "/data", 300, 5);
    REQUIRE(test::run(eval, &out) == 0);
    CHECK(out.find("trained now") != std::string::npos);

    // samples: the real digits themselves score as well as the floor; bad files are named
    Dataset train(dir + "/data");
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < 60; i++) idx.push_back(i);
    write_npy(dir + "/real.npy", train.images(idx).reshape({60, 28, 28}));
    REQUIRE(test::run(eval + " --samples " + dir + "/real.npy --json", &out) == 0);
    CHECK(json_number(out, "n") == 60);
    // real training digits as the samples score like the floor, which is other training digits
    CHECK(json_number(out, "precision") == doctest::Approx(json_number(out, "floor_precision")).epsilon(0.15));
    CHECK(json_number(out, "recall") == doctest::Approx(json_number(out, "floor_recall")).epsilon(0.15));
    double real_fid = json_number(out, "fid");  // at n = 60 in 128 dimensions FID itself is noisy
    write_npy(dir + "/blank.npy", Tensor::full({60, 28, 28}, -1.0));  // empty canvases: far worse
    REQUIRE(test::run(eval + " --samples " + dir + "/blank.npy --json", &out) == 0);
    CHECK(json_number(out, "fid") > 10 * json_number(out, "floor_fid"));
    CHECK(json_number(out, "fid") > 5 * real_fid);
    CHECK(json_number(out, "recall") < 0.2);
    write_npy(dir + "/wrong.npy", Tensor::zeros({5, 14, 14}));
    CHECK(test::run(eval + " --samples " + dir + "/wrong.npy", &out) != 0);
    CHECK(out.find("wrong.npy: expected samples (N, 28, 28) with N in [4, 100000], found (5, 1, 14, 14)") != std::string::npos);
    CHECK(test::run(eval + " --checkpoint x --n 3", &out) != 0);
    CHECK(out.find("eval: --n expects an integer in [4, 100000], got '3'") != std::string::npos);
    Tensor nan = Tensor::zeros({4, 28, 28});
    nan.set_flat(7, NAN);
    write_npy(dir + "/nan.npy", nan);
    CHECK(test::run(eval + " --samples " + dir + "/nan.npy", &out) != 0);
    CHECK(out.find("eval: image value 7 is nan") != std::string::npos);
    CHECK(test::run(eval + " --samples " + dir + "/missing.npy", &out) != 0);
    CHECK(out.find("missing.npy") != std::string::npos);
    std::remove((dir + "/data/t10k-labels-idx1-ubyte").c_str());
    CHECK(test::run(eval, &out) != 0);
    CHECK(out.find("the test split has 60 images but 0 labels") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("build/train --eval-every writes the ruler's eval.csv, and a resumed run continues it (one of before the ruler kept aside)") {
    std::string bin = test::build_dir(), dir = test::temp_dir("train_eval"), out;
    write_synthetic_idx(dir + "/data", 300, 6);
    std::string train = bin + "/train --threads 2 --data " + dir + "/data --ch 8 --batch 4 --T 50 --samples 4 --ddim-steps 2 "
                        "--eval-every 2 --eval-n 8 --eval-ddim-steps 2 --sampler ddim --out " + dir + "/run";
    REQUIRE(test::run(train + " --steps 4 --every 4", &out) == 0);
    INFO(out);
    CHECK(out.find("eval: every 2 steps, 8 samples (ddim 2 steps, eta 0, 2 model evaluations per sample)") != std::string::npos);
    CHECK(out.find("by the ruler's 4 judges") != std::string::npos);
    CHECK(file_exists(dir + "/run/eval.svg"));
    CHECK(file_exists(dir + "/run/eval_pr.svg"));
    EvalLog first;
    first.read_csv(dir + "/run/eval.csv", 1000);
    REQUIRE(first.rows.size() == 2);
    CHECK(first.rows[0].step == 2);
    CHECK(first.rows[1].step == 4);
    CHECK(first.rows[1].n == 8);
    CHECK(std::isfinite(first.rows[1].fid_mean));
    CHECK(first.rows[1].fid_min < first.rows[1].fid_mean);  // four judges that do not agree to the digit
    CHECK(first.rows[1].fid_mean < first.rows[1].fid_max);
    CHECK(first.rows[1].fid_sd > 0);
    CHECK(first.rows[1].kid_se > 0);
    CHECK(std::isfinite(first.rows[1].kid_mean));
    REQUIRE(test::run(train + " --steps 6 --every 2 --resume", &out) == 0);
    EvalLog resumed;
    resumed.read_csv(dir + "/run/eval.csv", 1000);
    REQUIRE(resumed.rows.size() == 3);
    CHECK(resumed.rows[1].fid_mean == first.rows[1].fid_mean);  // kept from the first session
    CHECK(resumed.rows[2].step == 6);
    // an eval.csv of before the ruler (the single judge's columns) is kept aside, not mixed in
    const std::string old = "step,n,fid,precision,recall,class_entropy,confidence\n2,8,300,0.5,0.5,0.9,0.8\n";
    write_file_atomic(dir + "/run/eval.csv", old);
    CHECK_THROWS_WITH(resumed.read_csv(dir + "/run/eval.csv", 1000), doctest::Contains("the single judge's columns"));
    REQUIRE(test::run(train + " --steps 8 --every 2 --resume", &out) == 0);
    CHECK(out.find("kept as " + dir + "/run/eval_single_judge.csv") != std::string::npos);
    CHECK(read_file(dir + "/run/eval_single_judge.csv") == old);
    resumed.read_csv(dir + "/run/eval.csv", 1000);
    REQUIRE(resumed.rows.size() == 1);
    CHECK(resumed.rows[0].step == 8);
    CHECK(test::run(train + " --steps 10 --eval-n 2", &out) != 0);
    CHECK(out.find("train: --eval-n expects an integer in [4, 100000], got '2'") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("the run's logs read on resume refuse NaN and infinity, naming the file, the line and the field") {
    std::string dir = (std::filesystem::temp_directory_path() / ("dl_log_nan_" + std::to_string(getpid()))).string();
    make_dirs(dir);
    const std::string good = "step,loss,grad_norm,lr,seconds\n1,0.9,3,2e-05,0.2\n";
    write_file_atomic(dir + "/loss.csv", good + "2,nan,3,4e-05,0.3\n");
    ddpm::TrainLog log;
    CHECK_THROWS_WITH(log.read_csv(dir + "/loss.csv", 10),
                      (dir + "/loss.csv: line 3: field 2 is nan, expected a finite number, in '2,nan,3,4e-05,0.3'").c_str());
    write_file_atomic(dir + "/loss.csv", good + "2,0.8,inf,4e-05,0.3\n");
    CHECK_THROWS_WITH(log.read_csv(dir + "/loss.csv", 10), doctest::Contains("line 3: field 3 is inf, expected a finite number"));
    write_file_atomic(dir + "/loss.csv", good);
    log.read_csv(dir + "/loss.csv", 10);
    CHECK(log.rows.size() == 1);
    write_file_atomic(dir + "/eval.csv",
                      "step,n,fid_mean,fid_sd,fid_min,fid_max,kid_mean,kid_se,precision,recall,class_entropy,confidence\n"
                      "5,64,-inf,1,1,1,0,0,0.5,0.5,2,0.9\n");
    ddpm::EvalLog evals;
    CHECK_THROWS_WITH(evals.read_csv(dir + "/eval.csv", 10), doctest::Contains("eval.csv: line 2: field 3 is -inf"));
    std::system(("rm -rf " + dir).c_str());
}
