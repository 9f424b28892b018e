using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Training;

/// <summary>
/// Random Scaling (RNNprop §4.1, eq. 2): f_c(w) = f(c ⊙ w) started from w₀ / c, with c drawn per
/// trajectory. The optimizer sees coordinates whose gradients differ by orders of magnitude, so it
/// must learn scale-adaptive steps.
/// </summary>
public sealed class ScaledOptimizee(IOptimizee inner, Tensor scale) : IOptimizee
{
    public Tensor Scale { get; } = scale;
    public int Dimension => inner.Dimension;
    public Tensor InitialParameters { get; } = Owned(() => inner.InitialParameters / scale);
    public Batch NextBatch() => inner.NextBatch();
    public Tensor Loss(Tensor parameters, Batch batch) => inner.Loss(parameters * Scale, batch);
    public TestMetrics? Test(Tensor parameters) { using var _ = NewDisposeScope(); return inner.Test(parameters * Scale); }

    /// <summary>∇_w f(c ⊙ w) = c ⊙ ∇f(c ⊙ w), the inner gradient from the inner optimizee (and the executor it may use).</summary>
    public double LossAndGradient(Tensor parameters, Batch batch, Tensor gradient, IGradientExecutor? executor = null)
    {
        using var scope = NewDisposeScope();
        double loss = inner.LossAndGradient(parameters * Scale, batch, gradient, executor);
        gradient.mul_(Scale);
        return loss;
    }

    /// <summary>c = exp(U[−L, L]) per coordinate (RNNprop §5), drawn on the CPU with <paramref name="generator"/>.</summary>
    public static Tensor DrawScale(long n, double bound, Generator generator, ScalarType dtype, Device device) =>
        Owned(() => rand([n], dtype: dtype, generator: generator).Times(2 * bound).Minus(bound).exp().to(device));

    /// <summary>Runs <paramref name="make"/> in its own scope and returns its result outside every scope (the caller owns it).</summary>
    internal static Tensor Owned(Func<Tensor> make)
    {
        using var scope = NewDisposeScope();
        return make().DetachFromDisposeScope();
    }

    public void Dispose()
    {
        InitialParameters.Dispose();
        Scale.Dispose();
        inner.Dispose();
    }
}

/// <summary>
/// Combination with Convex Functions (RNNprop §4.2, eq. 3; HyperAdam eq. 9): F([w; z]) = f(w) + h(z)
/// with h a random convex function of its own coordinates, so the optimizer also meets an easy
/// problem in every trajectory. The parameter vector is w followed by z.
/// </summary>
public sealed class CombinedOptimizee(IOptimizee f, IOptimizee h) : IOptimizee
{
    public int Dimension => f.Dimension + h.Dimension;
    public Tensor InitialParameters { get; } = ScaledOptimizee.Owned(() => cat([f.InitialParameters, h.InitialParameters], 0));
    public Batch NextBatch() => f.NextBatch();

    public Tensor Loss(Tensor parameters, Batch batch) =>
        f.Loss(parameters.narrow(0, 0, f.Dimension), batch).Plus(h.Loss(parameters.narrow(0, f.Dimension, h.Dimension), Batch.None));

    public TestMetrics? Test(Tensor parameters) => f.Test(parameters.narrow(0, 0, f.Dimension));

    /// <summary>Each part's loss and gradient into its slice of <paramref name="gradient"/>.</summary>
    public double LossAndGradient(Tensor parameters, Batch batch, Tensor gradient, IGradientExecutor? executor = null)
    {
        using var scope = NewDisposeScope();
        int n = f.Dimension, m = h.Dimension;
        return f.LossAndGradient(parameters.narrow(0, 0, n), batch, gradient.narrow(0, 0, n), executor)
             + h.LossAndGradient(parameters.narrow(0, n, m), Batch.None, gradient.narrow(0, n, m), executor);
    }

    public void Dispose()
    {
        InitialParameters.Dispose();
        f.Dispose();
        h.Dispose();
    }
}

