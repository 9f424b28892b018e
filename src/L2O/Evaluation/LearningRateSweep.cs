using System.Globalization;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;

namespace L2O.Evaluation;

/// <summary>One point of a learning-rate sweep.</summary>
public sealed record SweepPoint(double LearningRate, OptimizerResult Result);

/// <summary>Outcome of a sweep: every point and the chosen rate.</summary>
public sealed record SweepResult(string Task, string Optimizer, IReadOnlyList<SweepPoint> Points, SweepPoint Best);

/// <summary>
/// Hand-tuning of a learning rate the way the papers tuned their baselines: the same runs on a
/// √2 grid (α_k = 2^{k/2}). The best rate has the fewest diverged runs, then the lowest mean final
/// loss; a rate where runs diverge is never preferred over one where none do.
/// </summary>
public static class LearningRateSweep
{
    /// <summary>All 2^{k/2} with <paramref name="min"/> ≤ α ≤ <paramref name="max"/>, ascending.</summary>
    public static IReadOnlyList<double> Grid(double min, double max)
    {
        if (!(min > 0) || !(max >= min)) throw new L2OException($"learning-rate range must satisfy 0 < min <= max (got {min}..{max})");
        int kLo = (int)Math.Ceiling(2 * Math.Log2(min) - 1e-9), kHi = (int)Math.Floor(2 * Math.Log2(max) + 1e-9);
        // Rates are rounded to 4 significant digits so the names and specs that report them reproduce them exactly.
        var grid = Enumerable.Range(kLo, Math.Max(0, kHi - kLo + 1)).Select(k => double.Parse(Spec.Short(Math.Pow(2, k / 2.0)), CultureInfo.InvariantCulture)).ToList();
        if (grid.Count == 0) throw new L2OException($"no point of the sqrt(2) grid lies in [{min}, {max}]");
        return grid;
    }

    public static SweepResult Run(ITask task, Spec optimizer, IReadOnlyList<double> rates, EvalSettings settings,
        BuildContext? context = null, Action<double, OptimizerResult>? onPoint = null, IProgress<EvalProgress>? progress = null, CancellationToken cancel = default)
    {
        var info = OptimizerRegistry.Find(optimizer.Name);
        if (!info.HasLearningRate) throw new L2OException($"optimizer '{info.Name}' has no 'lr' option to sweep");
        var points = new List<SweepPoint>();
        foreach (var lr in rates)
        {
            var args = new Dictionary<string, string>(optimizer.Arguments, StringComparer.OrdinalIgnoreCase) { ["lr"] = Spec.Short(lr) };
            var spec = optimizer with { Name = info.Name, Arguments = args };
            var rule = OptimizerRegistry.Create(spec, context);
            var result = Evaluator.Evaluate(task, rule, settings, spec.ToString(), progress, cancel);
            points.Add(new SweepPoint(lr, result));
            onPoint?.Invoke(lr, result);
        }
        var best = points.OrderBy(p => p.Result.Diverged).ThenBy(p => double.IsFinite(p.Result.FinalLoss.Mean) ? p.Result.FinalLoss.Mean : double.PositiveInfinity).First();
        return new SweepResult(task.Name, optimizer.ToString(), points, best);
    }
}
