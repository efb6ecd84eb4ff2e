// The evaluation's judge and metrics (see eval.h).
#include "ddpm/eval/eval.h"

#include <algorithm>
#include <map>
#include <cmath>
#include <numeric>

#include "autograd/ops.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tensor/formats/io.h"
#include "ddpm/eval/linalg.h"
#include "tensor/ops.h"
#include "tensor/formats/png.h"

namespace dl::ddpm {

uint32_t data_checksum(const Dataset& train, const Dataset& test) {
    std::vector<uint8_t> all;
    for (const Dataset* d : {&train, &test}) {
        const IdxImages& im = d->raw();
        for (int64_t v : {im.n, im.rows, im.cols})
            for (int b = 0; b < 8; b++) all.push_back(uint8_t(uint64_t(v) >> (8 * b)));
        all.insert(all.end(), im.pixels.begin(), im.pixels.end());
        all.insert(all.end(), d->labels().begin(), d->labels().end());
    }
    return crc32(all.data(), all.size());
}

// A label per image, each one of the judge's `classes` (which the train labels decide).
static void require_labels(const Dataset& d, const char* split, int64_t classes = 256) {
    if (d.labels().size() != size_t(d.size()))
        fail("eval: the ", split, " split has ", d.size(), " images but ", d.labels().size(), " labels (the judge needs the IDX label files)");
    for (size_t i = 0; i < d.labels().size(); i++)
        if (d.labels()[i] >= classes)
            fail("eval: label ", int(d.labels()[i]), " of ", split, " image ", i, " is outside the judge's classes [0, ", classes,
                 ") (the train labels name ", classes, ")");
}

// The judge for a data set: model's arch and widths, the data's side, and as many classes as its
// labels name (0 .. max label).
static nn::ClassifierConfig judge_config(const Dataset& train, nn::ClassifierConfig cfg = {}) {
    cfg.side = train.rows();
    cfg.classes = 2;
    for (uint8_t y : train.labels()) cfg.classes = std::max<int64_t>(cfg.classes, int64_t(y) + 1);
    return cfg;
}

std::unique_ptr<nn::Classifier> train_classifier(const Dataset& train, int64_t epochs, uint64_t seed, const ProgressFn& on_step,
                                                 const nn::ClassifierConfig& model) {
    require_labels(train, "train");
    if (train.size() < 64) fail("eval: the judge needs at least 64 training images (one batch), got ", train.size());
    if (train.rows() != train.cols()) fail("eval: the judge needs square images, got ", train.rows(), "x", train.cols());
    auto net = std::make_unique<nn::Classifier>(judge_config(train, model), seed);
    nn::Adam adam(net->num_parameters(), DType::F32);
    Philox gen(seed + 1);
    const int64_t B = 64, per_epoch = train.size() / B, steps = epochs * per_epoch;
    const nn::LrSchedule lr{1e-3, 0, nn::LrDecay::Cosine};
    int64_t step = 0;
    for (int64_t e = 0; e < epochs; e++) {
        std::vector<int64_t> order = randperm(train.size(), gen);
        for (int64_t k = 0; k < per_epoch; k++) {
            std::vector<int64_t> idx(order.begin() + k * B, order.begin() + (k + 1) * B), y;
            for (int64_t i : idx) y.push_back(train.labels()[size_t(i)]);
            net->zero_grad();
            Variable loss = cross_entropy(net->forward(Variable(train.images(idx))), y);
            loss.backward();
            adam.step(net->flat_parameters(), net->flat_grads(), lr.at(++step, steps));
            if (on_step) on_step(step, steps);  // (the step counts with or without a callback: the cosine decay needs it)
        }
    }
    return net;
}

Judgement judge_images(const nn::Classifier& net, const Tensor& images, int64_t batch) {
    const int64_t R = net.config().side;
    if (images.ndim() != 4 || images.dim(1) != 1 || images.dim(2) != R || images.dim(3) != R)
        fail("eval: expected images (N, 1, ", R, ", ", R, "), got ", shape_str(images.shape()));
    int64_t bad = 0;
    if (!all_finite(images, &bad)) fail("eval: image value ", bad, " is ", images.flat(bad), "; expected finite pixels in [-1, 1]");
    const int64_t N = images.dim(0), F = net.config().features, K = net.config().classes;
    Judgement j{Tensor({N, F}, DType::F64), {}, {}};
    NoGradGuard no_grad;
    for (int64_t b0 = 0; b0 < N; b0 += batch) {
        const int64_t B = std::min(batch, N - b0);
        Variable f = net.features(Variable(images.rows(b0, B).to(DType::F32)));
        Tensor p = softmax(net.logits(f)).value();  // (B, K)
        j.features.rows(b0, B).copy_from(f.value().to(DType::F64));
        for (int64_t n = 0; n < B; n++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (p.flat(n * K + k) > p.flat(n * K + best)) best = k;
            j.predicted.push_back(best);
            j.confidence.push_back(p.flat(n * K + best));
        }
    }
    return j;
}

double classifier_accuracy(const nn::Classifier& net, const Dataset& data) {
    std::vector<int64_t> all(static_cast<size_t>(data.size()));
    std::iota(all.begin(), all.end(), 0);
    Judgement j = judge_images(net, data.images(all));
    int64_t right = 0;
    for (size_t i = 0; i < all.size(); i++) right += j.predicted[i] == int64_t(data.labels()[i]);
    return double(right) / double(std::max<int64_t>(1, data.size()));
}

// About 1,500 steps of 64 images, at least 2 epochs: 12 epochs of the 8,000-digit fallback
// (97.5% held out, 32 s on the 2-core machine), 2 of full MNIST's 60,000.
int64_t judge_epochs(int64_t n) { return std::clamp<int64_t>((96000 + n - 1) / std::max<int64_t>(n, 1), 2, 20); }

static int64_t spec_epochs(const Dataset& train, const JudgeSpec& spec) { return judge_epochs(train.size()) * std::max<int64_t>(1, spec.epoch_multiple); }

int64_t judge_steps(const Dataset& train, const JudgeSpec& spec) { return spec_epochs(train, spec) * (train.size() / 64); }

namespace {

// Both splits labelled, the test labels within the judge's classes; checked before anything trains.
nn::ClassifierConfig checked_config(const Dataset& train, const Dataset& test, const JudgeSpec& spec) {
    require_labels(train, "train");
    const nn::ClassifierConfig cfg = judge_config(train, spec.model);
    require_labels(test, "test", cfg.classes);
    return cfg;
}

// The cache is used when it was made from these data, for this model, by this recipe; a change to
// any of them trains a new judge. (Seed 0's recipe string is the one of the single judge before
// the ruler, so its caches stay valid.)
std::map<std::string, std::string> cache_key(const Dataset& train, const Dataset& test, const nn::ClassifierConfig& cfg, const JudgeSpec& spec) {
    return {{"data_crc", std::to_string(data_checksum(train, test))},
            {"model", cfg.str()},
            {"recipe", cat("judge 1: Adam 1e-3 cosine, batch 64, ", spec_epochs(train, spec), " epochs, seed ", spec.seed)}};
}

}  // namespace

std::unique_ptr<nn::Classifier> load_cached_judge(const std::string& dir, const Dataset& train, const Dataset& test, const JudgeSpec& spec) {
    const nn::ClassifierConfig cfg = checked_config(train, test, spec);
    const std::string path = dir + "/" + spec.file;
    if (!file_exists(path)) return nullptr;
    nn::Checkpoint ck = nn::load_checkpoint(path);  // a damaged file is an error that names it
    for (const auto& [k, v] : cache_key(train, test, cfg, spec))
        if (!ck.metadata.count(k) || ck.metadata.at(k) != v) return nullptr;
    auto net = std::make_unique<nn::Classifier>(cfg);
    nn::load_named(net->state_dict(), ck.model, path);
    return net;
}

std::unique_ptr<nn::Classifier> train_and_cache_judge(const std::string& dir, const Dataset& train, const Dataset& test,
                                                      const JudgeSpec& spec, const ProgressFn& on_step) {
    const nn::ClassifierConfig cfg = checked_config(train, test, spec);
    auto net = train_classifier(train, spec_epochs(train, spec), spec.seed, on_step, spec.model);
    nn::Checkpoint ck = nn::capture(*net, nullptr, nullptr, 0);
    for (const auto& [k, v] : cache_key(train, test, cfg, spec)) ck.metadata[k] = v;
    nn::save_checkpoint(dir + "/" + spec.file, ck);
    return net;
}

Judge make_judge(std::unique_ptr<nn::Classifier> net, const JudgeSpec& spec, const std::string& dir, const Dataset& test,
                 int64_t n_reference, bool trained_now) {
    Judge j;
    j.name = spec.name;
    j.net = std::move(net);
    j.trained_now = trained_now;
    j.cache = dir + "/" + spec.file;
    j.test_accuracy = classifier_accuracy(*j.net, test);
    std::vector<int64_t> ref(static_cast<size_t>(std::clamp<int64_t>(n_reference, 0, test.size())));
    std::iota(ref.begin(), ref.end(), 0);
    j.reference = judge_images(*j.net, test.images(ref));
    for (int64_t i : ref) j.reference_labels.push_back(test.labels()[size_t(i)]);
    double ms = 0;
    const Tensor& f = j.reference.features;
    for (int64_t i = 0; i < f.numel(); i++) ms += f.flat(i) * f.flat(i);
    if (ms > 0) j.feature_rms = std::sqrt(ms / double(f.numel()));
    return j;
}

Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference, const JudgeSpec& spec,
                          const ProgressFn& on_step) {
    std::unique_ptr<nn::Classifier> net = load_cached_judge(dir, train, test, spec);
    const bool trained_now = !net;
    if (!net) net = train_and_cache_judge(dir, train, test, spec, on_step);
    return make_judge(std::move(net), spec, dir, test, n_reference, trained_now);
}

Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const ProgressFn& on_step) {
    return load_or_train_judge(dir, train, test, n_reference, JudgeSpec{}, on_step);
}