/// <summary>Settings of the two training tricks (RNNprop §4, §5).</summary>
public sealed record TrickOptions
{
    public bool RandomScaling { get; init; } = true;
    /// <summary>L for the task's coordinates (RNNprop: 3).</summary>
    public double TaskScaleBound { get; init; } = 3;
    /// <summary>L for the convex function's coordinates (RNNprop: 1).</summary>
    public double ConvexScaleBound { get; init; } = 1;
    public bool ConvexCombination { get; init; } = true;
    /// <summary>n of the convex function (RNNprop: 20).</summary>
    public int ConvexDimension { get; init; } = 20;
    /// <summary>Clip of each squared term (HyperAdam's code: 10); null = none (the papers).</summary>
    public double? ConvexClip { get; init; }
    /// <summary>Initializer of z (<see cref="Tasks.Initializer"/> syntax); null = the convex task's own, U[−1, 1] (RNNprop §4.2). HyperAdam's code: z₀ = 0, i.e. <c>normal:0</c>.</summary>
    public string? ConvexInit { get; init; }

    public static TrickOptions None { get; } = new() { RandomScaling = false, ConvexCombination = false };
}

/// <summary>
/// The meta-training distribution: a weighted mixture of tasks, each instance optionally randomly
/// scaled and combined with a randomly scaled convex function. Every draw is a function of the seed.
/// </summary>
public sealed class TrainingTask : ITask
{
    private readonly IReadOnlyList<(ITask Task, double Weight)> _tasks;
    private readonly ITask? _convex;

    public TrainingTask(IReadOnlyList<(ITask Task, double Weight)> tasks, TrickOptions tricks, TaskContext context)
    {
        if (tasks.Count == 0) throw new L2OException("meta-training needs at least one task");
        if (tasks.Any(t => !(t.Weight > 0))) throw new L2OException("task weights must be > 0");
        _tasks = tasks;
        Tricks = tricks;
        Device = context.Device;
        if (tricks.ConvexCombination)
        {
            string clip = tricks.ConvexClip is double c ? $",clip={Specs.Spec.Format(c)}" : "";
            string init = tricks.ConvexInit is string i ? $",init={i}" : "";
            _convex = TaskRegistry.Create($"convex:dim={tricks.ConvexDimension}{clip}{init}", context);
        }
    }

    public TrickOptions Tricks { get; }
    public IReadOnlyList<(ITask Task, double Weight)> Tasks => _tasks;
    public string Name => string.Join("+", _tasks.Select(t => t.Task.Name));
    public Device Device { get; }

    /// <summary>The dimension of the first task's instances (mixtures may differ per instance).</summary>
    public int Dimension => _tasks[0].Task.Dimension + (_convex?.Dimension ?? 0);

    /// <summary>Which task instance <paramref name="seed"/> draws.</summary>
    public ITask Pick(long seed)
    {
        double total = _tasks.Sum(t => t.Weight);
        double u = new Random(unchecked((int)Seeds.Derive(seed, 10))).NextDouble() * total;
        foreach (var (task, weight) in _tasks)
        {
            if (u < weight) return task;
            u -= weight;
        }
        return _tasks[^1].Task;
    }

    public IOptimizee Sample(long seed)
    {
        var task = Pick(seed);
        IOptimizee f = task.Sample(Seeds.Derive(seed, 11));
        using var scales = new Generator((ulong)Seeds.Derive(seed, 12));
        var dtype = f.InitialParameters.dtype;
        if (Tricks.RandomScaling)
            f = new ScaledOptimizee(f, ScaledOptimizee.DrawScale(f.Dimension, Tricks.TaskScaleBound, scales, dtype, Device));
        if (_convex is not null)
        {
            IOptimizee h = _convex.Sample(Seeds.Derive(seed, 13));
            if (Tricks.RandomScaling)
                h = new ScaledOptimizee(h, ScaledOptimizee.DrawScale(h.Dimension, Tricks.ConvexScaleBound, scales, dtype, Device));
            f = new CombinedOptimizee(f, h);
        }
        return f;
    }
}
