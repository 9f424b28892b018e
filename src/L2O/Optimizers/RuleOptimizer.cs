using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using RuleState = L2O.Optimizers.OptimizerState;
using TorchState = TorchSharp.Modules.OptimizerState;
using L2O.Runtime;

namespace L2O.Optimizers;

/// <summary>
/// A TorchSharp optimizer (<c>torch.optim.Optimizer</c>, via <see cref="OptimizerHelper"/>) driven by
/// any <see cref="IUpdateRule"/>, hand-designed or learned: <c>step()</c>, <c>zero_grad()</c>,
/// parameter groups, every <c>torch.optim.lr_scheduler</c>, <c>state_dict</c> /
/// <c>load_state_dict</c>, <c>save_state_dict</c> and <c>step(closure)</c> work as for
/// <c>torch.optim.Adam</c>. Build one with the factories of <see cref="L2O.Optim"/>.
/// </summary>
/// <remarks>
/// <para>Each step concatenates all parameters of all groups (in order) and their gradients into one flat
/// vector, runs the rule once and adds the update back in place: rules with global statistics
/// (HyperAdam normalises the gradient over all coordinates) see the whole model, as in meta-training.
/// A parameter group therefore only scales its slice of the update:
/// <c>w_g ← w_g + (ℓ_g / ℓ_ref) Δ_g</c>, where ℓ_g is the group's learning rate (what schedulers change)
/// and ℓ_ref the rule's own. For a hand-designed rule ℓ_ref is its <c>lr</c>, so <c>lr</c> means what it
/// means in torch.optim (every rule here is linear in its learning rate); for a learned rule ℓ_ref = 1,
/// so <c>lr</c> is a multiplier on the learned step (1 = as meta-trained).</para>
/// <para>A parameter that does not require a gradient, or has none, is left unchanged, as torch does; its
/// coordinates are fed a zero gradient so the rule's state keeps its shape. The parameter list is read
/// again at every step, so a module moved with <c>model.to(...)</c> after the optimizer was created is
/// followed (TorchSharp replaces the parameter objects; <c>model.parameters()</c> yields the new ones).
/// Groups can be added until the first step.</para>
/// <para>The rule's state covers all parameters at once; TorchSharp keeps state per parameter, so the
/// first parameter's entry carries the whole state and every entry its parameter's size (checked on load).</para>
/// </remarks>
public sealed class RuleOptimizer : OptimizerHelper
{
    private readonly Func<BuildContext, (IUpdateRule Rule, IDisposable? Owner)> _build;
    private (IUpdateRule Rule, IDisposable? Owner)? _built;
    private BuildContext? _context;
    private RuleState? _ruleState;
    private long[]? _sizes;

    /// <summary>An optimizer for <paramref name="parameters"/> running <paramref name="rule"/>; <paramref name="lr"/> scales its update.</summary>
    public RuleOptimizer(IEnumerable<Parameter> parameters, IUpdateRule rule, double lr = 1.0)
        : this(parameters, _ => (rule, null), lr, referenceLearningRate: 1.0)
    {
    }

    /// <summary>
    /// An optimizer whose rule is built by <paramref name="build"/> for the parameters' device and dtype
    /// (again if they change); the owner it returns (a learned optimizer's meta-parameters) is disposed with it.
    /// </summary>
    internal RuleOptimizer(IEnumerable<Parameter> parameters, Func<BuildContext, (IUpdateRule Rule, IDisposable? Owner)> build,
        double lr, double referenceLearningRate)
    {
        if (!(lr > 0) || double.IsInfinity(lr)) throw new L2OException($"lr must be positive and finite, got {lr}");
        _build = build;
        ReferenceLearningRate = referenceLearningRate;
        _defaults = new OptimizerOptions { LearningRate = lr, InitialLearningRate = lr };
        _parameter_groups = [];
        add_param_group(new ParamGroup { Parameters = parameters, Options = new OptimizerOptions() });
        Built();   // a bad checkpoint or option fails here, not at the first step
    }

    /// <summary>ℓ_ref: the group learning rate at which the rule's update is applied unscaled.</summary>
    public double ReferenceLearningRate { get; }

    /// <summary>The update rule (built for the parameters' current device and dtype).</summary>
    public IUpdateRule Rule => Built().Rule;

    /// <summary>Steps taken (steps where no parameter had a gradient do not count).</summary>
    public long Steps { get; private set; }

