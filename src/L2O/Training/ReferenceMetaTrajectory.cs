using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Training;

/// <summary>The reference: <see cref="Unroll.Run"/> with the graph to Θ, then autograd.</summary>
internal sealed class ReferenceMetaTrajectory : IMetaTrajectory
{
    private readonly LearnedOptimizer _learned;
    private readonly Trajectory _trajectory;

    public ReferenceMetaTrajectory(LearnedOptimizer learned, IOptimizee optimizee)
    {
        _learned = learned;
        _trajectory = Trajectory.Start(optimizee, learned.Rule);
    }

    public int StepsTaken => _trajectory.StepsTaken;
    public double Loss => _trajectory.Loss;
    public double ParameterNorm
    {
        get
        {
            using var norm = _trajectory.W.norm();
            return norm.ToDouble();
        }
    }

    public UnrollOutcome Unroll(int steps, MetaLoss kind)
    {
        using var scope = NewDisposeScope();
        var result = L2O.Training.Unroll.Run(_learned.Rule, _trajectory, steps, kind);
        double metaLoss = result.MetaLoss.ToDouble();
        if (!double.IsFinite(metaLoss) || result.Losses.Any(l => !double.IsFinite(l)))
            return new UnrollOutcome(metaLoss, result.Losses, null);
        var parameters = _learned.Parameters.Select(p => p.Parameter).ToList();
        foreach (var p in parameters) p.grad?.zero_();
        // A one-step unroll under mean-before (the short last unroll of a trajectory) has only the constant f(w_0).
        if (result.MetaLoss.requires_grad) result.MetaLoss.backward();
        var gradient = ParameterVector.Gradients(parameters).detach().clone();
        _trajectory.Advance(result);
        Runtime.NativeGarbage.Collect();   // an unroll is many steps: collect after each
        return new UnrollOutcome(metaLoss, result.Losses, gradient.MoveToOuterDisposeScope());
    }

    public void Dispose() => _trajectory.Dispose();
}

/// <summary>Starts a meta-training trajectory on the backend a worker was given.</summary>
internal static class MetaTrajectories
{
    /// <summary>On the fused engine when <paramref name="engine"/> is given, else on the reference.</summary>
    public static IMetaTrajectory Start(LearnedOptimizer learned, IOptimizee optimizee, FusedEngine? engine) =>
        engine is null ? new ReferenceMetaTrajectory(learned, optimizee) : new FusedTrajectory(learned, engine, optimizee);
}