// ---- the metrics --------------------------------------------------------------------------
namespace {

// The mean (F) and the unbiased covariance (F, F) of the rows of x (N, F).
void mean_cov(const Tensor& x, std::vector<double>& mu, Tensor& cov) {
    const int64_t N = x.dim(0), F = x.dim(1);
    if (N < 2) fail("fid: needs at least 2 feature vectors per set, got ", N);
    const double* p = x.data<double>();
    mu.assign(size_t(F), 0.0);
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) mu[size_t(f)] += p[n * F + f] / double(N);
    Tensor c({N, F}, DType::F64);  // centred
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < F; f++) c.data<double>()[n * F + f] = p[n * F + f] - mu[size_t(f)];
    cov = mul_scalar(matmul(c, c, true, false), 1.0 / double(N - 1));  // (F, F) = c^T c / (N - 1)
}

Tensor as_f64(const Tensor& x, const char* what) {
    if (x.ndim() != 2) fail(what, ": expected features (N, F), got ", shape_str(x.shape()));
    return x.dtype() == DType::F64 ? x : x.to(DType::F64);
}

}  // namespace

double fid(const Tensor& features_a, const Tensor& features_b) {
    Tensor a = as_f64(features_a, "fid"), b = as_f64(features_b, "fid");
    if (a.dim(1) != b.dim(1)) fail("fid: feature sizes differ: ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    std::vector<double> mu_a, mu_b;
    Tensor sa, sb;
    mean_cov(a, mu_a, sa);
    mean_cov(b, mu_b, sb);
    Tensor ra = sqrtm_psd(sa);
    Tensor m = matmul(matmul(ra, sb), ra);  // S_a^1/2 S_b S_a^1/2, symmetric PSD
    m = mul_scalar(add(m, permute(m, {1, 0})), 0.5);
    double tr_sqrt = 0, tr_a = 0, tr_b = 0, d2 = 0;
    for (double w : symmetric_eigen(m).values) tr_sqrt += std::sqrt(std::max(w, 0.0));
    const int64_t F = a.dim(1);
    for (int64_t f = 0; f < F; f++) {
        tr_a += sa.flat(f * F + f);
        tr_b += sb.flat(f * F + f);
        d2 += (mu_a[size_t(f)] - mu_b[size_t(f)]) * (mu_a[size_t(f)] - mu_b[size_t(f)]);
    }
    return std::max(0.0, d2 + tr_a + tr_b - 2 * tr_sqrt);
}

PrecisionRecall precision_recall(const Tensor& real_in, const Tensor& fake_in, int64_t k) {
    Tensor real = as_f64(real_in, "precision_recall"), fake = as_f64(fake_in, "precision_recall");
    const int64_t N = real.dim(0), M = fake.dim(0), F = real.dim(1);
    if (fake.dim(1) != F) fail("precision_recall: feature sizes differ: ", shape_str(real.shape()), " and ", shape_str(fake.shape()));
    if (k < 1 || N <= k || M <= k) fail("precision_recall: needs more than k = ", k, " vectors per set, got ", N, " and ", M);
    auto dist2 = [F](const double* x, const double* y) {
        double s = 0;
        for (int64_t f = 0; f < F; f++) s += (x[f] - y[f]) * (x[f] - y[f]);
        return s;
    };
    // the squared radius of each vector's ball: the distance to its k-th nearest neighbour in its own set
    auto radii = [&](const Tensor& x) {
        const int64_t n = x.dim(0);
        const double* p = x.data<double>();
        std::vector<double> r(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            std::vector<double> d;
            d.reserve(size_t(n));
            for (int64_t j = 0; j < n; j++)
                if (j != i) d.push_back(dist2(p + i * F, p + j * F));
            std::nth_element(d.begin(), d.begin() + (k - 1), d.end());
            r[size_t(i)] = d[size_t(k - 1)];
        }
        return r;
    };
    // the share of the rows of x inside some ball of (y, its radii)
    auto inside = [&](const Tensor& x, const Tensor& y, const std::vector<double>& r) {
        const int64_t n = x.dim(0), m = y.dim(0);
        const double *px = x.data<double>(), *py = y.data<double>();
        int64_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            bool in = false;
            for (int64_t j = 0; j < m && !in; j++) in = dist2(px + i * F, py + j * F) <= r[size_t(j)];
            count += in;
        }
        return double(count) / double(n);
    };
    return {inside(fake, real, radii(real)), inside(real, fake, radii(fake))};
}

