using System.Globalization;
using System.Text.Json;
using L2O.Checkpoints;
using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace L2O.Learned;

/// <summary>What a learned optimizer recommends for its own meta-training (the settings of its paper).</summary>
/// <param name="MetaLoss">How an unroll's losses become the meta-loss.</param>
/// <param name="Unroll">Steps per truncated-BPTT unroll.</param>
/// <param name="MetaLearningRate">Rate of the Adam meta-optimizer.</param>
/// <param name="Tricks">Whether Random Scaling and Combination with Convex Functions are used by default.</param>
public sealed record TrainingDefaults(MetaLoss MetaLoss, int Unroll, double MetaLearningRate, bool Tricks);

/// <summary>Options every learned optimizer has besides its architecture.</summary>
public interface ILearnedOptions : IValidatable
{
    /// <summary>Safetensors file with trained meta-parameters (or <c>pretrained</c>); null = fresh initialisation.</summary>
    string? Checkpoint { get; }

    /// <summary>Seed of the meta-parameter initialisation when no checkpoint is given.</summary>
    long InitSeed { get; }
}

/// <summary>Base of the learned optimizers' option records: the checkpoint and the initialisation seed.</summary>
public abstract record LearnedOptions : ILearnedOptions
{
    [Option("checkpoint", "safetensors file with trained meta-parameters, 'pretrained' for the shipped one, or 'pretrained-NAME' for a shipped variant (l2o list METHOD names them)")] public string? Checkpoint { get; init; }
    [Option("init-seed", "seed of the meta-parameter initialisation when no checkpoint is given")] public long InitSeed { get; init; }

    public abstract void Validate();
}

/// <summary>How the losses of one unroll are turned into the meta-loss.</summary>
public enum MetaLoss
{
    /// <summary>(1/U) Σ_{s=1..U} f(w_s): mean over the losses after each update (HyperAdam eq. 8, DMoptimizer).</summary>
    Mean,
    /// <summary>f(w_U): the loss after the last update only (RNNprop §5).</summary>
    Last,
    /// <summary>(1/U) Σ log(f(w_s) + 1e-15): the smoothed loss of the thesis's Multiscale Adam "RNN" (eq. 4.1).</summary>
    MeanLog,
    /// <summary>
    /// (1/U) Σ_{s=0..U−1} f(w_s): mean over the losses before each update, as the HyperAdam authors'
    /// code computed it (a one-step shift of eq. 8): f(w_0) is a constant of the unroll and f(w_U)
    /// is not a term.
    /// </summary>
    MeanBefore,
}

/// <summary>
/// The single definition of each <see cref="MetaLoss"/>: its value from an unroll's losses and the
/// weight ∂meta-loss/∂f(w_s) of each loss, read by the reference unroll, the fused trajectory and
/// validation alike.
/// </summary>
public static class MetaLosses
{
    /// <summary>The shift δ in MeanLog's log(f + δ), which keeps a zero loss finite.</summary>
    public const double LogShift = 1e-15;

    /// <summary>The meta-loss of an unroll that started at loss <paramref name="before"/> = f(w_0) and produced <paramref name="after"/> = f(w_1) … f(w_U).</summary>
    public static double Value(MetaLoss kind, double before, IReadOnlyList<double> after) => kind switch
    {
        MetaLoss.Last => after[^1],
        MetaLoss.MeanLog => after.Average(l => Math.Log(l + LogShift)),
        MetaLoss.MeanBefore => (before + after.Take(after.Count - 1).Sum()) / after.Count,
        _ => after.Average(),
    };

    /// <summary>∂meta-loss/∂f(w_s) for s = 1 … U (<paramref name="s"/> is 1-based), given the loss <paramref name="loss"/> = f(w_s).</summary>
    public static double Weight(MetaLoss kind, int s, int steps, double loss) => kind switch
    {
        MetaLoss.Last => s == steps ? 1.0 : 0.0,
        MetaLoss.MeanLog => 1.0 / (steps * (loss + LogShift)),
        MetaLoss.MeanBefore => s < steps ? 1.0 / steps : 0.0,
        _ => 1.0 / steps,
    };

