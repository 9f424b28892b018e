namespace L2O.Reproduction;

/// <summary>What a row of an experiment measures.</summary>
public enum Metric
{
    /// <summary>Mean over runs of the minibatch loss at w_T (HyperAdam Tables 1–2: "average final loss").</summary>
    FinalLoss,
    /// <summary>Mean test-set loss at w_T (Table 3 "loss").</summary>
    TestLoss,
    /// <summary>Mean test-set top-1 accuracy at w_T, in % (Table 3 prints accuracies).</summary>
    Top1,
    /// <summary>Mean test-set top-2 accuracy at w_T, in %.</summary>
    Top2,
    /// <summary>Milliseconds per update of the optimizer (§5.5).</summary>
    MsPerUpdate,
}

/// <summary>
/// One row of a paper's table or one point of a figure: a task, a horizon, and what the paper
/// reports for each optimizer (null: the paper shows it only as a curve, or not at all).
/// </summary>
/// <param name="Label">Row label as the paper prints it.</param>
/// <param name="Task">Task specification (<c>l2o list tasks</c>).</param>
/// <param name="Steps">Optimization steps of the paper's protocol.</param>
/// <param name="Paper">The paper's value per optimizer key (<see cref="Experiment.Optimizers"/>).</param>
/// <param name="Claim">The paper's claim for rows without numbers, e.g. "hyperadam &lt; adam" (lower is better unless the metric is an accuracy).</param>
public sealed record PaperRow(string Label, string Task, int Steps, IReadOnlyDictionary<string, double> Paper, Metric Metric = Metric.FinalLoss,
    string? Claim = null, bool NeedsCifar = false);

/// <summary>
/// One experiment of a paper: its rows and the optimizers compared. Optimizer keys are registry
/// names; hand-designed ones are tuned per row by a learning-rate sweep on seeds disjoint from the
/// evaluation seeds, learned ones use their checkpoint (the shipped one unless overridden).
/// </summary>
public sealed record Experiment(string Name, string Title, string Source, IReadOnlyList<string> Optimizers, IReadOnlyList<PaperRow> Rows, string? Note = null)
{
    /// <summary>Learned-optimizer variants evaluated under their own key: key → specification (e.g. ablation checkpoints).</summary>
    public IReadOnlyDictionary<string, string> Variants { get; init; } = new Dictionary<string, string>();
}

/// <summary>The experiments of the HyperAdam paper (Wang, Sun and Xu, AAAI 2019, §5), with its numbers.</summary>
public static class HyperAdamPaper
{
    private static Dictionary<string, double> P(double adam, double dm, double rnnprop, double hyperadam) =>
        new() { ["adam"] = adam, ["dmoptimizer"] = dm, ["rnnprop"] = rnnprop, ["hyperadam"] = hyperadam };

    private static readonly Dictionary<string, double> None = [];
    private static readonly string[] Learned = ["adam", "dmoptimizer", "rnnprop", "hyperadam"];
    private static readonly string[] All = ["sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam", "dmoptimizer", "rnnprop", "hyperadam"];