// ---- KID ----------------------------------------------------------------------------------
namespace {

// The sums of the cubic kernel k(x, y) = (x.y / F + 1)^3 over the pairs of rows of x (N, F) and
// y (M, F), by group: sums[gx * G + gy] for row i of x in group gx and row j of y in group gy
// (group[i] of each); same: x is y, and the pairs i == j are left out of the sums, into diag.
struct KernelSums {
    std::vector<double> sums;  // (G, G)
    double diag = 0;           // same: the sum of k(x_i, x_i)
};
KernelSums kernel_sums(const Tensor& x, const Tensor& y, const std::vector<int64_t>& gx, const std::vector<int64_t>& gy, int64_t G, bool same) {
    const int64_t N = x.dim(0), M = y.dim(0), F = x.dim(1), chunk = 256;
    KernelSums out{std::vector<double>(size_t(G * G), 0.0), 0.0};
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {  // (chunk, M) of the kernel at a time, so memory stays O(M)
        const int64_t R = std::min(chunk, N - r0);
        Tensor dots = matmul(x.rows(r0, R), y, false, true);  // (R, M)
        const double* d = dots.data<double>();
        for (int64_t i = 0; i < R; i++) {
            double* row = out.sums.data() + gx[size_t(r0 + i)] * G;
            for (int64_t j = 0; j < M; j++) {
                const double base = d[i * M + j] / double(F) + 1, k = base * base * base;
                if (same && r0 + i == j) out.diag += k;
                else row[gy[size_t(j)]] += k;
            }
        }
    }
    return out;
}

// Row i's group: a fixed seeded permutation dealt round-robin into G groups (seeded, so that
// every judge's features of the same images share the groups; permuted, so that samples drawn in
// class order do not make a group of one class).
std::vector<int64_t> jackknife_groups(int64_t n, int64_t G) {
    Philox gen(0x6b6964);  // "kid"
    std::vector<int64_t> perm = randperm(n, gen), group(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; p++) group[size_t(perm[size_t(p)])] = p % G;
    return group;
}

void check_pair(const Tensor& a, const Tensor& b, const char* what, int64_t min_rows) {
    if (a.dim(1) != b.dim(1)) fail(what, ": feature sizes differ: ", shape_str(a.shape()), " and ", shape_str(b.shape()));
    if (a.dim(0) < min_rows || b.dim(0) < min_rows) fail(what, ": needs at least ", min_rows, " feature vectors per set, got ", a.dim(0), " and ", b.dim(0));
}

}  // namespace

