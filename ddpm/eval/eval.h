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
//   classes     the histogram of the judge's predictions, its entropy over log K (1: uniform),
//               and the mean top-class probability (the judge's confidence).
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

// The classifier, and its judgement of the reference images (the first n of the test split).
struct Judge {
    std::unique_ptr<nn::Classifier> net;
    double test_accuracy = 0;  // on the whole test split
    bool trained_now = false;  // false: loaded from the cache
    std::string cache;         // its file
    Judgement reference;
    std::vector<int64_t> reference_labels;  // the reference images' true labels
    // The metrics of images (N, 1, R, R) in [-1, 1] against the reference.
    SampleMetrics score(const Tensor& images) const;
    // The same images, asked to be of classes labels (N) in [0, K).
    ClassMetrics score_classes(const Tensor& images, const std::vector<int64_t>& labels) const;
};

// Trains a judge on train (labels required): Adam from 1e-3 with a cosine decay to 0, batch 64,
// `epochs` epochs, seeded. judge_epochs(n) is the count load_or_train_judge uses.
// on_step(step, steps) for progress.
std::unique_ptr<nn::Classifier> train_classifier(const Dataset& train, int64_t epochs, uint64_t seed, const ProgressFn& on_step = nullptr);
int64_t judge_epochs(int64_t n_train);
// The fraction of `data`'s images the classifier labels correctly.
double classifier_accuracy(const nn::Classifier& net, const Dataset& data);
// <dir>/classifier.safetensors when its "data_crc" metadata matches the data's checksum and its
// config this one, else trains one (and writes the cache, atomically). Needs both splits' labels.
// The reference: the first min(n_reference, test size) test images.
Judge load_or_train_judge(const std::string& dir, const Dataset& train, const Dataset& test, int64_t n_reference,
                          const ProgressFn& on_step = nullptr);

// images (N, 1, R, R) in [-1, 1]; throws on a wrong shape or a non-finite pixel.
Judgement judge_images(const nn::Classifier& net, const Tensor& images, int64_t batch = 256);

double fid(const Tensor& features_a, const Tensor& features_b);  // (N, F), (M, F)
struct PrecisionRecall {
    double precision = 0, recall = 0;
};
PrecisionRecall precision_recall(const Tensor& real, const Tensor& fake, int64_t k = 3);  // (N, F), (M, F)


}  // namespace dl::ddpm