    /// <summary>
    /// The validation score of a run's mean loss curve <paramref name="curve"/> = f(w_0) … f(w_T), on the
    /// meta-loss's own terms: the final loss for <see cref="MetaLoss.Last"/>, the mean of f(w_0 … w_{T−1})
    /// for <see cref="MetaLoss.MeanBefore"/>, else the mean of f(w_1 … w_T). <see cref="MetaLoss.MeanLog"/> is scored
    /// by the plain mean too: its log only evens out the scale of the training gradient across steps, and a checkpoint
    /// is chosen by the losses it reaches (the same score as <see cref="MetaLoss.Mean"/>, so runs that differ only in
    /// that smoothing are compared on one scale).
    /// </summary>
    public static double Validation(MetaLoss kind, IReadOnlyList<double> curve, double finalLoss) => kind switch
    {
        MetaLoss.Last => finalLoss,
        MetaLoss.MeanBefore => curve.Take(curve.Count - 1).Average(),
        _ => curve.Skip(1).Average(),
    };
}

/// <summary>
/// A learned optimizer: named meta-parameters Θ and the pure update rule they define. The meta-trainer,
/// the harness and the drop-in optimizer only use <see cref="Parameters"/> and <see cref="Rule"/>,
/// never the concrete type. The rule reads the parameter tensors themselves, so it always sees the
/// current values, and autograd reaches Θ through every step it takes.
/// </summary>
public abstract class LearnedOptimizer : IDisposable
{
    private readonly List<(string Name, Parameter Parameter)> _parameters = [];

    protected LearnedOptimizer(BuildContext context)
    {
        Context = context;
    }

    /// <summary>The <c>format</c> metadata of every checkpoint <see cref="Save"/> writes; loading requires it.</summary>
    public const string CheckpointFormat = "l2o-learned-optimizer";

    /// <summary>Registry name of the method, e.g. <c>hyperadam</c>; stored in checkpoints.</summary>
    public abstract string Method { get; }

    /// <summary>The hyperparameter record (an options record with <see cref="OptionAttribute"/> properties).</summary>
    public abstract object Options { get; }

    /// <summary>The update rule defined by the current meta-parameters.</summary>
    public abstract IUpdateRule Rule { get; }

    /// <summary>Recommended meta-training settings (its paper's), from the method's definition.</summary>
    public TrainingDefaults TrainingDefaults => LearnedRegistry.Find(Method).Training(Options);

    /// <summary>The meta-parameters the method's definition declares for these options (names, shapes, initialisers).</summary>
    public IReadOnlyList<MetaParameter> Schema => LearnedRegistry.Find(Method).Schema(Options);

    public BuildContext Context { get; }

    /// <summary>
    /// Called by the reference <see cref="Rule"/> with named intermediates of each step (e.g. HyperAdam's
    /// <c>beta</c>, <c>rho</c>), for diagnostics (<c>l2o diagnose</c>). Null (the default) costs nothing.
    /// The tensors belong to the step's dispose scope: read them inside the callback. The fused engine
    /// does not report intermediates.
    /// </summary>
    public Action<string, Tensor>? Probe { get; set; }

    /// <summary>Meta-parameters in a fixed order, with the names used in checkpoints.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters => _parameters;

    public long ParameterCount => _parameters.Sum(p => p.Parameter.numel());

