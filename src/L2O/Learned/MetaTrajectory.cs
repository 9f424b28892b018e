using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Learned;

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
/// returning its meta-loss and first-order meta-gradient. Implemented by the reference (TorchSharp
/// autograd, in Training) and by the fused CPU engine (in Engine); the meta-trainer sees only this.
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
