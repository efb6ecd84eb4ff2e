// How good are the samples? Numbers instead of the eye, with a small classifier as the judge
// (nn/classifier.h), trained on the real digits and cached beside them.
//
//   FID         the Frechet distance between Gaussians fitted to the judge's penultimate features
//               of the samples and of real test images (Heusel et al. 2017, with the judge in place
//               of Inception, the usual substitute on 28x28 digits):
//                 |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)
//               It depends on n: compare only at equal n, beside the real-data floor.
//   precision   improved precision and recall (Kynkaanniemi et al. 2019): each real feature
//   recall      vector is the centre of a ball reaching its k-th nearest real neighbour (k = 3);
//               precision is the share of samples inside some real ball ("are the digits good"),
//               recall the share of real images inside some sample ball ("are all kinds there").
//   KID         the kernel inception distance (Binkowski et al. 2018, "Demystifying MMD GANs"):
//               the unbiased estimate of the squared maximum mean discrepancy with the cubic
//               polynomial kernel k(x, y) = (x.y / F + 1)^3 in the same features. Unlike FID it
//               is unbiased, so its expectation does not depend on n and it is 0 (up to noise)
//               when the two sets come from one distribution; it comes with a standard error.
//   classes     the histogram of the judge's predictions, its entropy over log K (1: uniform),
//               and the mean top-class probability (the judge's confidence).
// Several judges together, their FIDs and KIDs aggregated, are the ruler (ruler.h).
// N images, F features, K classes, R side.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/data.h"
#include "ddpm/diffusion.h"
#include "nn/classifier.h"

namespace dl::ddpm {

// CRC-32 over the images and labels of both splits: the key of the cached judge.
uint32_t data_checksum(const Dataset& train, const Dataset& test);

struct Judgement {
    Tensor features;                   // (N, F) float64
    std::vector<int64_t> predicted;    // (N) the top class
    std::vector<double> confidence;    // (N) its probability
};

struct SampleMetrics {
    int64_t n = 0, n_reference = 0;
    double fid = 0, precision = 0, recall = 0;
    std::vector<int64_t> histogram;  // (K) predictions per class
    double class_entropy = 0;        // entropy of the histogram / log K
    double confidence = 0;           // mean top-class probability
};

// Class-conditional samples: how often the judge sees the class that was asked for, and the FID
// of each class's samples against the reference digits of that class (NaN under 2 of either).
struct ClassMetrics {
    double overall_accuracy = 0;   // over all samples
    std::vector<int64_t> n;        // (K) samples asked of each class
    std::vector<double> accuracy;  // (K) the share the judge labels as asked (NaN: none asked)
    std::vector<double> fid;       // (K)
};

// Which judge: its architecture (side and classes come from the data), its seed, and its cache
// file in the data's folder. The first of default_judges() is the single judge of before the
// ruler: "classifier.safetensors", conv, seed 0.
struct JudgeSpec {
    std::string name = "conv-s0";               // in tables and errors
    std::string file = "classifier.safetensors";  // in the data's folder
    nn::ClassifierConfig model;                 // arch and widths
    uint64_t seed = 0;                          // the initial weights' and the batches' seed
    int64_t epoch_multiple = 1;                 // trains judge_epochs(n) times this many epochs
};

// The classifier, and its judgement of the reference images (the first n of the test split).
struct Judge {
    std::string name;  // its JudgeSpec's
    std::unique_ptr<nn::Classifier> net;
    double test_accuracy = 0;  // on the whole test split
    bool trained_now = false;  // false: loaded from the cache
    std::string cache;         // its file
    Judgement reference;
    std::vector<int64_t> reference_labels;  // the reference images' true labels
    // The root mean square of the reference features (over images and features): the ruler
    // divides features by it before KID, whose kernel is not invariant to their scale.
    double feature_rms = 1;
    // The metrics of images (N, 1, R, R) in [-1, 1] against the reference.
    SampleMetrics score(const Tensor& images) const;
    // The same images, asked to be of classes labels (N) in [0, K).
    ClassMetrics score_classes(const Tensor& images, const std::vector<int64_t>& labels) const;
};

// Trains a judge on train (labels required): Adam from 1e-3 with a cosine decay to 0, batch 64,
// `epochs` epochs, seeded. judge_epochs(n) is the count load_or_train_judge uses.
// on_step(step, steps) for progress.
// model: the arch and widths (side and classes come from the data).
std::unique_ptr<nn::Classifier> train_classifier(const Dataset& train, int64_t epochs, uint64_t seed, const ProgressFn& on_step = nullptr,
                                                 const nn::ClassifierConfig& model = {});
int64_t judge_epochs(int64_t n_train);
// The fraction of `data`'s images the classifier labels correctly.
double classifier_accuracy(const nn::Classifier& net, const Dataset& data);
// <dir>/<spec.file> when its metadata match: "data_crc" the data's checksum, "model" the config,
// "recipe" the training recipe (epochs and seed); else trains one (and writes the cache,
// atomically). Needs both splits' labels. The reference: the first min(n_reference, test size)
// test images. Without a spec: today's single judge (conv, seed 0, classifier.safetensors).
Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const ProgressFn& on_step = nullptr);
Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const JudgeSpec& spec, const ProgressFn& on_step = nullptr);
// The cached judge of spec when <dir>/<spec.file> holds one that matches the data, the config and
// the recipe; null otherwise (nothing is trained). Throws on a damaged file, naming it.
std::unique_ptr<nn::Classifier> load_cached_judge(const std::string& dir, const Dataset& train, const Dataset& test, const JudgeSpec& spec);
// The judge's view of an existing network: test accuracy and the reference (as load_or_train_judge).
Judge make_judge(std::unique_ptr<nn::Classifier> net, const JudgeSpec& spec, const std::string& dir, const Dataset& test,
                 int64_t n_reference, bool trained_now);