double mmd2_poly(const Tensor& a_in, const Tensor& b_in, bool unbiased) {
    Tensor a = as_f64(a_in, "mmd2_poly"), b = as_f64(b_in, "mmd2_poly");
    check_pair(a, b, "mmd2_poly", unbiased ? 2 : 1);
    const double n = double(a.dim(0)), m = double(b.dim(0));
    std::vector<int64_t> ga(size_t(a.dim(0)), 0), gb(size_t(b.dim(0)), 0);
    KernelSums xx = kernel_sums(a, a, ga, ga, 1, true), yy = kernel_sums(b, b, gb, gb, 1, true), xy = kernel_sums(a, b, ga, gb, 1, false);
    if (unbiased) return xx.sums[0] / (n * (n - 1)) + yy.sums[0] / (m * (m - 1)) - 2 * xy.sums[0] / (n * m);
    return (xx.sums[0] + xx.diag) / (n * n) + (yy.sums[0] + yy.diag) / (m * m) - 2 * xy.sums[0] / (n * m);
}

double jackknife_se(const std::vector<double>& leave_out) {
    const double G = double(leave_out.size());
    if (leave_out.size() < 2) return NAN;
    double mean = 0, ss = 0;
    for (double v : leave_out) mean += v / G;
    for (double v : leave_out) ss += (v - mean) * (v - mean);
    return std::sqrt((G - 1) / G * ss);
}

