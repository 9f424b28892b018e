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
