// Post-hoc EMA: the profiles' algebra, the snapshots of a run, the reconstruction (see posthoc_ema.h).
#include "ddpm/posthoc_ema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "ddpm/eval/linalg.h"
#include "tensor/formats/io.h"
#include "tensor/formats/safetensors.h"
#include "tensor/parse.h"

namespace dl::ddpm {

double power_ema_sigma_rel(double gamma) {
    if (!(gamma > 0) || !std::isfinite(gamma)) fail("power_ema_sigma_rel: gamma must be positive and finite, got ", gamma);
    return std::sqrt((gamma + 1) / ((gamma + 2) * (gamma + 2) * (gamma + 3)));
}

double power_ema_gamma(double sigma_rel) {
    // sigma_rel(gamma) falls monotonically from sqrt(1/12) at gamma = 0 towards 0, so the root of
    // f(gamma) = gamma^3 + 7 gamma^2 + (16 - s) gamma + 12 - s, s = sigma_rel^-2, in gamma > 0 is
    // unique (f(0) = 12 - s < 0, f grows without bound); bisection on it, then the bracket's middle.
    const double max_sigma = std::sqrt(1.0 / 12);
    if (!(sigma_rel > 0 && sigma_rel < max_sigma))
        fail("power_ema_gamma: sigma_rel must be in (0, ", max_sigma, ") (gamma > 0), got ", sigma_rel);
    const double s = 1 / (sigma_rel * sigma_rel);
    auto f = [s](double g) { return ((g + 7) * g + 16 - s) * g + 12 - s; };
    double lo = 0, hi = 1;
    while (f(hi) < 0) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-14 * hi; i++) {
        const double mid = 0.5 * (lo + hi);
        (f(mid) < 0 ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

const std::vector<double>& posthoc_sigma_rels() {
    static const std::vector<double> widths{0.05, 0.10};
    return widths;
}

double power_profile_dot(double t_a, double gamma_a, double t_b, double gamma_b) {
    if (!(t_a > 0 && t_b > 0 && gamma_a > 0 && gamma_b > 0))
        fail("power_profile_dot: t and gamma must be positive, got t ", t_a, ", ", t_b, " and gamma ", gamma_a, ", ", gamma_b);
    if (t_a > t_b) return power_profile_dot(t_b, gamma_b, t_a, gamma_a);
    // integral_0^t_a (g_a + 1) tau^g_a / t_a^(g_a+1) (g_b + 1) tau^g_b / t_b^(g_b+1) dtau
    //   = (g_a + 1)(g_b + 1) t_a^(g_a+g_b+1) / ((g_a + g_b + 1) t_a^(g_a+1) t_b^(g_b+1))
    return (gamma_a + 1) * (gamma_b + 1) * std::pow(t_a / t_b, gamma_b) / ((gamma_a + gamma_b + 1) * t_b);
}

namespace {

double dot(const EmaProfile& a, const EmaProfile& b) { return power_profile_dot(double(a.step), a.gamma, double(b.step), b.gamma); }

}  // namespace

std::vector<double> posthoc_ema_weights(const std::vector<EmaProfile>& snaps, const EmaProfile& target, double rcond) {
    const int64_t S = int64_t(snaps.size());
    if (S == 0) fail("posthoc_ema_weights: no snapshots");
    Tensor A({S, S}, DType::F64);  // (S, S) A_ij = <p_i, p_j>
    std::vector<double> b(static_cast<size_t>(S));  // (S) b_i = <p_i, p_r>
    for (int64_t i = 0; i < S; i++) {
        b[size_t(i)] = dot(snaps[size_t(i)], target);
        for (int64_t j = 0; j < S; j++) A.set_flat(i * S + j, dot(snaps[size_t(i)], snaps[size_t(j)]));
    }
    // x = V diag(1 / w) V^T b over the eigenvalues w above rcond * max w (the least-norm solution)
    const SymmetricEigen e = symmetric_eigen(A);
    const double w_max = e.values.back();
    std::vector<double> x(size_t(S), 0.0);
    for (int64_t k = 0; k < S; k++) {
        const double w = e.values[size_t(k)];
        if (!(w > rcond * w_max)) continue;
        double vb = 0;
        for (int64_t i = 0; i < S; i++) vb += e.vectors.flat(i * S + k) * b[size_t(i)];
        for (int64_t i = 0; i < S; i++) x[size_t(i)] += e.vectors.flat(i * S + k) * vb / w;
    }
    return x;
}

double posthoc_ema_residual(const std::vector<EmaProfile>& snaps, const std::vector<double>& x, const EmaProfile& target) {
    if (x.size() != snaps.size()) fail("posthoc_ema_residual: ", x.size(), " weights for ", snaps.size(), " snapshots");
    // ||sum x_i p_i - p_r||^2 = x^T A x - 2 x^T b + <p_r, p_r>
    double xax = 0, xb = 0;
    for (size_t i = 0; i < snaps.size(); i++) {
        xb += x[i] * dot(snaps[i], target);
        for (size_t j = 0; j < snaps.size(); j++) xax += x[i] * x[j] * dot(snaps[i], snaps[j]);
    }
    const double rr = dot(target, target);
    return std::sqrt(std::max(0.0, xax - 2 * xb + rr) / rr);
}

void PostHocEma::start(const Tensor& params, const std::vector<double>& sigma_rels) {
    gammas.clear();
    emas.clear();
    for (double s : sigma_rels) {
        gammas.push_back(power_ema_gamma(s));
        emas.emplace_back(params, 0.0);
    }
}

void PostHocEma::update(const Tensor& params, int64_t t) {
    for (size_t i = 0; i < emas.size(); i++) {
        emas[i].decay = nn::power_ema_decay(t, gammas[i]);
        emas[i].update(params);
    }
}

// ---- the snapshot files ---------------------------------------------------------------------
std::string snapshot_dir(const std::string& run_dir) { return run_dir + "/ema_snapshots"; }

namespace {

std::string snapshot_name(double sigma_rel, int64_t step) {
    char name[96];
    std::snprintf(name, sizeof name, "ema_%.3f_%08lld.safetensors", sigma_rel, (long long)step);
    return name;
}

double meta_number(const Safetensors& st, const std::string& key) {
    auto it = st.metadata.find(key);
    double v = 0;
    const char* end = nullptr;
    if (it != st.metadata.end()) end = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v).ptr;
    if (it == st.metadata.end() || it->second.empty() || end != it->second.data() + it->second.size() || !std::isfinite(v))
        fail(st.source, ": metadata '", key, "' is ", it == st.metadata.end() ? "missing" : "'" + it->second + "'",
             ", expected a number (an EMA snapshot written by build/train?)");
    return v;
}

}  // namespace

int64_t write_ema_snapshots(const std::string& run_dir, const nn::Module& model, const PostHocEma& ph, int64_t step) {
    const std::string dir = snapshot_dir(run_dir);
    make_dirs(dir);
    int64_t bytes = 0;
    for (size_t i = 0; i < ph.emas.size(); i++) {
        Safetensors st;
        for (const nn::NamedTensor& e : model.views(ph.emas[i].shadow)) st.add(e.name, e.value);
        const double sigma_rel = power_ema_sigma_rel(ph.gammas[i]);
        st.metadata["sigma_rel"] = cat(sigma_rel);
        st.metadata["gamma"] = cat(ph.gammas[i]);
        st.metadata["step"] = std::to_string(step);
        st.metadata["model"] = model.config_string();
        const std::string bytes_out = st.serialize();
        write_file_atomic(dir + "/" + snapshot_name(sigma_rel, step), bytes_out);
        bytes += int64_t(bytes_out.size());
    }
    return bytes;
}

std::vector<EmaSnapshotFile> list_ema_snapshots(const std::string& run_dir, int64_t max_step) {
    const std::string dir = snapshot_dir(run_dir);
    std::vector<EmaSnapshotFile> out;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind("ema_", 0) != 0 || name.size() < 12 || name.substr(name.size() - 12) != ".safetensors") continue;
        // the header alone would do; a snapshot is about a megabyte, read whole for simplicity
        Safetensors st = Safetensors::load(it->path().string());
        const double gamma = meta_number(st, "gamma"), step = meta_number(st, "step");
        if (!(gamma > 0) || !(step >= 1) || step != std::floor(step))
            fail(st.source, ": metadata gamma ", gamma, " and step ", step, ", expected gamma > 0 and a step >= 1");
        if (int64_t(step) <= max_step) out.push_back({it->path().string(), {int64_t(step), gamma}});
    }
    std::sort(out.begin(), out.end(), [](const EmaSnapshotFile& a, const EmaSnapshotFile& b) {
        return a.profile.gamma != b.profile.gamma ? a.profile.gamma > b.profile.gamma : a.profile.step < b.profile.step;
    });
    return out;
}

