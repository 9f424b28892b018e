using L2O.Optimizers;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Learned;

/// <summary>What a shipped checkpoint was trained on, for how long, and where it was measured to work and not.</summary>
/// <param name="Method">Registry name.</param>
/// <param name="TrainedOn">Meta-training task and data.</param>
/// <param name="Training">How long (meta-iterations, time).</param>
/// <param name="Works">Where it was evaluated to work, with numbers.</param>
/// <param name="Fails">Where it was evaluated not to, with numbers.</param>
/// <param name="Keyword">The <c>checkpoint=</c> value that selects it: <c>pretrained</c> or <c>pretrained-NAME</c>.</param>
public sealed record ModelCard(string Method, string TrainedOn, string Training, string Works, string Fails, string Keyword = Pretrained.Keyword);

/// <summary>
/// Model cards of the checkpoints in <see cref="Pretrained"/>. The numbers come from
/// <c>pretrained/README.md</c> and <c>docs/evaluation.md</c> (final loss after 100 steps, mean ± std over
/// runs, next to Adam at lr 0.03125; 0.0283 on the base MLP); the memory cost is measured, not stated
/// (<see cref="StateFloatsPerParameter"/>).
/// </summary>
public static class ModelCards
{
    private const string BaseTask = "the base MLP 784-20-10 (sigmoid, batch 128) on the embedded MNIST digits, 100-step trajectories in unrolls of 20, first-order truncated BPTT, seed 0";

    private const string MixTask = "ten MLP variants on the embedded MNIST digits (depth 1-5; sigmoid, ReLU, ELU, tanh; width 20 or 40; the base MLP twice as often), 100-200-step trajectories in unrolls of 20, first-order truncated BPTT, the paper's tricks, seed 11";

