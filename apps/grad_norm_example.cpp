// build/grad_norm_example: the gradient norm of one named layer of the U-Net, two ways: a hook
// that sees the gradient of an activation as backward reaches it, and the gradient a parameter
// keeps after backward. The smallest program that looks inside the DDPM loss; build/inspect
// does the same for every node at once.
#include <cstdio>

#include "apps/cli.h"
#include "autograd/inspect.h"
#include "ddpm/inspect.h"
#include "ddpm/trainer.h"

using namespace dl;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "grad_norm_example", "prints the gradient norm of one named activation and one parameter");
    std::string layer = args.str("--layer", "mid.attn.softmax", "activation to watch (module path and op, as build/inspect lists them)");
    std::string param = args.str("--param", "mid.attn.qkv.weight", "parameter to read (state_dict key)");
    args.done();

    nn::UNet model(nn::UNetConfig::reference(), /*seed=*/0);           // a fresh reference U-Net
    ddpm::Schedule sched = ddpm::make_schedule(ddpm::ScheduleKind::Linear, 1000);
    Philox gen(1);
    Tensor x0 = ddpm::synthetic_batch(4, 28, gen);                     // (4, 1, 28, 28) in [-1, 1]
    std::vector<int64_t> t = randint(4, 1000, gen);                    // t ~ U{0..999}
    Tensor eps = randn(x0.shape(), gen);                               // eps ~ N(0, I)

    Philox dropout_gen(2);
    Variable loss = ddpm::training_loss(sched, ddpm::eps_model(model), x0, t, eps, &dropout_gen);

    // 1. A hook on an activation: called with its gradient while backward runs.
    Variable act = find_node(loss, layer);
    act.register_hook([](const Variable& v, const Tensor& grad) {
        std::printf("hook: %-28s %-18s |grad| = %.4e\n", v.name().c_str(), shape_str(v.shape()).c_str(), tensor_stats(grad).l2);
    });
    loss.backward();

    // 2. A parameter's gradient, kept after backward (an activation's would need retain_grad()).
    bool found = false;
    for (const nn::NamedParameter& p : model.named_parameters())
        if (p.name == param) {
            std::printf("grad: %-28s %-18s |grad| = %.4e\n", p.name.c_str(), shape_str(p.var.shape()).c_str(), tensor_stats(p.var.grad()).l2);
            found = true;
        }
    if (!found) fail("grad_norm_example: no parameter named '", param, "' (keys as in the checkpoint, e.g. mid.attn.qkv.weight)");
    std::printf("loss %.4f\n", loss.value().item());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
