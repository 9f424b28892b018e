using System.Globalization;
using L2O.Evaluation;
using Spectre.Console;

namespace L2O.Cli;

/// <summary>Console tables of results.</summary>
internal static class Render
{
    public static string F(double v, string format = "0.0000") => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "—";

    public static void Results(EvaluationReport report)
    {
        var table = new Table().RoundedBorder().Title($"[bold]{Markup.Escape(report.Task)}[/]: {report.Settings.Steps} steps × {report.Settings.Runs} runs (seed {report.Settings.Seed})");
        table.AddColumn("optimizer");
        table.AddColumn(new TableColumn("final loss (mean ± std)").RightAligned());
        table.AddColumn(new TableColumn("median").RightAligned());
        bool test = report.Results.Any(r => r.TestLoss is not null);
        bool acc = report.Results.Any(r => r.TestTop1 is not null);
        if (test) table.AddColumn(new TableColumn("test loss").RightAligned());
        if (acc) { table.AddColumn(new TableColumn("top-1").RightAligned()); table.AddColumn(new TableColumn("top-2").RightAligned()); }
        table.AddColumn(new TableColumn("diverged").RightAligned());
        table.AddColumn(new TableColumn("ms/update").RightAligned());
        table.AddColumn(new TableColumn("ms/step").RightAligned());
        var best = report.Results.Where(r => r.Completed > 0).MinBy(r => r.FinalLoss.Mean);
        foreach (var r in report.Results)
        {
            string name = Markup.Escape(r.Optimizer);
            if (ReferenceEquals(r, best) && report.Results.Count > 1) name = $"[bold green]{name}[/]";
            var row = new List<string>
            {
                name,
                r.Completed == 0 ? "[red]all diverged[/]" : $"{F(r.FinalLoss.Mean)} ± {F(r.FinalLoss.Std)}",
                F(r.FinalLoss.Median),
            };
            if (test) row.Add(r.TestLoss is null ? "—" : F(r.TestLoss.Mean));
            if (acc)
            {
                row.Add(r.TestTop1 is null ? "—" : (100 * r.TestTop1.Mean).ToString("0.00", CultureInfo.InvariantCulture) + "%");
                row.Add(r.TestTop2 is null ? "—" : (100 * r.TestTop2.Mean).ToString("0.00", CultureInfo.InvariantCulture) + "%");
            }
            row.Add(r.Diverged == 0 ? "0" : $"[red]{r.Diverged}/{r.Runs.Count}[/]");
            row.Add(F(r.MillisecondsPerUpdate, "0.000"));
            row.Add(F(r.MillisecondsPerStep, "0.000"));
            table.AddRow(row.ToArray());
        }
        AnsiConsole.Write(table);
        if (report.Results.Any(r => r.Diverged > 0))
            AnsiConsole.MarkupLine("[yellow]Statistics are over the runs that did not diverge; diverged runs are listed in report.json.[/]");
    }

    public static void Written(IEnumerable<string> files)
    {
        foreach (var f in files) AnsiConsole.MarkupLine($"[grey]wrote[/] {Markup.Escape(f)}");
    }

    /// <summary>Writes the report's files and lists them, with any warnings.</summary>
    public static void WriteReport(EvaluationReport report, string folder, bool logScale = true)
    {
        var warnings = new List<string>();
        Written(report.WriteAll(folder).Concat(Plots.WriteCharts(report, folder, logScale, warnings)));
        foreach (var w in warnings) AnsiConsole.MarkupLine($"[yellow]warning:[/] {Markup.Escape(w)}");
    }
}