    public static IReadOnlyList<ModelCard> All { get; } =
    [
        new("hyperadam", BaseTask,
            "3 150 meta-iterations (best validation of a 12 000-iteration run on the fixed meta-gradient, 0.4610; validation flat at 0.46-0.47 from about 2 500 on), on one core of a 2-core CPU (1.5 s/iteration); the paper: about 350 000",
            "base MLP 0.259 ± 0.007 (tuned Adam 0.283 ± 0.007, 100 runs, standard errors); ELU MLP 0.239 (0.248); 2 hidden layers 0.367 (0.393); LSTM sequence prediction 0.410 / 0.230 / 0.260 (Adam 0.655 / 0.398 / 0.510) for the baseline, small-noise and 2-layer rows of Table 2",
            "ReLU MLP 0.303 (Adam 0.270); tanh level (0.294 vs 0.290); 3-8 hidden layers behind Adam (5 layers 2.006 vs 1.756); CNN-1 1.357 (Adam 0.174) and CNN-2 with 53 of 100 runs diverged at 100 steps; the 9-hidden-layer MLP over 10 000 steps 2.302, no progress (Adam 1.733; docs/reproduce.md)"),
        new("hyperadam", MixTask,
            "2 350 meta-iterations (best validation of a 3 000-iteration run, 0.5685 on the base MLP), input-norm=rms, coupled=true, lr 0.001, meta-gradient clipped at 1, meta-rate 1e-4 to 1e-5, on one core of a 2-core CPU (5 s/iteration); field-clip=10 (m̂ clamped to [-10, 10]) set after training, not meta-trained with it: it changes no 100-step row by a standard error and removes the long-horizon divergences",
            "Table 1 (100 runs, standard errors, Adam tuned per row): sigmoid 0.270 ± 0.007 (Adam 0.283), ReLU 0.238 (0.270), ELU 0.224 (0.248), tanh 0.264 (0.290); Table 2 LSTM rows 0.442 / 0.269 / 0.200 (Adam 0.655 / 0.398 / 0.510); MLPs with 2-10 hidden layers at or below Adam (9 layers 2.011 vs 2.305); CNN-1, never seen, 0.109 ± 0.006 (Adam 0.174, 100 runs); the 9-hidden-layer MLP over 10 000 steps 0.289 ± 0.049 (Adam 1.733, RMSProp 0.257, 10 runs); unseen tasks, 10 runs, Adam tuned: Fashion-MNIST MLP 0.540 (0.635), Fashion-MNIST CNN-1 0.381 (0.439), 2-layer ReLU MLP 0.179 (0.235), LSTM-40 0.204 (0.208)",
            "horizons beyond its training (100-200 steps): base MLP at 500 steps 0.176 against Adam's 0.094; CNN-2 only level with Adam, 0.137 ± 0.023 against 0.139 over 100 runs, because one run stalls at 2.30 (seen without the bound, whose spread on these seeds is the same; none diverged, median 0.101; its step schedule is the same on every network, docs/methods/hyperadam.md); CNN-1 over 10 000 steps: none of 10 runs diverges with the bound (4 of 10 did without it), the training loss reaches about 0 (Adam 3.7e-7) but the rule keeps stepping and overfits, test loss 2.1 against Adam's 0.320; CNN-2 over 2 000 steps: none of 10 diverges (3 without the bound), median loss 0.0029 against Adam's 2e-5, one run stalled at chance; CNN-2 over 10 000 steps (10 runs): none diverges, one stalls at chance, the others reach a training loss of about 0 but overfit, test loss 2.05 against Adam's 0.220 (top-1 87.4 % against 97.8 %); the 2-layer LSTM over 10 000 steps 0.0234, behind AdaGrad 0.0179 and Momentum 0.0215 (docs/reproduce.md)",
            "pretrained-mix"),
        new("rnnprop", BaseTask,
            "14 800 meta-iterations, the best 10-run validation (0.2512) of a 15 000-iteration paper-protocol run; re-ranked on 100 validation runs (seeds disjoint from every table's) against the run's earlier bests: 14 800 0.2709, 14 600 0.2712, 9 850 0.2767, 11 300 0.2810, the 4 850 checkpoint shipped before 0.2921; about 3.7 h on one core of a 2-core CPU (0.75-2.5 s/iteration); the paper's Table 4: 5 000-15 000",
            "RNNprop paper's Table 2 (100 runs, standard errors, Adam tuned per row), every row reproduced: sigmoid 0.264 ± 0.007 (Adam 0.283), ReLU 0.267 (0.270), ELU 0.234 (0.248), tanh 0.259 (0.290); MLPs with 2-5 hidden layers ahead of Adam (5 layers 1.473 vs 1.756); Table 3 LSTM, 2 layers 0.378, the best (AdaGrad 0.385, Adam 0.510); unseen tasks, 10 runs: Fashion-MNIST MLP 0.526 (Adam 0.636), Fashion-MNIST CNN-1 0.416 (0.438), 2-layer ReLU MLP 0.206 (0.235), MLP with batch 32 0.431 (0.461); CNN-1 0.141 at 100 steps (tuned Adam 0.176, 20 runs); the base MLP over 2 000 steps 0.0047 (Adam 0.0183, 10 runs)",
            "the LSTM rows got worse with training beyond 9 850: default 0.640 (Adam 0.655, AdaGrad 0.391) and small noise 0.476 (Adam 0.398, AdaGrad 0.324), a 40-unit LSTM 0.300 (Adam 0.210); the base MLP at 500 steps 0.100 against Adam's 0.090 (10 runs); CNN-2 at 100 steps 0.170 ± 0.173 against Adam's 0.150 (20 runs; one stalls at 0.87, median 0.133; docs/reproduce.md)"),
        new("dmoptimizer", BaseTask,
            "2 050 meta-iterations (best validation of 2 086), about 17 min on one H100 (0.49 s/iteration)",
            "its training task: base MLP 0.2353 ± 0.0787, the best of all (Adam 0.2857 ± 0.0612, 100 runs)",
            "other activations: ReLU 1.5461 ± 0.8556, ELU 3.3686 ± 1.5908, tanh 0.5113 (Adam 0.27, 0.25, 0.33); 5-layer MLP 2.3012 (no progress)"),
    ];

    /// <summary>The card of <paramref name="method"/>'s shipped checkpoint <paramref name="keyword"/>, or null.</summary>
    public static ModelCard? For(string method, string keyword = Pretrained.Keyword) =>
        All.FirstOrDefault(c => c.Method == method && c.Keyword == keyword);

    /// <summary>
    /// Floats of optimizer state per optimized parameter, measured: the state after one step for two
    /// coordinates minus that for one (HyperAdam: 6J, i.e. 120 for J = 20; Adam: 2; SGD: 0).
    /// </summary>
    public static long StateFloatsPerParameter(IUpdateRule rule)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        long Floats(int p)
        {
            var w = zeros(p);
            var state = rule.Step(ones(p), w, rule.Init(w)).State;
            return state.Tensors.Sum(t => t.numel());
        }
        return Floats(2) - Floats(1);
    }
}