    /// <summary>Adds a group (before the first step: the rule's state covers a fixed set of coordinates).</summary>
    public override void add_param_group(ParamGroup param_group)
    {
        if (_ruleState is not null)
            throw new L2OException("add parameter groups before the first step: a flat rule's state covers a fixed set of coordinates");
        param_group.Options ??= new OptimizerOptions();
        param_group.Options.LearningRate ??= _defaults.LearningRate;
        param_group.Options.InitialLearningRate = param_group.Options.LearningRate!.Value;
        var previous = _parameter_groups.SelectMany(g => g.Parameters).ToList();
        var added = param_group.Parameters.ToList();
        if (added.Count == 0) throw new L2OException("a parameter group has no parameters");
        CheckDistinct(previous.Concat(added).ToList());
        _parameter_groups.Add(param_group);
        _sizes = null;
        SyncEntries(All());
    }

    /// <summary>Performs one step; <paramref name="closure"/>, if given, is evaluated first (with gradients on) and its loss returned.</summary>
    public override Tensor step(Func<Tensor>? closure = null)
    {
        Tensor? loss = null;
        if (closure is not null)
            using (enable_grad()) loss = closure();

        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var all = All();
        var active = all.Select(p => p.requires_grad && p.grad is not null).ToArray();
        if (!active.Contains(true)) return loss!;

        Follow(all);
        var rule = Built().Rule;
        var w = ParameterVector.Values(all);
        var g = cat(all.Select(p => (p.requires_grad ? p.grad : null) is { } grad ? grad.flatten() : zeros(p.numel(), p.dtype, p.device)).ToList(), 0);
        if (_ruleState is null)
        {
            _ruleState = rule.Init(w);
            _ruleState.DetachFromDisposeScope();
        }
        var result = rule.Step(g, w, _ruleState);

        long offset = 0;
        int k = 0;
        foreach (var group in _parameter_groups)
        {
            double scale = group.LearningRate / ReferenceLearningRate;
            foreach (var p in group.Parameters)
            {
                if (active[k++])
                {
                    var slice = result.Update.narrow(0, offset, p.numel()).view(p.shape);
                    // A scale of exactly 1 leaves the rule's update untouched (bitwise as meta-trained).
                    p.PlusInPlace(scale == 1.0 ? slice : slice.Times(scale));
                }
                offset += p.numel();
            }
        }
        result.State.DetachFromDisposeScope();
        _ruleState.DisposeReplaced(result.State);
        _ruleState = result.State;
        Runtime.NativeGarbage.AfterStep(Steps);   // Scalars of the step are freed only by finalizers (docs/reliability.md)
        Steps++;
        return loss!;
    }

    /// <summary>Forgets the rule's state (moments, recurrent state): the next step starts afresh.</summary>
    public void Reset()
    {
        _ruleState?.DisposeReplaced(null);
        _ruleState = null;
        Steps = 0;
    }

    /// <inheritdoc/>
    public override StateDictionary state_dict()
    {
        SyncEntries(All());
        return base.state_dict();
    }

    /// <summary>Moves the optimizer's state to <paramref name="device"/> (the next step also follows the parameters by itself).</summary>
    public new void to(Device device)
    {
        SyncEntries(All());
        base.to(device);
    }