    /// <summary>
    /// Registers the meta-parameters of <paramref name="schema"/> in its order, each drawn in float64 on the
    /// CPU from one generator seeded with <paramref name="seed"/>, and returns them by name.
    /// </summary>
    protected IReadOnlyDictionary<string, Parameter> Register(IReadOnlyList<MetaParameter> schema, long seed)
    {
        if (_parameters.Count > 0) throw new InvalidOperationException("meta-parameters are registered once, from the method's schema");
        using var g = new Generator((ulong)seed);
        var byName = new Dictionary<string, Parameter>();
        foreach (var m in schema)
        {
            if (byName.ContainsKey(m.Name)) throw new InvalidOperationException($"duplicate meta-parameter '{m.Name}'");
            Parameter p;
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                var initial = m.Init.Draw(m.Shape, g);
                // The optimizer owns its parameters: they leave every dispose scope (Dispose releases them).
                p = new Parameter(initial.to(Context.DType).to(Context.Device).detach().clone().DetachFromDisposeScope(), requires_grad: true);
            }
            _parameters.Add((m.Name, p));
            byName[m.Name] = p;
        }
        return byName;
    }

    /// <summary>All meta-parameters flattened into one vector (a copy).</summary>
    public Tensor Flatten()
    {
        using var scope = NewDisposeScope();
        return ParameterVector.Values(_parameters.Select(p => p.Parameter).ToList()).MoveToOuterDisposeScope();
    }

    /// <summary>Writes the meta-parameters and their description to a safetensors file (atomically).</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null, IEnumerable<(string Name, Tensor Tensor)>? extraTensors = null)
    {
        var meta = new Dictionary<string, string>
        {
            ["format"] = CheckpointFormat,
            ["method"] = Method,
            ["options"] = JsonSerializer.Serialize(StoredOptions()),
            ["l2o_version"] = Runtime.L2ORuntime.Version,
            ["created_utc"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture),
        };
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        var tensors = _parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(extraTensors ?? []);
        SafeTensors.Save(path, tensors, meta);
    }

    /// <summary>Display name of the rule: <paramref name="untrained"/>, or method(checkpoint file) when loaded.</summary>
    protected internal string DisplayName(string untrained) =>
        ((ILearnedOptions)Options).Checkpoint is string c ? $"{Method}({Path.GetFileNameWithoutExtension(c)})" : untrained;

    /// <summary>Options that define the architecture (what a checkpoint needs to be rebuilt).</summary>
    internal Dictionary<string, string> StoredOptions() =>
        OptionsBinder.ToArguments(Options).Where(kv => kv.Key is not ("checkpoint" or "init-seed")).ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>Copies values from a checkpoint's tensors into the meta-parameters, checking names and shapes.</summary>
    public void LoadValues(SafeTensors.Contents contents, string fileName)
    {
        var names = contents.Tensors.Select(t => t.Name).Where(n => !n.StartsWith("trainer.", StringComparison.Ordinal)).ToHashSet();
        using var _ = no_grad();
        foreach (var (name, p) in _parameters)
        {
            if (!names.Remove(name)) throw new L2OException($"{fileName}: tensor '{name}' of {Method} is missing");
            var t = contents[name];
            if (!t.shape.SequenceEqual(p.shape))
                throw new L2OException($"{fileName}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", p.shape)}]");
            p.copy_(t.to(p.dtype).to(p.device));
        }
        if (names.Count > 0) throw new L2OException($"{fileName}: unexpected tensors for {Method}: {string.Join(", ", names)}");
    }

    /// <summary>Copies the meta-parameters of <paramref name="source"/>, an optimizer of the same method and architecture.</summary>
    internal void CopyValuesFrom(LearnedOptimizer source)
    {
        if (source.Method != Method || source._parameters.Count != _parameters.Count)
            throw new InvalidOperationException($"cannot copy {source.Method} meta-parameters into {Method}");
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Count; i++)
        {
            var (name, p) = _parameters[i];
            var (sourceName, q) = source._parameters[i];
            if (name != sourceName || !p.shape.SequenceEqual(q.shape)) throw new InvalidOperationException($"meta-parameter '{name}' does not match '{sourceName}'");
            p.copy_(q);
        }
    }

    public void Dispose()
    {
        foreach (var (_, p) in _parameters) p.Dispose();
        GC.SuppressFinalize(this);
    }
}
