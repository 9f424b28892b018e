using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using L2O.Runtime;

namespace L2O.Evaluation;

/// <summary>
/// The results of evaluating several optimizers on one task, with what is needed to reproduce
/// them, and writers for JSON and CSV. All files are written atomically.
/// </summary>
public sealed record EvaluationReport(string Task, EvalSettings Settings, IReadOnlyList<OptimizerResult> Results, string Command, string Device)
{
    /// <summary>
    /// Writes report.json, curves.csv and runs.csv into <paramref name="directory"/> (charts: the CLI's
    /// <c>Plots</c> and <c>l2o report</c>, so that the library carries no graphics dependency).
    /// </summary>
    public IReadOnlyList<string> WriteAll(string directory)
    {
        Directory.CreateDirectory(directory);
        return
        [
            Write(Path.Combine(directory, "report.json"), ToJson()),
            Write(Path.Combine(directory, "curves.csv"), CurvesCsv()),
            Write(Path.Combine(directory, "runs.csv"), RunsCsv()),
        ];
    }

    private static string Write(string path, string text)
    {
        AtomicFile.WriteAllText(path, text);
        return path;
    }

    public string ToJson()
    {
        var root = new JsonObject
        {
            ["l2o_version"] = Runtime.L2ORuntime.Version,
            ["created_utc"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture),
            ["command"] = Command,
            ["device"] = Device,
            ["libtorch"] = TorchSharp.torch.__version__,
            ["machine"] = $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, {Environment.ProcessorCount} logical cores, .NET {Environment.Version}",
            ["task"] = Task,
            ["steps"] = Settings.Steps,
            ["runs"] = Settings.Runs,
            ["seed"] = Settings.Seed,
            ["notes"] = "curve statistics are over runs that did not diverge; diverged runs are counted and listed",
            ["results"] = new JsonArray(Results.Select(ResultJson).ToArray<JsonNode?>()),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonObject ResultJson(OptimizerResult r) => new()
    {
        ["optimizer"] = r.Optimizer,
        ["spec"] = r.Spec,
        ["divergence_threshold"] = Num(r.DivergenceThreshold),
        ["runs_completed"] = r.Completed,
        ["runs_diverged"] = r.Diverged,
        ["diverged"] = new JsonArray(r.Runs.Where(x => x.Diverged).Select(x => (JsonNode)new JsonObject { ["run"] = x.Run, ["seed"] = x.Seed, ["step"] = x.DivergedAt }).ToArray<JsonNode?>()),
        ["final_loss"] = SummaryJson(r.FinalLoss),
        ["test_loss"] = r.TestLoss is null ? null : SummaryJson(r.TestLoss),
        ["test_top1"] = r.TestTop1 is null ? null : SummaryJson(r.TestTop1),
        ["test_top2"] = r.TestTop2 is null ? null : SummaryJson(r.TestTop2),
        ["ms_per_update"] = Num(r.MillisecondsPerUpdate),
        ["ms_per_step"] = Num(r.MillisecondsPerStep),
        ["curve"] = new JsonObject
        {
            ["mean"] = Array(r.MeanCurve),
            ["std"] = Array(r.StdCurve),
            ["median"] = Array(r.MedianCurve),
        },
        ["run_details"] = new JsonArray(r.Runs.Select(x => (JsonNode)new JsonObject
        {
            ["run"] = x.Run,
            ["seed"] = x.Seed,
            ["diverged_at"] = x.DivergedAt,
            ["losses"] = Array(x.Losses),
            ["test"] = x.Test is null ? null : new JsonObject { ["loss"] = Num(x.Test.Loss), ["top1"] = Num(x.Test.Top1), ["top2"] = Num(x.Test.Top2) },
            ["trajectory"] = x.Trajectory is null ? null : new JsonArray(x.Trajectory.Select(p => (JsonNode)new JsonArray(p.Select(v => (JsonNode)JsonValue.Create(v)).ToArray<JsonNode?>())).ToArray<JsonNode?>()),
        }).ToArray<JsonNode?>()),
    };

    private static JsonObject SummaryJson(Summary s) => new() { ["mean"] = Num(s.Mean), ["std"] = Num(s.Std), ["median"] = Num(s.Median), ["n"] = s.Count };

    /// <summary>JSON has no NaN: non-finite numbers are written as null.</summary>
    private static JsonNode? Num(double? v) => v is double d && double.IsFinite(d) ? JsonValue.Create(d) : null;

    private static JsonArray Array(IEnumerable<double> values) => new(values.Select(v => Num(v)).ToArray());

    public string CurvesCsv()
    {
        var sb = new StringBuilder("optimizer,step,mean,std,median,runs_completed,runs_diverged\n");
        foreach (var r in Results)
            for (int t = 0; t <= r.Steps; t++)
                sb.Append(Csv(r.Optimizer)).Append(',').Append(t).Append(',').Append(F(r.MeanCurve[t])).Append(',').Append(F(r.StdCurve[t]))
                  .Append(',').Append(F(r.MedianCurve[t])).Append(',').Append(r.Completed).Append(',').Append(r.Diverged).Append('\n');
        return sb.ToString();
    }

    public string RunsCsv()
    {
        var sb = new StringBuilder("optimizer,run,seed,step,loss,diverged_at\n");
        foreach (var r in Results)
            foreach (var run in r.Runs)
                for (int t = 0; t < run.Losses.Length; t++)
                    sb.Append(Csv(r.Optimizer)).Append(',').Append(run.Run).Append(',').Append(run.Seed).Append(',').Append(t).Append(',')
                      .Append(F(run.Losses[t])).Append(',').Append(run.DivergedAt?.ToString(CultureInfo.InvariantCulture) ?? "").Append('\n');
        return sb.ToString();
    }

    private static string F(double v) => double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : "";
    private static string Csv(string s) => s.Contains(',') || s.Contains('"') ? $"\"{s.Replace("\"", "\"\"")}\"" : s;
}