    /// <inheritdoc/>
    public override void load_state_dict(StateDictionary state_dict)
    {
        SyncEntries(All());
        base.load_state_dict(state_dict);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Reset();
            _built?.Owner?.Dispose();
            _built = null;
        }
        base.Dispose(disposing);
    }

    private List<Parameter> All()
    {
        var all = _parameter_groups.SelectMany(g => g.Parameters).ToList();
        for (int i = 0; i < all.Count; i++)
        {
            if (all[i].IsInvalid)
                throw new L2OException($"parameter {i} of the optimizer has been disposed: TorchSharp's model.to(device or dtype) replaces a module's parameters. " +
                                       "Pass model.parameters() itself (it yields the current ones) or move the model before creating the optimizer");
        }
        if (_sizes is not null && !all.Select(p => p.numel()).SequenceEqual(_sizes))
            throw new L2OException($"the optimizer's parameters changed: {_sizes.Length} parameters with {_sizes.Sum()} elements when it started, now {all.Count} with {all.Sum(p => p.numel())}");
        _sizes ??= all.Select(p => p.numel()).ToArray();
        return all;
    }

    private static void CheckDistinct(IReadOnlyList<Parameter> all)
    {
        var seen = new Dictionary<IntPtr, int>();
        for (int i = 0; i < all.Count; i++)
        {
            if (!seen.TryAdd(all[i].Handle, i))
                throw new L2OException($"parameter {i} (shape [{string.Join(", ", all[i].shape)}]) is the same tensor as parameter {seen[all[i].Handle]}: an optimizer takes each parameter once");
        }
    }

    /// <summary>The rule for the current context, built on first use.</summary>
    private (IUpdateRule Rule, IDisposable? Owner) Built()
    {
        if (_built is null)
        {
            var first = All()[0];
            _context = new BuildContext(first.device, first.dtype);
            _built = _build(_context);
        }
        return _built.Value;
    }

    /// <summary>Rebuilds the rule, and moves the state, when the parameters moved to another device or dtype.</summary>
    private void Follow(IReadOnlyList<Parameter> all)
    {
        var first = all[0];
        if (all.Any(p => !SameDevice(p.device, first.device) || p.dtype != first.dtype))
            throw new L2OException("all parameters of the optimizer must share one device and dtype (the rule runs on one flat vector)");
        if (_context is not null && SameDevice(_context.Device, first.device) && _context.DType == first.dtype) return;
        var previous = _built;
        _built = null;
        _context = null;
        var next = Built();
        if (_ruleState is not null)
        {
            using var probe = zeros(1, first.dtype, first.device);
            var template = next.Rule.Init(probe);
            bool sameKind = template.GetType() == _ruleState.GetType();
            template.DisposeReplaced(null);
            if (!sameKind)
            {
                next.Owner?.Dispose();
                _built = previous;
                throw new L2OException($"the parameters moved to {first.device}/{first.dtype} after the first step, and this rule's state ({_ruleState.GetType().Name}) cannot follow them: move the model before the first step");
            }
            MoveState(first.device, first.dtype);
        }
        previous?.Owner?.Dispose();
    }

    private static bool SameDevice(Device a, Device b) => a.type == b.type && a.index == b.index;

    private void MoveState(Device device, ScalarType? dtype)
    {
        if (_ruleState is null) return;
        var moved = _ruleState.Map(t => (dtype is { } d && t.is_floating_point() ? t.to(d, device) : t.to(device)).DetachFromDisposeScope());
        _ruleState.DisposeReplaced(moved);
        _ruleState = moved;
    }

    /// <summary>TorchSharp keys per-parameter state by tensor handle; after <c>model.to(...)</c> the handles are new.</summary>
    private void SyncEntries(IReadOnlyList<Parameter> all)
    {
        _state.Clear();
        for (int i = 0; i < all.Count; i++) _state[all[i].Handle] = new Entry(this, i, all[i]);
    }

    private void WriteState(BinaryWriter writer)
    {
        writer.Write(Steps);
        writer.Write(_ruleState is not null);
        if (_ruleState is not null) StateCodec.Write(writer, _ruleState);
    }

    private void ReadState(BinaryReader reader)
    {
        long steps = reader.ReadInt64();
        RuleState? state = null;
        if (reader.ReadBoolean())
        {
            var all = All();
            Follow(all);
            using var probe = zeros(1, all[0].dtype, all[0].device);
            var template = Built().Rule.Init(probe);
            var type = template.GetType();
            template.DisposeReplaced(null);
            state = StateCodec.Read(reader, type, all[0].device);
        }
        Reset();
        _ruleState = state;
        Steps = steps;
    }

    private void CopyState(RuleOptimizer source)
    {
        if (ReferenceEquals(source, this)) return;
        var clone = source._ruleState?.Map(t => t.detach().clone().DetachFromDisposeScope());
        Reset();
        _ruleState = clone;
        Steps = source.Steps;
    }

    /// <summary>TorchSharp's per-parameter state entry: the first carries the rule's whole state.</summary>
    private sealed class Entry(RuleOptimizer owner, int index, Parameter parameter) : TorchState(parameter)
    {
        private readonly long size = parameter.numel();

        public override void SaveStateDict(BinaryWriter writer)
        {
            writer.Write(index);
            writer.Write(size);
            if (index == 0) owner.WriteState(writer);
        }

        public override void LoadStateDict(BinaryReader reader)
        {
            int savedIndex = reader.ReadInt32();
            long savedSize = reader.ReadInt64();
            if (savedIndex != index || savedSize != size)
                throw new L2OException($"optimizer state mismatch: parameter {index} has {size} elements, the saved state's parameter {savedIndex} had {savedSize}");
            if (index == 0) owner.ReadState(reader);
        }

        public override void LoadStateDict(TorchState source)
        {
            if (source is not Entry other || other.Size != size)
                throw new L2OException($"optimizer state mismatch at parameter {index}: the source is not a RuleOptimizer entry of the same size");
            if (index == 0) owner.CopyState(other.Owner);
        }

        // The rule's state is created at the first step, from the parameters' values.
        public override void Initialize(OptimizerOptions options) { }

        public override void to(Device device)
        {
            if (index == 0) owner.MoveState(device, null);
        }

        public RuleOptimizer Owner => owner;
        public long Size => size;
    }
}
