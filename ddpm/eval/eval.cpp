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

// The judge for a data set: its side, and as many classes as its labels name (0 .. max label).
static nn::ClassifierConfig judge_config(const Dataset& train) {
    nn::ClassifierConfig cfg;
    cfg.side = train.rows();
    cfg.classes = 2;
    for (uint8_t y : train.labels()) cfg.classes = std::max<int64_t>(cfg.classes, int64_t(y) + 1);
    return cfg;
}

std::unique_ptr<nn::Classifier> train_classifier(const Dataset& train, int64_t epochs, uint64_t seed, const ProgressFn& on_step) {
    require_labels(train, "train");
    if (train.size() < 64) fail("eval: the judge needs at least 64 training images (one batch), got ", train.size());
    if (train.rows() != train.cols()) fail("eval: the judge needs square images, got ", train.rows(), "x", train.cols());
    auto net = std::make_unique<nn::Classifier>(judge_config(train), seed);
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
            adam.step(net->flat_parameters(), net->flat_grads(), lr.at(step + 1, steps));
            if (on_step) on_step(++step, steps);
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
        Tensor p = softmax(net.fc2.forward(f)).value();  // (B, K)
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

Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const ProgressFn& on_step) {
    require_labels(train, "train");
    const nn::ClassifierConfig cfg = judge_config(train);
    require_labels(test, "test", cfg.classes);
    Judge j;
    j.cache = dir + "/classifier.safetensors";
    // The cache is used when it was made from these data, for this model, by this recipe; a
    // change to any of them trains a new judge. A damaged file is an error that names it.
    const std::map<std::string, std::string> key = {
        {"data_crc", std::to_string(data_checksum(train, test))},
        {"model", cfg.str()},
        {"recipe", cat("judge 1: Adam 1e-3 cosine, batch 64, ", judge_epochs(train.size()), " epochs, seed 0")}};
    if (file_exists(j.cache)) {
        nn::Checkpoint ck = nn::load_checkpoint(j.cache);
        bool same = true;
        for (const auto& [k, v] : key) same = same && ck.metadata.count(k) && ck.metadata.at(k) == v;
        if (same) {
            j.net = std::make_unique<nn::Classifier>(cfg);
            nn::load_named(j.net->state_dict(), ck.model, j.cache);
        }
    }
    if (!j.net) {
        j.net = train_classifier(train, judge_epochs(train.size()), 0, on_step);
        j.trained_now = true;
        nn::Checkpoint ck = nn::capture(*j.net, nullptr, nullptr, 0);
        for (const auto& [k, v] : key) ck.metadata[k] = v;
        nn::save_checkpoint(j.cache, ck);
    }
    j.test_accuracy = classifier_accuracy(*j.net, test);
    std::vector<int64_t> ref(static_cast<size_t>(std::clamp<int64_t>(n_reference, 0, test.size())));
    std::iota(ref.begin(), ref.end(), 0);
    j.reference = judge_images(*j.net, test.images(ref));
    for (int64_t i : ref) j.reference_labels.push_back(test.labels()[size_t(i)]);
    return j;
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