// Trains spec's judge on train, and caches it in <dir>/<spec.file> (atomically, with the keys above).
std::unique_ptr<nn::Classifier> train_and_cache_judge(const std::string& dir, const Dataset& train, const Dataset& test,
                                                      const JudgeSpec& spec, const ProgressFn& on_step = nullptr);
// Optimizer steps train_and_cache_judge takes on train (for a progress bar over several judges).
int64_t judge_steps(const Dataset& train, const JudgeSpec& spec);

// images (N, 1, R, R) in [-1, 1]; throws on a wrong shape or a non-finite pixel.
Judgement judge_images(const nn::Classifier& net, const Tensor& images, int64_t batch = 256);

double fid(const Tensor& features_a, const Tensor& features_b);  // (N, F), (M, F)
struct PrecisionRecall {
    double precision = 0, recall = 0;
};
PrecisionRecall precision_recall(const Tensor& real, const Tensor& fake, int64_t k = 3);  // (N, F), (M, F)

// The squared MMD between the rows of a (N, F) and b (M, F) with the cubic polynomial kernel
// k(x, y) = (x.y / F + 1)^3 (Binkowski et al. 2018, eq. 3 of Gretton et al. 2012 for the unbiased
// form): unbiased leaves out the k(x_i, x_i) terms of the within-set means (the U-statistic;
// N, M >= 2); biased keeps them (the V-statistic, positive even for one distribution).
double mmd2_poly(const Tensor& a, const Tensor& b, bool unbiased = true);

// KID: the unbiased MMD^2 of a against b, with a standard error. Binkowski et al. average the
// unbiased estimate over many random subsets; the average over all subsets of the same sizes is the
// U-statistic of the whole sets, computed here exactly (one pass over the kernel matrices, no
// subset noise). The standard error is the delete-a-group jackknife (Efron & Stein 1981, which makes
// it conservative): the rows of each set are dealt into G groups by a fixed seeded permutation
// (the same for every judge, so that estimates in several judges' features can share it), and
// leave_out[g] is the estimate without group g of both sets:
//   se^2 = (G - 1) / G * sum_g (leave_out[g] - mean)^2.
struct KidEstimate {
    double kid = 0, se = 0;
    std::vector<double> leave_out;  // (G)
};
KidEstimate kid(const Tensor& a, const Tensor& b, int64_t groups = 10);  // (N, F), (M, F), N, M >= 4
// The standard error of the jackknife above from its leave-out estimates.
double jackknife_se(const std::vector<double>& leave_out);


}  // namespace dl::ddpm
