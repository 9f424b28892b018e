using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Tasks;

/// <summary>
/// One minibatch for a loss evaluation. Deterministic objectives use <see cref="None"/>.
/// </summary>
/// <param name="Inputs">Model inputs (e.g. images (B, C, H, W) or sequences (B, T, 1)).</param>
/// <param name="Targets">Targets (class indices (B) or values (B, 1)).</param>
/// <param name="NoiseSeed">Seed for stochastic layers (dropout) at this step, so a batch fixes the loss function completely.</param>
public sealed record Batch(Tensor? Inputs, Tensor? Targets, long NoiseSeed = 0)
{
    public static readonly Batch None = new(null, null);
}

/// <summary>Held-out metrics of a classifier (or a regression test loss with no accuracies).</summary>
public sealed record TestMetrics(double Loss, double? Top1 = null, double? Top2 = null);

/// <summary>
/// One problem instance to minimise, functional over a flat parameter vector: the loss for a
/// minibatch at any parameter vector (differentiable with respect to it), the stream of
/// minibatches, the initial point and, where there is a test set, test metrics.
/// </summary>
public interface IOptimizee : IDisposable
{
    /// <summary>Number of parameters n.</summary>
    int Dimension { get; }

    /// <summary>Starting point w₀, shape (n).</summary>
    Tensor InitialParameters { get; }

    /// <summary>The next minibatch of this instance's stream.</summary>
    Batch NextBatch();

    /// <summary>Scalar loss at <paramref name="parameters"/> (shape (n)); differentiable with respect to it.</summary>
    Tensor Loss(Tensor parameters, Batch batch);

    /// <summary>Test metrics at <paramref name="parameters"/>, or null when the task has none.</summary>
    TestMetrics? Test(Tensor parameters) => null;

    /// <summary>
    /// f(w) on <paramref name="batch"/>, with ∇f(w) written to <paramref name="gradient"/> (shape (n), the parameters'
    /// dtype and device): by autograd, unless <paramref name="executor"/> computes the optimizee's network itself.
    /// Wrappers (Random Scaling, the convex combination) pass the call through, so an executor serves them too.
    /// </summary>
    double LossAndGradient(Tensor parameters, Batch batch, Tensor gradient, IGradientExecutor? executor = null) =>
        Autodiff.LossAndGradientInto(this, parameters, batch, gradient);
}

/// <summary>
/// Computes a network's minibatch loss and gradient without autograd (the engine does so for <see cref="MlpModel"/>, whose
/// per-step work is too small for libtorch's per-operation cost); optimizees hand it their network and fall back to
/// autograd where it declines.
/// </summary>
public interface IGradientExecutor
{
    /// <summary>
    /// The mean cross-entropy <c>cross_entropy(model.Logits(parameters, batch.Inputs, training: true, noise), batch.Targets)</c>,
    /// with its gradient written to <paramref name="gradient"/>; null (nothing written) where this executor does not handle
    /// <paramref name="model"/> or the tensors' dtype and device.
    /// </summary>
    double? CrossEntropy(IClassifierModel model, Tensor parameters, Batch batch, Tensor gradient);
}

/// <summary>
/// A distribution over optimizees: a fixed model and dataset with random initial points and
/// minibatches, or a family with random constants (quadratics). <see cref="Sample"/> with the same
/// seed gives the same instance, so every optimizer in a comparison sees the same starts and batches.
/// </summary>
public interface ITask
{
    /// <summary>Canonical specification, e.g. <c>mlp:activation=relu,layers=3</c>.</summary>
    string Name { get; }

    /// <summary>Number of parameters of every instance.</summary>
    int Dimension { get; }

    Device Device { get; }

    /// <summary>Divergence threshold used by the harness when none is given (loss above it = diverged).</summary>
    double DefaultDivergenceThreshold => 1e6;

    /// <summary>Draws one instance; the caller disposes it.</summary>
    IOptimizee Sample(long seed);
}

/// <summary>Seed derivation: independent, reproducible streams from one run seed.</summary>
public static class Seeds
{
    /// <summary>SplitMix64 of <paramref name="seed"/> mixed with <paramref name="stream"/>.</summary>
    public static long Derive(long seed, long stream)
    {
        ulong z = unchecked((ulong)seed + 0x9E3779B97F4A7C15UL * (ulong)(stream + 1));
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return (long)((z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFUL);
    }

    public const long InitStream = 1;
    public const long BatchStream = 2;
    public const long ConstantsStream = 3;
    public const long NoiseStream = 4;
}
