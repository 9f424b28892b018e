using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Training;

/// <summary>What one truncated unroll produced for the meta-optimizer.</summary>
/// <param name="MetaLoss">The unroll's meta-loss (NaN or ±∞ when the trajectory diverged).</param>
/// <param name="Losses">f(w_1) … f(w_U) (shorter when a loss was not finite).</param>
/// <param name="MetaGradient">∂meta-loss/∂Θ flattened in the order of <see cref="LearnedOptimizer.Parameters"/>; null when diverged.</param>
public sealed record UnrollOutcome(double MetaLoss, double[] Losses, Tensor? MetaGradient) : IDisposable
{
    public bool Finite => MetaGradient is not null;
    public void Dispose() => MetaGradient?.Dispose();
}

/// <summary>
/// One optimizee trajectory under a learned rule, advanced one truncated unroll at a time, each
/// returning its meta-loss and first-order meta-gradient (see <see cref="Unroll"/>). Implemented by
/// the reference (TorchSharp autograd) and by the fused CPU engine; the meta-trainer sees only this.
/// </summary>
public interface IMetaTrajectory : IDisposable
{
    int StepsTaken { get; }
    /// <summary>Training loss at the current parameters.</summary>
    double Loss { get; }
    /// <summary>‖w‖₂ of the current parameters.</summary>
    double ParameterNorm { get; }
    UnrollOutcome Unroll(int steps, MetaLoss kind);
}

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