std::string PostHocResult::str() const {
    char buf[256];
    std::snprintf(buf, sizeof buf, "post-hoc EMA sigma_rel %.4g (gamma %.4g) at step %lld from %lld snapshots (profile residual %.2g, sum |w| %.3g)",
                  power_ema_sigma_rel(gamma), gamma, (long long)step, (long long)snapshots, residual, weight_l1);
    return buf;
}

PostHocResult load_posthoc_ema(const std::string& run_dir, int64_t max_step, double sigma_rel, nn::Module& model) {
    const double gamma = power_ema_gamma(sigma_rel);
    const std::vector<EmaSnapshotFile> files = list_ema_snapshots(run_dir, max_step);
    if (files.empty())
        fail("post-hoc EMA: no snapshots at or before step ", max_step, " in ", snapshot_dir(run_dir),
             " (build/train writes them every --ema-snapshot-every steps)");
    std::vector<EmaProfile> profiles;
    int64_t last = 0;
    for (const EmaSnapshotFile& f : files) {
        profiles.push_back(f.profile);
        last = std::max(last, f.profile.step);
    }
    PostHocResult r;
    r.step = last;
    r.snapshots = int64_t(files.size());
    r.gamma = gamma;
    const EmaProfile target{last, gamma};
    const std::vector<double> x = posthoc_ema_weights(profiles, target);
    r.residual = posthoc_ema_residual(profiles, x, target);
    for (double w : x) r.weight_l1 += std::abs(w);

    Tensor acc = Tensor::zeros({model.num_parameters()}, DType::F64);  // (P) sum_i x_i theta_i
    const nn::StateDict dst = model.views(acc);
    for (size_t i = 0; i < files.size(); i++) {
        if (x[i] == 0) continue;
        Safetensors st = Safetensors::load(files[i].path);
        for (const nn::NamedTensor& d : dst) {
            const Tensor src = st.tensor(d.name).to(DType::F64);
            if (src.shape() != d.value.shape())
                fail(files[i].path, ": tensor '", d.name, "' has shape ", shape_str(src.shape()), ", the model's is ", shape_str(d.value.shape()));
            double* a = const_cast<Tensor&>(d.value).data<double>();
            const double* s = src.data<double>();
            for (int64_t k = 0; k < src.numel(); k++) a[k] += x[i] * s[k];
        }
    }
    model.flat_parameters().copy_from(acc.to(DType::F32));
    return r;
}

}  // namespace dl::ddpm