    public static IReadOnlyList<Experiment> Experiments { get; } =
    [
        new("table1", "Table 1: base MLP with different activations, 100 steps", "HyperAdam §5.1, Table 1", Learned,
        [
            new("sigmoid", "mlp", 100, P(0.35, 0.38, 0.34, 0.33)),
            new("ReLU", "mlp:activation=relu", 100, P(0.32, 1.42, 0.31, 0.29)),
            new("ELU", "mlp:activation=elu", 100, P(0.31, 2.02, 0.31, 0.28)),
            new("tanh", "mlp:activation=tanh", 100, P(0.34, 0.83, 0.33, 0.36)),
        ]),
        new("fig5d", "Fig. 5(d): MLP with 1–10 hidden layers, 100 steps", "HyperAdam §5.1, Fig. 5(d)", Learned,
            Enumerable.Range(1, 10).Select(d => new PaperRow($"{d} hidden layers", d == 1 ? "mlp" : $"mlp:layers={d}", 100, None,
                Claim: "hyperadam < adam; hyperadam < dmoptimizer")).ToList(),
            "The paper gives this as a curve of final loss against depth; its claim is that HyperAdam is below Adam and DMoptimizer at every depth."),
        new("table2", "Table 2: sequence prediction with an LSTM, 100 steps", "HyperAdam §5.1, Table 2", Learned,
        [
            new("Baseline", "lstm", 100, P(0.65, 3.10, 0.49, 0.42)),
            new("Small noise", "lstm:noise=0.01", 100, P(0.39, 3.06, 0.32, 0.19)),
            new("2-layer", "lstm:layers=2", 100, P(0.51, 2.05, 0.27, 0.26)),
        ]),
        new("fig6", "Fig. 6: CNNs on MNIST and CIFAR-10", "HyperAdam §5.1–5.2, Fig. 6", All,
        [
            new("CNN-1, MNIST, 100 steps", "cnn1", 100, None, Claim: "hyperadam < dmoptimizer; hyperadam < rnnprop"),
            new("CNN-2, MNIST, 100 steps", "cnn2", 100, None, Claim: "hyperadam < dmoptimizer; hyperadam < rnnprop"),
            new("CNN-2, MNIST, 2000 steps", "cnn2", 2000, None, Claim: "hyperadam < adam; hyperadam < rnnprop; hyperadam < dmoptimizer"),
            new("CNN-2, MNIST, 10000 steps", "cnn2", 10000, None, Claim: "hyperadam < adam; hyperadam < rnnprop; hyperadam < dmoptimizer"),
            new("CNN-1 + batch norm, CIFAR-10", "cnn1:dataset=cifar10,batch-norm=true", 100, None, Claim: "hyperadam < dmoptimizer; hyperadam < rnnprop", NeedsCifar: true),
            new("CNN-2 + dropout, CIFAR-10", "cnn2:dataset=cifar10,dropout=0.5", 100, None, Claim: "hyperadam < dmoptimizer; hyperadam < rnnprop", NeedsCifar: true),
            new("CNN-2, CIFAR-10, 10000 steps", "cnn2:dataset=cifar10", 10000, None, Claim: "hyperadam < adam; hyperadam < rmsprop", NeedsCifar: true),
        ]),
        new("fig7", "Fig. 7: longer horizons, 10 000 steps", "HyperAdam §5.2, Fig. 7", All,
        [
            new("MLP, 9 hidden layers", "mlp:layers=9", 10000, None, Claim: "hyperadam < adam; hyperadam < sgd; hyperadam < rmsprop; hyperadam < dmoptimizer"),
            new("LSTM, 2 layers", "lstm:layers=2", 10000, None, Claim: "hyperadam < rmsprop; hyperadam < sgd; hyperadam < dmoptimizer"),
        ]),
        new("table3", "Table 3: test metrics of CNNs trained for 10 000 steps", "HyperAdam §5.3, Table 3", Learned,
        [
            new("CNN-1 loss", "cnn1", 10000, P(0.10, 2.30, 0.36, 0.05), Metric.TestLoss),
            new("CNN-1 top-1", "cnn1", 10000, P(98.50, 10.10, 96.46, 98.48), Metric.Top1),
            new("CNN-1 top-2", "cnn1", 10000, P(99.59, 20.38, 99.03, 99.63), Metric.Top2),
            new("CNN-2 loss", "cnn2", 10000, P(0.09, 2.30, 2.30, 0.07), Metric.TestLoss),
            new("CNN-2 top-1", "cnn2", 10000, P(98.98, 11.35, 11.37, 99.02), Metric.Top1),
            new("CNN-2 top-2", "cnn2", 10000, P(99.80, 21.45, 21.69, 99.78), Metric.Top2),
        ], "The paper labels the accuracy rows 'error' but prints accuracies; both sides here are accuracies in %."),
        new("fig8", "Fig. 8: ablations (structure, training tricks, J)", "HyperAdam §5.4, Fig. 8", ["hyperadam"],
        [
            new("(a) structure, 3-layer MLP", "mlp:layers=3", 100, None, Claim: "hyperadam < no-lstm; hyperadam < no-preprocess; hyperadam < neither"),
            new("(b) tricks, 3-layer MLP", "mlp:layers=3", 100, None, Claim: "hyperadam < no-rs; hyperadam < no-cc; hyperadam < no-tricks"),
            new("(c) candidates J, 4-layer MLP", "mlp:layers=4", 100, None, // §5.4: J = 20 best ("improved first ... until 20 ... then saturated and decreased"), every J ≥ 5 better than J = 1.
                Claim: "hyperadam < j1; hyperadam < j5; hyperadam < j10; hyperadam < j15; hyperadam < j25; hyperadam < j35; j5 < j1; j10 < j1; j15 < j1; j25 < j1; j35 < j1"),
        ], "Each variant is a checkpoint under pretrained/ablations/, meta-trained as long as the shipped HyperAdam (3 150 iterations on the "
          + "base MLP, the paper's protocol and seed, best validation kept; pretrained/ablations/README.md); 'hyperadam' is the shipped, unablated "
          + "rule (J = 20), so the claims compare like with like. A row whose checkpoints are missing says so.")
        {
            Variants = new Dictionary<string, string>
            {
                ["no-lstm"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-no-lstm.safetensors",
                ["no-preprocess"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-no-preprocess.safetensors",
                ["neither"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-neither.safetensors",
                ["no-rs"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-no-rs.safetensors",
                ["no-cc"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-no-cc.safetensors",
                ["no-tricks"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-no-tricks.safetensors",
                ["j1"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j1.safetensors",
                ["j5"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j5.safetensors",
                ["j10"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j10.safetensors",
                ["j15"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j15.safetensors",
                ["j25"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j25.safetensors",
                ["j35"] = "hyperadam:checkpoint=pretrained/ablations/hyperadam-j35.safetensors",
            },
        },
        new("time", "§5.5: time per update, 9-hidden-layer MLP", "HyperAdam §5.5", ["adam", "dmoptimizer", "rnnprop", "hyperadam"],
        [
            new("ms per update", "mlp:layers=9", 100, new Dictionary<string, double> { ["dmoptimizer"] = 2.3, ["hyperadam"] = 3.3, ["rnnprop"] = 3.9 }, Metric.MsPerUpdate),
        ], "The paper's times are from its own (unstated) hardware; only the ordering is compared."),
    ];

    public static Experiment Find(string name) =>
        Specs.NameLookup.Find(Experiments, name, e => e.Name, _ => [], "experiment");
}

/// <summary>
/// The experiments of the RNNprop paper (Lv, Jiang and Li, ICML 2017, §5), with its numbers. Its optimizers were
/// meta-trained on the base MLP only, as the shipped <c>rnnprop</c> and <c>dmoptimizer</c> checkpoints were.
/// </summary>
/// <remarks>
/// The paper's "final loss" is the loss of the last parameters on all the minibatches the run saw (the authors'
/// code); the rows here read <see cref="Metric.FinalLoss"/>, the minibatch loss at w_T averaged over runs, which
/// estimates the same training-distribution loss without replaying the run's data (docs/reproduce.md).
/// Not in the registry: Table 4 and Fig. 9 compare RNNprop checkpoints meta-trained 5 000–15 000 iterations with and
/// without each trick, which do not ship.
/// </remarks>
public static class RnnPropPaper
{
    private static readonly Dictionary<string, double> None = [];
    private static readonly string[] Traditional = ["sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam"];
    private static readonly string[] All = [.. Traditional, "dmoptimizer", "rnnprop"];
    private static readonly string[] Learned = ["adam", "dmoptimizer", "rnnprop"];

    /// <summary>"KEY &lt; sgd; KEY &lt; momentum; …": better than every hand-designed rule.</summary>
    private static string BeatsTraditional(string key) => string.Join("; ", Traditional.Select(t => $"{key} < {t}"));

    private static Dictionary<string, double> P(double adam, double dm, double rnnprop) =>
        new() { ["adam"] = adam, ["dmoptimizer"] = dm, ["rnnprop"] = rnnprop };

    private static Dictionary<string, double> Lstm(double adam, double adagrad, double dm, double rnnprop) =>
        new() { ["adam"] = adam, ["adagrad"] = adagrad, ["dmoptimizer"] = dm, ["rnnprop"] = rnnprop };

    public static IReadOnlyList<Experiment> Experiments { get; } =
    [
        new("rnnprop-fig2", "Fig. 2: the base MLP over 100, 2 000 and 10 000 steps", "RNNprop §5.1, Fig. 2 and 3", All,
        [
            new("100 steps", "mlp", 100, None, Claim: BeatsTraditional("rnnprop") + "; " + BeatsTraditional("dmoptimizer")),
            new("2000 steps", "mlp", 2000, None, Claim: "rnnprop < dmoptimizer"),
            new("10000 steps", "mlp", 10000, None, Claim: "rnnprop < dmoptimizer; adam < rnnprop"),
        ], "The paper shows curves. Its claims: on the training task (100 steps) both learned rules beat every hand-designed one; "
          + "over 2 000 steps RNNprop is comparable with them and DMoptimizer fails; over 10 000 steps RNNprop keeps lowering the loss, "
          + "DMoptimizer's loss grows, and tuned hand-designed rules overtake RNNprop (Fig. 3: Adam only within a narrow band of rates)."),
        new("rnnprop-table2", "Table 2: base MLP with different activations, 100 steps", "RNNprop §5.2, Table 2", Learned,
        [
            new("sigmoid", "mlp", 100, P(0.31, 0.24, 0.29)),
            new("ReLU", "mlp:activation=relu", 100, P(0.28, 1.05, 0.27)),
            new("ELU", "mlp:activation=elu", 100, P(0.26, 13.51, 0.24)),
            new("tanh", "mlp:activation=tanh", 100, P(0.31, 0.50, 0.28)),
        ]),
        new("rnnprop-fig6", "Fig. 6: deeper MLPs, 100 steps", "RNNprop §5.3, Fig. 5 and 6", Learned,
            Enumerable.Range(2, 4).Select(d => new PaperRow($"{d} hidden layers", $"mlp:layers={d}", 100, None, Claim: "rnnprop < adam")).ToList(),
            "The paper gives a curve of final loss against depth: RNNprop below Adam (the best hand-designed rule there) until the MLP is "
            + "too deep for any optimizer to lower its loss in 100 steps; Fig. 5 shows 5 hidden layers. Rows 2–5 are the depths it shows trained."),
        new("rnnprop-fig7", "Fig. 7: CNNs on MNIST and CIFAR-10, 100 steps", "RNNprop §5.4.1, Fig. 7", All,
        [
            new("c-c-p-f, MNIST", "cnn1", 100, None, Claim: BeatsTraditional("rnnprop") + "; rnnprop < dmoptimizer"),
            new("c-c-p-c-c-p-f-f, MNIST", "cnn2", 100, None, Claim: "rnnprop < dmoptimizer"),
            new("c-c-p-f, CIFAR-10", "cnn1:dataset=cifar10", 100, None, Claim: "rnnprop < dmoptimizer", NeedsCifar: true),
        ], "The paper shows curves: RNNprop beats every hand-designed rule on the first CNN; on the other two only the best hand-designed "
          + "rule beats it; DMoptimizer trains none of them. The horizon is not stated; 100 steps, the training horizon, as in HyperAdam's Fig. 6."),
        new("rnnprop-table3", "Table 3: sequence prediction with an LSTM, 100 steps", "RNNprop §5.4.2, Table 3", ["adam", "adagrad", "dmoptimizer", "rnnprop"],
        [
            new("Default", "lstm", 100, Lstm(0.62, 0.54, 26.43, 0.55)),
            new("2 Layers", "lstm:layers=2", 100, Lstm(0.44, 0.65, 5.06, 0.28)),
            new("Small Noise", "lstm:noise=0.01", 100, Lstm(0.39, 0.50, 22.04, 0.36)),
        ]),
    ];
}

/// <summary>A paper whose experiments <c>l2o reproduce</c> runs: its name runs them all.</summary>
public sealed record Paper(string Name, string Title, IReadOnlyList<Experiment> Experiments);

/// <summary>Every paper in the registry, and lookup of a paper or one experiment by name.</summary>
public static class Papers
{
    public static IReadOnlyList<Paper> All { get; } =
    [
        new("hyperadam", "HyperAdam (Wang, Sun and Xu, AAAI 2019)", HyperAdamPaper.Experiments),
        new("rnnprop", "RNNprop (Lv, Jiang and Li, ICML 2017)", RnnPropPaper.Experiments),
    ];

    /// <summary>Every experiment of every paper.</summary>
    public static IEnumerable<Experiment> Experiments => All.SelectMany(p => p.Experiments);

    /// <summary>The paper an experiment belongs to.</summary>
    public static Paper Of(Experiment experiment) => All.First(p => p.Experiments.Contains(experiment));

    /// <summary>A paper's name gives all its experiments; an experiment's name, that one.</summary>
    public static IReadOnlyList<Experiment> Find(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (All.FirstOrDefault(p => p.Name == key) is { } paper) return paper.Experiments;
        return [Experiments.FirstOrDefault(e => e.Name == key) ?? throw new L2OException(
            $"unknown experiment '{name}'; valid: {string.Join(", ", All.Select(p => p.Name))} (a whole paper) or {string.Join(", ", Experiments.Select(e => e.Name))}")];
    }
}
