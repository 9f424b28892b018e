using L2O.Tasks;

namespace L2O.Evaluation;

/// <summary>Aggregate of one optimizer's runs on a task.</summary>
/// <remarks>
/// Per-step statistics are over the runs that did not diverge (<see cref="Completed"/>); diverged
/// runs are counted in <see cref="Diverged"/> and listed with the step where they failed, never
/// averaged in or dropped silently.
/// </remarks>
public sealed record OptimizerResult(
    string Optimizer,
    string Spec,
    IReadOnlyList<RunRecord> Runs,
    double DivergenceThreshold,
    int Steps,
    double[] MeanCurve,
    double[] StdCurve,
    double[] MedianCurve,
    Summary FinalLoss,
    Summary? TestLoss,
    Summary? TestTop1,
    Summary? TestTop2,
    double MillisecondsPerUpdate,
    double MillisecondsPerStep)
{
    public int Completed => Runs.Count(r => !r.Diverged);
    public int Diverged => Runs.Count(r => r.Diverged);

    /// <summary>
    /// <paramref name="results"/> with distinct <see cref="Optimizer"/> labels, which tables, curves.csv and plots key on. Two
    /// learned rules loaded from files of the same name (each "hyperadam(best-validation)") are told apart by the
    /// checkpoint's folder ("hyperadam(j35/best-validation)"), and by their whole <see cref="Spec"/> where that still
    /// collides. Labels that are already distinct are kept.
    /// </summary>
    public static IReadOnlyList<OptimizerResult> WithDistinctLabels(IReadOnlyList<OptimizerResult> results)
    {
        static string WithFolder(OptimizerResult r)
        {
            var spec = Specs.Spec.Parse(r.Spec);
            if (!spec.Arguments.TryGetValue("checkpoint", out var file) || Learned.Pretrained.IsKeyword(file)) return r.Optimizer;
            string folder = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(file)) ?? "");
            int open = r.Optimizer.IndexOf('(');
            return open < 0 || folder.Length == 0 ? r.Optimizer : $"{r.Optimizer[..open]}({folder}/{r.Optimizer[(open + 1)..]}";
        }
        static HashSet<string> Colliding(IEnumerable<OptimizerResult> rs) => rs.GroupBy(r => r.Optimizer).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        var colliding = Colliding(results);
        if (colliding.Count == 0) return results;
        var relabelled = results.Select(r => colliding.Contains(r.Optimizer) ? r with { Optimizer = WithFolder(r) } : r).ToList();
        if (Colliding(relabelled).Count == 0) return relabelled;
        return results.Select(r => colliding.Contains(r.Optimizer) ? r with { Optimizer = r.Spec } : r).ToList();
    }

    public static OptimizerResult From(string optimizer, string spec, IReadOnlyList<RunRecord> runs, double threshold, int steps)
    {
        var ok = runs.Where(r => !r.Diverged).ToList();
        var mean = new double[steps + 1];
        var std = new double[steps + 1];
        var median = new double[steps + 1];
        for (int t = 0; t <= steps; t++)
        {
            var s = Summary.Of(ok.Select(r => r.Losses[t]).ToList());
            (mean[t], std[t], median[t]) = (s.Mean, s.Std, s.Median);
        }
        Summary? Metric(Func<TestMetrics, double?> pick)
        {
            var values = ok.Where(r => r.Test is not null && pick(r.Test) is not null).Select(r => pick(r.Test!)!.Value).ToList();
            return values.Count == 0 ? null : Summary.Of(values);
        }
        int updates = runs.Sum(r => r.StepsTaken);
        int evaluated = runs.Sum(r => r.StepsTaken + 1);
        return new OptimizerResult(optimizer, spec, runs, threshold, steps, mean, std, median,
            Summary.Of(ok.Select(r => r.Losses[steps]).ToList()),
            Metric(m => m.Loss), Metric(m => m.Top1), Metric(m => m.Top2),
            updates == 0 ? double.NaN : 1000 * runs.Sum(r => r.UpdateSeconds) / updates,
            evaluated == 0 ? double.NaN : 1000 * runs.Sum(r => r.StepSeconds) / evaluated);
    }
}
