// The ruler: several judges and their aggregated metrics (see ruler.h).
#include "ddpm/eval/ruler.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace dl::ddpm {

std::vector<JudgeSpec> default_judges() {
    std::vector<JudgeSpec> specs;
    for (uint64_t seed : {0, 1, 2}) {
        JudgeSpec s;
        s.name = cat("conv-s", seed);
        s.file = seed == 0 ? "classifier.safetensors" : cat("classifier_", s.name, ".safetensors");
        s.seed = seed;
        specs.push_back(s);
    }
    JudgeSpec mlp;
    mlp.name = "mlp-s0";
    mlp.file = "classifier_mlp-s0.safetensors";
    mlp.model.arch = "mlp";
    mlp.epoch_multiple = 2;  // on the 8,000 digits 95.7% held out after the conv net's 12 epochs, 96.05% after 24 (10 s)
    specs.push_back(mlp);
    return specs;
}

Ruler load_or_train_ruler(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference, const ProgressFn& on_step,
                          const std::vector<JudgeSpec>& specs) {
    if (specs.empty()) fail("ruler: no judges");
    for (size_t i = 0; i < specs.size(); i++)
        for (size_t k = 0; k < i; k++)
            if (specs[i].file == specs[k].file || specs[i].name == specs[k].name)
                fail("ruler: judges ", specs[k].name, " and ", specs[i].name, " share a name or the cache file ", specs[i].file);
    // the cached ones first, so that the progress counts the steps of those to train, all together
    std::vector<std::unique_ptr<nn::Classifier>> nets;
    int64_t total = 0;
    for (const JudgeSpec& s : specs) {
        nets.push_back(load_cached_judge(dir, train, test, s));
        if (!nets.back()) total += judge_steps(train, s);
    }
    int64_t done = 0;
    Ruler r;
    for (size_t i = 0; i < specs.size(); i++) {
        const bool train_now = !nets[i];
        if (train_now) {
            ProgressFn each;
            if (on_step) each = [&](int64_t step, int64_t) { on_step(done + step, total); };
            nets[i] = train_and_cache_judge(dir, train, test, specs[i], each);
            done += judge_steps(train, specs[i]);
        }
        r.judges.push_back(make_judge(std::move(nets[i]), specs[i], dir, test, n_reference, train_now));
    }
    return r;
}

int64_t Ruler::trained_now() const {
    int64_t n = 0;
    for (const Judge& j : judges) n += j.trained_now;
    return n;
}

RulerMetrics Ruler::score(const Tensor& images) const {
    if (judges.empty()) fail("ruler: no judges");
    RulerMetrics m;
    m.n = images.ndim() > 0 ? images.dim(0) : 0;
    m.n_reference = first().reference.features.dim(0);
    std::vector<double> leave_out;  // the judges' mean KID without each jackknife group
    for (const Judge& judge : judges) {
        const Judgement j = judge_images(*judge.net, images);
        JudgeScore s;
        s.name = judge.name;
        s.fid = fid(j.features, judge.reference.features);
        const double to_unit = 1 / judge.feature_rms;  // the reference features at mean square 1 (see ruler.h)
        const KidEstimate k = kid(mul_scalar(j.features, to_unit), mul_scalar(judge.reference.features, to_unit));
        s.kid = k.kid;
        s.kid_se = k.se;
        leave_out.resize(k.leave_out.size(), 0.0);  // every judge has the same groups: same n, same n_reference
        for (size_t g = 0; g < k.leave_out.size(); g++) leave_out[g] += k.leave_out[g] / double(judges.size());
        const PrecisionRecall pr = precision_recall(judge.reference.features, j.features);
        s.precision = pr.precision;
        s.recall = pr.recall;
        m.judges.push_back(s);
        if (&judge == &judges.front()) {  // the classes, as the single judge gave them
            const int64_t K = judge.net->config().classes;
            m.histogram.assign(size_t(K), 0);
            for (int64_t c : j.predicted) m.histogram[size_t(c)]++;
            for (int64_t h : m.histogram)
                if (h > 0) {
                    const double p = double(h) / double(m.n);
                    m.class_entropy -= p * std::log(p) / std::log(double(K));
                }
            for (double c : j.confidence) m.confidence += c / double(m.n);
        }
    }
    const double J = double(judges.size());
    m.fid_min = m.fid_max = m.judges[0].fid;
    for (const JudgeScore& s : m.judges) {
        m.fid_mean += s.fid / J;
        m.kid_mean += s.kid / J;
        m.precision += s.precision / J;
        m.recall += s.recall / J;
        m.fid_min = std::min(m.fid_min, s.fid);
        m.fid_max = std::max(m.fid_max, s.fid);
    }
    for (const JudgeScore& s : m.judges) m.fid_sd += (s.fid - m.fid_mean) * (s.fid - m.fid_mean);
    m.fid_sd = judges.size() > 1 ? std::sqrt(m.fid_sd / (J - 1)) : 0.0;
    m.kid_se = jackknife_se(leave_out);
    return m;
}

RulerMetrics Ruler::floor(const Dataset& train, int64_t n, Philox& gen) const {
    std::vector<int64_t> perm = randperm(train.size(), gen);
    perm.resize(size_t(std::clamp<int64_t>(n, 0, train.size())));
    return score(train.images(perm));
}

SampleMetrics RulerMetrics::summary() const {
    SampleMetrics s;
    s.n = n;
    s.n_reference = n_reference;
    s.fid = fid_mean;
    s.precision = precision;
    s.recall = recall;
    s.histogram = histogram;
    s.class_entropy = class_entropy;
    s.confidence = confidence;
    return s;
}

int64_t RulerMetrics::judges_better_than(const RulerMetrics& other) const {
    if (other.judges.size() != judges.size()) fail("ruler: comparing scores of ", judges.size(), " and ", other.judges.size(), " judges");
    int64_t n = 0;
    for (size_t i = 0; i < judges.size(); i++) {
        if (judges[i].name != other.judges[i].name) fail("ruler: comparing judge ", judges[i].name, " with ", other.judges[i].name);
        n += judges[i].fid < other.judges[i].fid;
    }
    return n;
}

}  // namespace dl::ddpm
