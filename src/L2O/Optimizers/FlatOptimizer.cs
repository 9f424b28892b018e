using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace L2O.Optimizers;

/// <summary>
/// Drop-in optimizer for TorchSharp modules driven by any <see cref="IUpdateRule"/>, hand-designed or
/// learned: each <see cref="Step"/> concatenates the parameters and their gradients into one flat
/// vector, runs the rule, and adds the update back in place. Rules with global statistics (HyperAdam's
/// gradient norm) therefore see the whole model, exactly as during meta-training.
/// </summary>
/// <example>
/// <code>
/// using var opt = new FlatOptimizer(model.parameters(), OptimizerRegistry.Create("hyperadam:checkpoint=pretrained"));
/// opt.ZeroGrad(); loss.backward(); opt.Step();
/// </code>
/// </example>
public sealed class FlatOptimizer : IDisposable
{
    private readonly List<Parameter> _parameters;
    private OptimizerState? _state;

    public FlatOptimizer(IEnumerable<Parameter> parameters, IUpdateRule rule)
    {
        _parameters = parameters.Where(p => p.requires_grad).ToList();
        if (_parameters.Count == 0) throw new L2OException("the optimizer got no trainable parameters");
        Rule = rule;
    }

    public IUpdateRule Rule { get; }

    /// <summary>Number of steps taken.</summary>
    public long Steps { get; private set; }

    public void ZeroGrad()
    {
        foreach (var p in _parameters) p.grad?.zero_();
    }

    /// <summary>One step from the current gradients; a parameter without a gradient counts as a zero gradient.</summary>
    public void Step()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var w = ParameterVector.Values(_parameters);
        var g = ParameterVector.Gradients(_parameters);
        if (_state is null)
        {
            _state = Rule.Init(w);
            _state.DetachFromDisposeScope();
        }
        var step = Rule.Step(g, w, _state);
        ParameterVector.AddInPlace(_parameters, step.Update);
        step.State.DetachFromDisposeScope();
        _state.DisposeReplaced(step.State);
        _state = step.State;
        Runtime.NativeGarbage.AfterStep(Steps);
        Steps++;
    }

    /// <summary>Forgets the rule's state (moments, recurrent state): the next step starts afresh.</summary>
    public void Reset()
    {
        _state?.DisposeReplaced(null);
        _state = null;
        Steps = 0;
    }

    public void Dispose() => Reset();
}
