using System.Globalization;
using System.Text;
using System.Text.Json;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Runtime;

namespace L2O.Reproduction;

/// <summary>Writes an experiment's outcome: table.md (paper beside ours), results.json, curves.csv; <see cref="Charts"/> gives the plots.</summary>
public static class ReproductionReport
{
    /// <summary>The Markdown table: one row per paper row, "paper / ours" in each cell, the verdict last.</summary>
    public static string Table(Experiment e, IReadOnlyList<RowResult> rows, ReproduceSettings settings)
    {
        var keys = e.Optimizers.Concat(e.Variants.Keys).ToList();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"### {e.Title}\n\n{e.Source}. Cells: paper / ours (mean over runs ± standard error; diverged runs counted, never averaged in).");
        sb.Append(settings.Quick ? " " + settings.QuickDescription + "\n\n" : "\n\n");
        if (e.Note is not null) sb.Append(e.Note).Append("\n\n");
        sb.Append("| row | steps | runs | ").Append(string.Join(" | ", keys)).Append(" | verdict |\n");
        sb.Append("|---|---|---|").Append(string.Concat(keys.Select(_ => "---|"))).Append("---|\n");
        foreach (var r in rows)
        {
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Row.Label} | {r.Steps} | {r.Runs} |");
            foreach (var k in keys) sb.Append(' ').Append(Cell(r, k)).Append(" |");
            sb.Append(' ').Append(r.Verdict).Append(" |\n");
        }
        var tuned = rows.SelectMany(r => r.Ours.Values.Where(u => u.LearningRate is not null).Select(u => $"{r.Row.Label}: {u.Key} lr={u.LearningRate!.Value.ToString("G4", CultureInfo.InvariantCulture)}")).ToList();
        if (tuned.Count > 0)
            sb.Append(CultureInfo.InvariantCulture, $"\nTuned rates (√2 grid, seeds from {settings.SweepSeed}, disjoint from the evaluation seeds {settings.Seed}..): {string.Join("; ", tuned)}.\n");
        return sb.ToString();
    }

    private static string Cell(RowResult r, string key)
    {
        string paper = r.Row.Paper.TryGetValue(key, out var p) ? Format(p, r.Row.Metric) : "–";
        if (!r.Ours.TryGetValue(key, out var u)) return $"{paper} / {(r.Missing.ContainsKey(key) ? "n/a" : "–")}";
        var (v, se) = u.Read(r.Row.Metric);
        string ours = double.IsFinite(v) ? Format(v, r.Row.Metric) : "all diverged";
        if (double.IsFinite(se) && se > 0) ours += $" ± {Format(se, r.Row.Metric)}";
        if (u.Diverged > 0) ours += $" ({u.Diverged}/{u.Runs} diverged)";
        return $"{paper} / {ours}";
    }

    private static string Format(double v, Metric m) => m switch
    {
        Metric.Top1 or Metric.Top2 => v.ToString("F2", CultureInfo.InvariantCulture) + "%",
        Metric.MsPerUpdate => v.ToString("G3", CultureInfo.InvariantCulture) + " ms",
        _ => v.ToString(Math.Abs(v) < 0.01 ? "G2" : "F3", CultureInfo.InvariantCulture),
    };

    /// <summary>Writes table.md, results.json and curves.csv into <paramref name="folder"/>.</summary>
    public static void Write(Experiment e, IReadOnlyList<RowResult> rows, ReproduceSettings settings, string folder)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "table.md"), Table(e, rows, settings));
        var json = new
        {
            experiment = e.Name, e.Title, e.Source, settings.Quick, settings.Seed, settings.SweepSeed,
            rows = rows.Select(r => new { r.Row.Label, r.Row.Task, r.Steps, r.Runs, metric = r.Row.Metric.ToString(), paper = r.Row.Paper, r.Row.Claim, r.Reproduced, r.Verdict, ours = r.Ours, missing = r.Missing }),
        };
        AtomicFile.WriteAllText(Path.Combine(folder, "results.json"), JsonSerializer.Serialize(json, Reproducer.Json));
        var csv = new StringBuilder("row,optimizer,step,mean_loss\n");
        foreach (var r in rows)
            foreach (var u in r.Ours.Values)
                for (int i = 0; i < u.CurveSteps.Length; i++)
                    csv.Append(CultureInfo.InvariantCulture, $"\"{r.Row.Label}\",{u.Key},{u.CurveSteps[i]},{u.MeanCurve[i]:R}\n");
        AtomicFile.WriteAllText(Path.Combine(folder, "curves.csv"), csv.ToString());
    }

    /// <summary>One chart per row (mean loss curves of every optimizer, log scale): the file name, title and lines, for the caller's plotting.</summary>
    public static IEnumerable<(string File, string Title, List<(string Label, double[] X, double[] Y)> Lines)> Charts(IReadOnlyList<RowResult> rows)
    {
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (r.Ours.Count == 0 || r.Row.Metric == Metric.MsPerUpdate) continue;
            var lines = r.Ours.Values.Select(u => (Label: u.Diverged > 0 ? $"{u.Key} ({u.Diverged}/{u.Runs} diverged)" : u.Key,
                X: u.CurveSteps.Select(t => (double)t).ToArray(), Y: u.MeanCurve)).ToList();
            yield return ($"row-{i + 1}.png", $"{r.Row.Label} ({r.Row.Task}): mean loss over {r.Runs} runs", lines);
        }
    }

    /// <summary>
    /// Which checkpoint each learned column ran, and the other shipped checkpoints of that method (a reader of the
    /// summary should not have to know that, e.g., HyperAdam ships a second checkpoint trained another way).
    /// </summary>
    internal static string Checkpoints(IEnumerable<string> optimizers, ReproduceSettings settings)
    {
        var lines = new List<string>();
        foreach (var key in optimizers.Distinct().Where(k => OptimizerRegistry.Find(k).Learned))
        {
            string used = settings.Checkpoints.GetValueOrDefault(key, Learned.Pretrained.Keyword);
            var others = Learned.Pretrained.Keywords(key).Where(k => k != used).Select(k => $"`{k}`").ToList();
            lines.Add($"{key}: `checkpoint={used}`" + (others.Count > 0 ? $" (also shipped: {string.Join(", ", others)}; choose with `--{key} NAME`)" : ""));
        }
        return lines.Count == 0 ? "" : "Learned optimizers: " + string.Join("; ", lines) + ".\n\n";
    }

    /// <summary>summary.md of a whole reproduction: counts of verdicts and every experiment's table.</summary>
    public static string Summary(IReadOnlyList<(Experiment Experiment, IReadOnlyList<RowResult> Rows)> done, ReproduceSettings settings, string command)
    {
        var papers = done.Select(d => Papers.Of(d.Experiment).Title).Distinct().ToList();
        var sb = new StringBuilder($"# Reproduction of {(papers.Count == 1 ? "the paper" : "the papers")} {string.Join(" and ", papers)}\n\n");
        sb.Append(CultureInfo.InvariantCulture, $"Command: `{command}`. L2O {Runtime.L2ORuntime.Version}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
        sb.Append(settings.Quick ? " " + settings.QuickDescription + "\n\n" : "\n\n");
        sb.Append(Checkpoints(done.SelectMany(d => d.Experiment.Optimizers), settings));
        sb.Append("| experiment | rows | reproduced | not reproduced | not run |\n|---|---|---|---|---|\n");
        foreach (var (e, rows) in done)
            sb.Append(CultureInfo.InvariantCulture, $"| {e.Name} | {rows.Count} | {rows.Count(r => r.Reproduced == true)} | {rows.Count(r => r.Reproduced == false)} | {rows.Count(r => r.Reproduced is null)} |\n");
        sb.Append('\n');
        foreach (var (e, rows) in done) sb.Append(Table(e, rows, settings)).Append('\n');
        return sb.ToString();
    }
}
