using L2O.Optimizers;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using L2O.Runtime;

namespace L2O.Training;

/// <summary>
/// Adam on the meta-parameters, built on the library's own pure <see cref="Adam"/> rule applied to
/// their concatenation, so its state is three plain values (m, v, step) that checkpoints store and
/// a resumed run continues exactly. A non-finite meta-gradient is never applied: the step is
/// skipped and counted. Optional clipping rescales the whole meta-gradient to a maximum norm.
/// </summary>
public sealed class MetaOptimizer : IDisposable
{
    private readonly IReadOnlyList<Parameter> _parameters;
    private TwoMomentState _state;

    public MetaOptimizer(IReadOnlyList<Parameter> parameters, double learningRate, double? clipNorm)
    {
        _parameters = parameters;
        LearningRate = learningRate;
        ClipNorm = clipNorm;
        using var _ = no_grad();
        using var flat = ParameterVector.Values(parameters);
        _state = new TwoMomentState(0, zeros_like(flat).DetachFromDisposeScope(), zeros_like(flat).DetachFromDisposeScope());
    }

    public double LearningRate { get; set; }
    public double? ClipNorm { get; }
    public long Steps => _state.Step;
    public int Skipped { get; private set; }

    public void ZeroGrad()
    {
        foreach (var p in _parameters) p.grad?.zero_();
    }

    /// <summary>Applies one Adam step from the parameters' current gradients; returns the gradient norm, or null when skipped.</summary>
    public double? Step()
    {
        using var scope = NewDisposeScope();
        return Step(ParameterVector.Gradients(_parameters));
    }

    /// <summary>Applies one Adam step from <paramref name="gradient"/> (flattened in parameter order); returns its norm, or null when skipped.</summary>
    public double? Step(Tensor gradient)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var grad = gradient.to(_state.M.dtype).to(_state.M.device);
        double norm = grad.norm().ToDouble();
        if (!double.IsFinite(norm))
        {
            Skipped++;
            return null;
        }
        if (ClipNorm is double max && norm > max) grad = grad.Times(max / norm);
        var rule = new Adam(new AdamOptions { LearningRate = LearningRate });
        var step = rule.Step(grad, ParameterVector.Values(_parameters), _state);
        ParameterVector.AddInPlace(_parameters, step.Update);
        var next = (TwoMomentState)step.State;
        next.M.DetachFromDisposeScope();
        next.V.DetachFromDisposeScope();
        _state.DisposeReplaced(next);
        _state = next;
        return norm;
    }

    /// <summary>Counts a meta-update that has no finite meta-gradient to apply (as <see cref="Step(Tensor)"/> does for a non-finite one).</summary>
    public void Skip() => Skipped++;

    /// <summary>(m, v) for checkpoints.</summary>
    public (Tensor M, Tensor V) Moments => (_state.M, _state.V);

    /// <summary>Restores a checkpointed state.</summary>
    public void Restore(Tensor m, Tensor v, long steps, int skipped)
    {
        if (m.numel() != _state.M.numel() || v.numel() != _state.V.numel())
            throw new L2OException($"meta-optimizer state has {m.numel()} values; the optimizer has {_state.M.numel()} meta-parameters");
        var next = new TwoMomentState(steps, m.to(_state.M.dtype).to(_state.M.device).DetachFromDisposeScope(), v.to(_state.V.dtype).to(_state.V.device).DetachFromDisposeScope());
        _state.DisposeReplaced(next);
        _state = next;
        Skipped = skipped;
    }

    public void Dispose() => _state.DisposeReplaced(null);
}
