using System.Globalization;
using System.Text;
using L2O.Optimizers;
using L2O.Runtime;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Evaluation;

/// <summary>
/// Statistics of one named quantity at one step, averaged over runs. For a (p, J) tensor,
/// <see cref="CoordinateStd"/> is the spread over coordinates within a column, averaged over the J
/// columns: how much the quantity differs between coordinates at the same step (zero when a learned
/// rule behaves identically for every coordinate).
/// </summary>
public sealed record DiagnosticRow(string Task, string Optimizer, int Step, string Quantity,
    double Mean, double CoordinateStd, double Rms, double P05, double P95, int Runs);

/// <summary>
/// Records what an update rule does inside, step by step: the intermediates a learned optimizer
/// reports through <see cref="Learned.LearnedOptimizer.Probe"/> and, for every rule, the update Δ and
/// the gradient g. Used to see why a learned rule fails on a task (docs/methods/hyperadam.md).
/// </summary>
public static class Diagnostics
{
    /// <summary>Runs <paramref name="rule"/> like <see cref="Evaluator"/> and summarises every recorded quantity per step.</summary>
    /// <param name="attachProbe">Installs (non-null) or removes (null) a probe on the learned optimizer behind the rule, if any.</param>
    public static IReadOnlyList<DiagnosticRow> Run(ITask task, IUpdateRule rule, string optimizer, EvalSettings settings,
        Action<Action<string, Tensor>?>? attachProbe = null, CancellationToken cancel = default)
    {
        settings.Validate();
        var sums = new Dictionary<(int Step, string Quantity), double[]>();
        int step = 0;
        void Add(string name, Tensor value)
        {
            using var scope = NewDisposeScope();
            var x = value.detach().to(ScalarType.Float64);
            var flat = x.flatten();
            double mean = flat.mean().ToDouble();
            double rms = flat.Squared().mean().sqrt().ToDouble();
            double coordStd = x.dim() == 2 && x.shape[0] > 1 ? x.std(0).mean().ToDouble() : x.dim() == 1 && x.shape[0] > 1 ? flat.std().ToDouble() : 0;
            var q = quantile(flat.to(ScalarType.Float32), tensor(new float[] { 0.05f, 0.95f })).to(ScalarType.Float64).data<double>().ToArray();
            var key = (step, name);
            if (!sums.TryGetValue(key, out var acc)) sums[key] = acc = new double[6];
            acc[0] += mean; acc[1] += coordStd; acc[2] += rms; acc[3] += q[0]; acc[4] += q[1]; acc[5] += 1;
        }

        attachProbe?.Invoke(Add);
        try
        {
            double threshold = settings.DivergenceThreshold ?? task.DefaultDivergenceThreshold;
            for (int r = 0; r < settings.Runs; r++)
            {
                Evaluator.RunOnce(task, rule, settings with { TestMetrics = false }, r, threshold, cancel: cancel,
                    observe: (t, g, update) =>
                    {
                        Add("gradient", g);
                        Add("update", update);
                        step = t + 1;   // the probe fires inside the next Step call, before its observer
                    });
                step = 0;
            }
        }
        finally
        {
            attachProbe?.Invoke(null);
        }
        return sums.OrderBy(kv => kv.Key.Quantity, StringComparer.Ordinal).ThenBy(kv => kv.Key.Step)
            .Select(kv =>
            {
                var a = kv.Value;
                double n = a[5];
                return new DiagnosticRow(task.Name, optimizer, kv.Key.Step, kv.Key.Quantity, a[0] / n, a[1] / n, a[2] / n, a[3] / n, a[4] / n, (int)n);
            }).ToList();
    }

    /// <summary>Writes rows as CSV (atomically).</summary>
    public static void WriteCsv(IEnumerable<DiagnosticRow> rows, string path)
    {
        var sb = new StringBuilder("task,optimizer,step,quantity,mean,coordinate_std,rms,p05,p95,runs\n");
        foreach (var r in rows)
            sb.Append(CultureInfo.InvariantCulture, $"\"{r.Task}\",\"{r.Optimizer}\",{r.Step},{r.Quantity},{r.Mean:R},{r.CoordinateStd:R},{r.Rms:R},{r.P05:R},{r.P95:R},{r.Runs}\n");
        AtomicFile.WriteAllText(path, sb.ToString());
    }
}
