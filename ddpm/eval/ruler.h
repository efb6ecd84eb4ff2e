// The ruler: several judges (eval.h) scoring the same images, so that a comparison of two runs does
// not rest on one small classifier's view of the digits. One judge compresses differences and can
// even mis-order runs; judges of different seeds and architectures disagree in scale but, when
// the difference is real, agree in order, and their spread says how much the number is the judge's
// rather than the samples'.
//
// Per judge: FID, KID (with its jackknife standard error), precision and recall in its features.
// KID's kernel (x.y / F + 1)^3 mixes powers 0 to 3 of the features, so it is not invariant to their
// scale; Binkowski et al. chose it for Inception features. Our judges' raw features are larger
// (x.x / F is about 21 for each judge on the MNIST reference), where the cubic term
// dominates and a few large-norm images drive the estimate; so before KID each judge's features
// (samples' and reference's) are divided by the root mean square of its reference features. That
// makes each judge's KID independent of its feature scale, and the judges' KIDs comparable, so
// that their mean is not one architecture's. FID is left in the judges' own units, those of the
// single judge's tables.
// Over the judges:
//   fid_mean, fid_sd     the mean and the sample standard deviation (n - 1) of the judges' FIDs;
//   fid_min, fid_max     their range
//   kid_mean, kid_se     the mean of the judges' KIDs, and its standard error: the jackknife of the
//                        mean itself (the judges share the groups, so their correlation counts)
//   precision, recall    the means over the judges
//   histogram, class_entropy, confidence   the first judge's (today's single judge), as before
// The judges are trained once per data set and cached beside the data, one file each, keyed by
// the data's checksum, the model and the recipe: a change to one judge retrains that one only.
#pragma once
#include <string>
#include <vector>

#include "ddpm/eval/eval.h"

namespace dl::ddpm {

// Four judges: the conv net of eval.h at seeds 0, 1, 2 (the first is the single judge of before,
// classifier.safetensors) and an MLP on the pixels (512 hidden, 128 features, twice the epochs), seed 0; files
// classifier.safetensors, classifier_conv-s1.safetensors, classifier_conv-s2.safetensors,
// classifier_mlp-s0.safetensors.
std::vector<JudgeSpec> default_judges();

struct JudgeScore {
    std::string name;
    double fid = 0, kid = 0, kid_se = 0, precision = 0, recall = 0;
};

struct RulerMetrics {
    int64_t n = 0, n_reference = 0;
    double fid_mean = 0, fid_sd = 0, fid_min = 0, fid_max = 0;
    double kid_mean = 0, kid_se = 0;
    double precision = 0, recall = 0;
    std::vector<int64_t> histogram;  // (K) the first judge's predictions per class
    double class_entropy = 0;        // of that histogram / log K
    double confidence = 0;           // the first judge's mean top-class probability
    std::vector<JudgeScore> judges;  // in the ruler's order
    // The figures in the single judge's struct: fid = fid_mean, precision and recall the means,
    // the first judge's classes (what eval.csv holds, for callers that log SampleMetrics).
    SampleMetrics summary() const;
    // How many judges give these images a lower FID than `other` (the same ruler's score of other
    // images): judges.size() when every judge ranks these better. A difference in fid_mean that
    // not every judge agrees with is the judges' taste rather than the images'.
    int64_t judges_better_than(const RulerMetrics& other) const;
};

struct Ruler {
    std::vector<Judge> judges;
    // Images (N, 1, R, R) in [-1, 1], N >= 4, against each judge's reference (the first
    // n_reference test images). Throws on a wrong shape or a non-finite pixel.
    RulerMetrics score(const Tensor& images) const;
    // The floor: min(n, train size) real training digits, chosen by randperm(train size, gen),
    // scored like samples (what a perfect model reaches at this n).
    RulerMetrics floor(const Dataset& train, int64_t n, Philox& gen) const;
    const Judge& first() const { return judges.at(0); }  // the single judge of before (classes, score_classes)
    int64_t trained_now() const;                          // judges trained by this load
};

// Each judge of specs from <dir>/<spec.file> when its cache matches (load_cached_judge), else
// trained and cached (train_and_cache_judge). Labels and classes are checked before anything is
// trained. on_step(step, steps) counts the optimizer steps of all the judges trained by this
// call together (nothing is called when all are cached).
Ruler load_or_train_ruler(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const ProgressFn& on_step = nullptr, const std::vector<JudgeSpec>& specs = default_judges());

}  // namespace dl::ddpm
