using L2O.Evaluation;
using L2O.Runtime;
using ScottPlot;

namespace L2O.Cli;

/// <summary>PNG charts of evaluation results (ScottPlot), written atomically.</summary>
/// <remarks>Here in the CLI, not in the library, so that ScottPlot and SkiaSharp do not reach library users.</remarks>
public static class Plots
{
    /// <summary>
    /// Writes loss.png (and trajectory.png for 2-D tasks) into <paramref name="directory"/>; a chart that
    /// cannot be drawn (no native graphics library, as in the GPU bundle) is reported in <paramref name="warnings"/> and skipped.
    /// </summary>
    public static IReadOnlyList<string> WriteCharts(EvaluationReport report, string directory, bool logScale = true, List<string>? warnings = null)
    {
        var written = new List<string>();
        try
        {
            string png = Path.Combine(directory, "loss.png");
            LossCurves(report, png, logScale);
            written.Add(png);
            if (report.Results.Any(r => r.Runs.Any(x => x.Trajectory is { Length: > 0 } tr && tr[0].Length == 2)))
            {
                string traj = Path.Combine(directory, "trajectory.png");
                if (Trajectories(report, traj)) written.Add(traj);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            warnings?.Add($"charts skipped: the graphics library could not be loaded ({e.GetBaseException().Message})");
        }
        return written;
    }

    private static readonly Color[] Palette = new[]
        { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" }
        .Select(Color.FromHex).ToArray();

    /// <summary>Series i's colour, and dashes from the eleventh series on, so that a chart of up to twenty series (Fig. 8 has 13) has no two alike.</summary>
    private static (Color Color, LinePattern Pattern) Style(int i) =>
        (Palette[i % Palette.Length], i / Palette.Length % 2 == 1 ? LinePattern.Dashed : LinePattern.Solid);

    /// <summary>Mean loss per step of every optimizer on one chart, with a ±1 std band (log scale optional).</summary>
    public static void LossCurves(EvaluationReport report, string path, bool logScale)
    {
        var plot = new Plot();
        int i = 0;
        foreach (var r in report.Results)
        {
            var (color, pattern) = Style(i++);
            var xs = Enumerable.Range(0, r.Steps + 1).Select(t => (double)t).ToArray();
            if (r.Completed == 0) continue;
            double Y(double v) => logScale ? Math.Log10(Math.Max(v, 1e-12)) : v;
            var mean = r.MeanCurve.Select(Y).ToArray();
            var lo = r.MeanCurve.Zip(r.StdCurve, (m, s) => Y(Math.Max(m - s, logScale ? m * 0.05 : double.NegativeInfinity))).ToArray();
            var hi = r.MeanCurve.Zip(r.StdCurve, (m, s) => Y(m + s)).ToArray();
            if (r.Completed > 1)
            {
                var band = plot.Add.FillY(xs, lo, hi);
                band.FillColor = color.WithAlpha(0.15);
                band.LineWidth = 0;
            }
            var line = plot.Add.ScatterLine(xs, mean, color);
            line.LineWidth = 2;
            line.LinePattern = pattern;
            line.LegendText = r.Diverged > 0 ? $"{r.Optimizer} ({r.Diverged}/{r.Runs.Count} diverged)" : r.Optimizer;
        }
        plot.Title($"{report.Task}: mean loss over {report.Settings.Runs} runs");
        plot.XLabel("step");
        plot.YLabel(logScale ? "loss (log scale)" : "loss");
        if (logScale)
        {
            // Values are plotted as log10; ticks at powers of ten are labelled with the value itself.
            var finite = report.Results.Where(r => r.Completed > 0).SelectMany(r => r.MeanCurve).Where(v => double.IsFinite(v) && v > 0).ToArray();
            if (finite.Length > 0) plot.Axes.Left.TickGenerator = LogTicks(finite.Min(), finite.Max());
            plot.Grid.MajorLineColor = Colors.Black.WithOpacity(0.15);
        }
        plot.ShowLegend(Alignment.UpperRight);
        Save(plot, path, 1000, 620);
    }

    /// <summary>Named lines on one chart (log10 y optional): diagnostics, meta-training curves.</summary>
    public static void Lines(string title, string xLabel, string yLabel, IEnumerable<(string Label, double[] X, double[] Y)> series, string path, bool logScale = false)
    {
        var plot = new Plot();
        int i = 0;
        var all = new List<double>();
        foreach (var (label, x, y) in series)
        {
            var ys = logScale ? y.Select(v => Math.Log10(Math.Max(v, 1e-12))).ToArray() : y;
            all.AddRange(y.Where(v => double.IsFinite(v) && v > 0));
            var (color, pattern) = Style(i++);
            var line = plot.Add.ScatterLine(x, ys, color);
            line.LineWidth = 2;
            line.LinePattern = pattern;
            line.LegendText = label;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(logScale ? $"{yLabel} (log scale)" : yLabel);
        if (logScale && all.Count > 0) plot.Axes.Left.TickGenerator = LogTicks(all.Min(), all.Max());
        plot.ShowLegend(Alignment.UpperRight);
        Save(plot, path, 900, 560);
    }

    /// <summary>
    /// Meta-training curves from run folders' log.csv: for one run, the smoothed train average and the validation loss;
    /// for several, one validation line per run (labelled by folder name), so that runs compare on the same axes.
    /// </summary>
    public static void TrainingCurves(IReadOnlyList<string> folders, string path)
    {
        var series = new List<(string, double[], double[])>();
        foreach (var folder in folders)
        {
            var log = ReadLog(folder);
            string name = Path.GetFileName(Path.GetFullPath(folder));
            var validation = log.Where(r => double.IsFinite(r.Validation)).ToList();
            if (folders.Count == 1)
                series.Add(("train average (EMA of final loss)", log.Select(r => r.Iteration).ToArray(), log.Select(r => r.TrainAverage).ToArray()));
            if (validation.Count > 0)
                series.Add((folders.Count == 1 ? "validation loss" : name, validation.Select(r => r.Iteration).ToArray(), validation.Select(r => r.Validation).ToArray()));
        }
        if (series.Count == 0) throw new L2OException("no iterations logged in " + string.Join(", ", folders));
        string title = folders.Count == 1 ? $"meta-training: {Path.GetFileName(Path.GetFullPath(folders[0]))}" : "meta-training: validation loss";
        Lines(title, "meta-iteration", "loss", series, path, logScale: true);
    }

    private static List<(double Iteration, double TrainAverage, double Validation)> ReadLog(string folder)
    {
        string file = Path.Combine(folder, Training.MetaTrainer.LogFile);
        if (!File.Exists(file)) throw new L2OException($"{folder}: no {Training.MetaTrainer.LogFile} (not a meta-train run folder)");
        var lines = File.ReadAllLines(file);
        if (lines.Length == 0) throw new L2OException($"{file} is empty");
        var header = lines[0].Split(',');
        int Col(string name) => System.Array.IndexOf(header, name);
        int it = Col("iteration"), avg = Col("train_average"), val = Col("validation_loss");
        if (it < 0 || avg < 0 || val < 0) throw new L2OException($"{file}: not a meta-training log (header lacks iteration, train_average or validation_loss)");
        static double Cell(string[] row, int col) =>
            double.TryParse(row[col], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
        return lines.Skip(1).Select(l => l.Split(',')).Where(c => c.Length == header.Length)
            .Select(c => (Cell(c, it), Cell(c, avg), Cell(c, val))).ToList();
    }

    /// <summary>Ticks for log10-transformed values at "nice" numbers (1-2-5 per decade, denser for narrow ranges).</summary>
    private static ScottPlot.TickGenerators.NumericManual LogTicks(double min, double max)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        int lo = (int)Math.Floor(Math.Log10(min)) - 1, hi = (int)Math.Ceiling(Math.Log10(max)) + 1;
        double span = Math.Log10(max) - Math.Log10(min);
        double[] majors = span < 1 ? [1, 1.5, 2, 3, 4, 5, 7] : span < 3 ? [1, 2, 5] : [1];
        for (int d = lo; d <= hi; d++)
        {
            for (int m = 1; m <= 9; m++)
            {
                double v = m * Math.Pow(10, d);
                if (majors.Contains(m)) ticks.AddMajor(Math.Log10(v), v.ToString("G3", System.Globalization.CultureInfo.InvariantCulture));
                else ticks.AddMinor(Math.Log10(v));
            }
            if (span < 1) ticks.AddMajor(Math.Log10(1.5 * Math.Pow(10, d)), (1.5 * Math.Pow(10, d)).ToString("G3", System.Globalization.CultureInfo.InvariantCulture));
        }
        return ticks;
    }

    /// <summary>Parameter paths of the first run of each optimizer over loss contours (2-D tasks only).</summary>
    public static bool Trajectories(EvaluationReport report, string path, Func<double, double, double>? objective = null)
    {
        var paths = report.Results.Select(r => (r.Optimizer, Run: r.Runs.FirstOrDefault(x => x.Trajectory is { Length: > 0 } t && t[0].Length == 2)))
            .Where(p => p.Run is not null).ToList();
        if (paths.Count == 0) return false;
        var all = paths.SelectMany(p => p.Run!.Trajectory!).ToArray();
        double xMin = all.Min(p => p[0]), xMax = all.Max(p => p[0]), yMin = all.Min(p => p[1]), yMax = all.Max(p => p[1]);
        double padX = Math.Max(0.25, 0.15 * (xMax - xMin)), padY = Math.Max(0.25, 0.15 * (yMax - yMin));
        (xMin, xMax, yMin, yMax) = (xMin - padX, xMax + padX, yMin - padY, yMax + padY);

        var plot = new Plot();
        objective ??= RosenbrockIfNamed(report.Task);
        if (objective is not null)
        {
            const int n = 80;
            var grid = new Coordinates3d[n, n];
            for (int iy = 0; iy < n; iy++)
                for (int ix = 0; ix < n; ix++)
                {
                    double x = xMin + (xMax - xMin) * ix / (n - 1), y = yMin + (yMax - yMin) * iy / (n - 1);
                    grid[iy, ix] = new Coordinates3d(x, y, Math.Log10(objective(x, y) + 1e-3));
                }
            var contours = plot.Add.ContourLines(grid, 18);
            contours.LineColor = Colors.Gray.WithAlpha(0.6);
            contours.LabelStyle.IsVisible = false;   // levels are log-spaced; the values would read as logs
        }
        int i = 0;
        foreach (var (name, run) in paths)
        {
            var (color, pattern) = Style(i++);
            var line = plot.Add.ScatterLine(run!.Trajectory!.Select(p => (double)p[0]).ToArray(), run.Trajectory!.Select(p => (double)p[1]).ToArray(), color);
            line.LineWidth = 1.5f;
            line.LinePattern = pattern;
            line.MarkerSize = 3;
            line.LegendText = name;
        }
        plot.Title($"{report.Task}: trajectories of run 0 (contours log-spaced)");
        plot.XLabel("x");
        plot.YLabel("y");
        plot.ShowLegend(Alignment.UpperLeft);
        Save(plot, path, 800, 700);
        return true;
    }

    private static Func<double, double, double>? RosenbrockIfNamed(string task)
    {
        var spec = Specs.Spec.Parse(task);
        if (spec.Name != "rosenbrock") return null;
        double a = spec.Arguments.TryGetValue("a", out var av) ? double.Parse(av, System.Globalization.CultureInfo.InvariantCulture) : 1;
        double b = spec.Arguments.TryGetValue("b", out var bv) ? double.Parse(bv, System.Globalization.CultureInfo.InvariantCulture) : 100;
        return (x, y) => (a - x) * (a - x) + b * (y - x * x) * (y - x * x);
    }

    /// <summary>Renders to a temporary file beside <paramref name="path"/>, then renames it into place.</summary>
    public static void Save(Plot plot, string path, int width, int height) =>
        Runtime.AtomicFile.WriteFile(path, tmp => plot.SavePng(tmp, width, height));
}