KidEstimate kid(const Tensor& a_in, const Tensor& b_in, int64_t groups) {
    Tensor a = as_f64(a_in, "kid"), b = as_f64(b_in, "kid");
    check_pair(a, b, "kid", 4);
    const int64_t N = a.dim(0), M = b.dim(0), G = std::clamp<int64_t>(groups, 2, std::min(N, M));
    const std::vector<int64_t> ga = jackknife_groups(N, G), gb = jackknife_groups(M, G);
    const std::vector<double> xx = kernel_sums(a, a, ga, ga, G, true).sums, yy = kernel_sums(b, b, gb, gb, G, true).sums,
                              xy = kernel_sums(a, b, ga, gb, G, false).sums;
    std::vector<double> na(size_t(G), 0), nb(size_t(G), 0);
    for (int64_t g : ga) na[size_t(g)]++;
    for (int64_t g : gb) nb[size_t(g)]++;
    // the U-statistic of the rows outside group `out` (-1: all rows)
    auto estimate = [&](int64_t out) {
        double sxx = 0, syy = 0, sxy = 0, n = double(N), m = double(M);
        for (int64_t g = 0; g < G; g++)
            for (int64_t h = 0; h < G; h++)
                if (g != out && h != out) sxx += xx[size_t(g * G + h)], syy += yy[size_t(g * G + h)], sxy += xy[size_t(g * G + h)];
        if (out >= 0) n -= na[size_t(out)], m -= nb[size_t(out)];
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m);
    };
    KidEstimate k;
    k.kid = estimate(-1);
    for (int64_t g = 0; g < G; g++) k.leave_out.push_back(estimate(g));
    k.se = jackknife_se(k.leave_out);
    return k;
}

SampleMetrics Judge::score(const Tensor& images) const {
    const nn::Classifier& net = *this->net;
    Judgement j = judge_images(net, images);
    SampleMetrics m;
    m.n = images.dim(0);
    m.n_reference = reference.features.dim(0);
    m.fid = fid(j.features, reference.features);
    PrecisionRecall pr = precision_recall(reference.features, j.features);
    m.precision = pr.precision;
    m.recall = pr.recall;
    const int64_t K = net.config().classes;
    m.histogram.assign(size_t(K), 0);
    for (int64_t c : j.predicted) m.histogram[size_t(c)]++;
    for (int64_t h : m.histogram)
        if (h > 0) {
            double p = double(h) / double(m.n);
            m.class_entropy -= p * std::log(p) / std::log(double(K));
        }
    for (double c : j.confidence) m.confidence += c / double(m.n);
    return m;
}

ClassMetrics Judge::score_classes(const Tensor& images, const std::vector<int64_t>& labels) const {
    if (int64_t(labels.size()) != images.dim(0)) fail("Judge::score_classes: ", labels.size(), " labels for ", images.dim(0), " images");
    const int64_t K = net->config().classes;
    for (int64_t c : labels)
        if (c < 0 || c >= K) fail("Judge::score_classes: label ", c, " is outside the judge's classes [0, ", K, ")");
    Judgement j = judge_images(*net, images);
    ClassMetrics m;
    m.n.assign(size_t(K), 0);
    m.accuracy.assign(size_t(K), NAN);
    m.fid.assign(size_t(K), NAN);
    int64_t right = 0;
    for (int64_t k = 0; k < K; k++) {
        std::vector<int64_t> mine, real;  // this class's samples, and the reference digits of this class
        int64_t hits = 0;
        for (size_t i = 0; i < labels.size(); i++)
            if (labels[i] == k) mine.push_back(int64_t(i)), hits += j.predicted[i] == k;
        for (size_t i = 0; i < reference_labels.size(); i++)
            if (reference_labels[i] == k) real.push_back(int64_t(i));
        m.n[size_t(k)] = int64_t(mine.size());
        right += hits;
        if (mine.empty()) continue;
        m.accuracy[size_t(k)] = double(hits) / double(mine.size());
        if (mine.size() >= 2 && real.size() >= 2) m.fid[size_t(k)] = fid(gather(j.features, mine), gather(reference.features, real));
    }
    m.overall_accuracy = labels.empty() ? NAN : double(right) / double(labels.size());
    return m;
}

}  // namespace dl::ddpm
