using System.Text.Json;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using Xunit;

namespace L2O.Tests;

public class EvaluationTests
{
    private static readonly ITask Rosenbrock = TaskRegistry.Create("rosenbrock");

    [Fact]
    public void Diverged_runs_are_counted_and_kept_out_of_the_curve()
    {
        var settings = new EvalSettings { Steps = 50, Runs = 6, DivergenceThreshold = 1e4 };
        var result = Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create("sgd:lr=0.01"), settings);
        Assert.Equal(6, result.Completed + result.Diverged);
        Assert.True(result.Diverged > 0, "expected some runs to diverge at this rate");
        foreach (var run in result.Runs.Where(r => r.Diverged))
        {
            Assert.True(double.IsNaN(run.Losses[^1]));
            Assert.True(run.DivergedAt <= 50);
        }
        if (result.Completed > 0)
        {
            var ok = result.Runs.Where(r => !r.Diverged).ToList();
            Assert.Equal(ok.Average(r => r.Losses[50]), result.MeanCurve[50], 9);
            Assert.Equal(ok.Count, result.FinalLoss.Count);
        }
    }

    [Fact]
    public void Evaluation_is_reproducible_and_optimizers_share_starts()
    {
        var settings = new EvalSettings { Steps = 20, Runs = 3, Seed = 42 };
        var a = Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create("adam:lr=0.05"), settings);
        var b = Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create("adam:lr=0.05"), settings);
        var c = Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create("rmsprop:lr=0.01"), settings);
        for (int r = 0; r < 3; r++)
        {
            Assert.Equal(a.Runs[r].Losses, b.Runs[r].Losses);
            Assert.Equal(a.Runs[r].Losses[0], c.Runs[r].Losses[0]);
            Assert.Equal(42 + r, a.Runs[r].Seed);
        }
    }

    [Fact]
    public void Long_evaluation_does_not_leak_tensors()
    {
        var task = TaskRegistry.Create("mlp:batch=16");
        var rule = OptimizerRegistry.Create("adam:lr=0.01");
        var stats = DisposeScopeManager.Statistics;
        Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 5, Runs = 1 });   // warm caches
        long before = stats.TensorStatistics.ThreadTotalLiveCount;
        Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 300, Runs = 2 });
        Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 10, Runs = 4 });
        long after = stats.TensorStatistics.ThreadTotalLiveCount;
        Assert.True(after == before, $"live tensors grew from {before} to {after}");
    }

    [Fact]
    public void Reports_write_json_csv_and_png_atomically()
    {
        using var dir = new TempDir();
        var settings = new EvalSettings { Steps = 10, Runs = 3, RecordTrajectory = true, DivergenceThreshold = 1e4 };
        var results = new[] { "adam:lr=0.05", "sgd:lr=0.01" }
            .Select(s => Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create(s), settings, s)).ToList();
        var report = new EvaluationReport(Rosenbrock.Name, settings, results, "test", "cpu");
        var files = report.WriteAll(dir.Path).Concat(L2O.Cli.Plots.WriteCharts(report, dir.Path));
        Assert.Equal(["report.json", "curves.csv", "runs.csv", "loss.png", "trajectory.png"], files.Select(Path.GetFileName));
        Assert.DoesNotContain(Directory.GetFiles(dir.Path), f => Path.GetFileName(f).StartsWith('.'));

        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("report.json")));
        var r = json.RootElement.GetProperty("results");
        Assert.Equal(2, r.GetArrayLength());
        Assert.Equal(3, r[0].GetProperty("run_details").GetArrayLength());
        Assert.Equal(11, r[0].GetProperty("curve").GetProperty("mean").GetArrayLength());
        Assert.Equal(11, r[0].GetProperty("run_details")[0].GetProperty("trajectory").GetArrayLength());
        Assert.Equal(results[1].Diverged, r[1].GetProperty("runs_diverged").GetInt32());

        var curves = File.ReadAllLines(dir.File("curves.csv"));
        Assert.Equal("optimizer,step,mean,std,median,runs_completed,runs_diverged", curves[0]);
        Assert.Equal(1 + 2 * 11, curves.Length);
        Assert.Equal(1 + 2 * 3 * 11, File.ReadAllLines(dir.File("runs.csv")).Length);
        foreach (var png in new[] { "loss.png", "trajectory.png" })
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(dir.File(png))[..4]);
    }

    [Fact]
    public void Results_with_the_same_label_are_told_apart_by_checkpoint_folder_then_spec()
    {
        static OptimizerResult Result(string label, string spec) =>
            OptimizerResult.From(label, spec, [new RunRecord(0, 0, [1.0, 0.5], null, null, 0, 0, 1, null)], 1e6, 1);
        var distinct = new[] { Result("adam(lr=0.1)", "adam:lr=0.1"), Result("hyperadam(pretrained)", "hyperadam:checkpoint=pretrained") };
        Assert.Same(distinct, OptimizerResult.WithDistinctLabels(distinct));
        var sameFile = OptimizerResult.WithDistinctLabels([
            Result("adam(lr=0.1)", "adam:lr=0.1"),
            Result("hyperadam(best-validation)", "hyperadam:checkpoint=runs/j20/best-validation.safetensors"),
            Result("hyperadam(best-validation)", "hyperadam:checkpoint=runs/j35/best-validation.safetensors"),
        ]);
        Assert.Equal(["adam(lr=0.1)", "hyperadam(j20/best-validation)", "hyperadam(j35/best-validation)"], sameFile.Select(r => r.Optimizer));
        // The same folder name twice: the whole specification.
        var sameFolder = OptimizerResult.WithDistinctLabels([
            Result("hyperadam(best-validation)", "hyperadam:checkpoint=a/run/best-validation.safetensors"),
            Result("hyperadam(best-validation)", "hyperadam:checkpoint=b/run/best-validation.safetensors"),
        ]);
        Assert.Equal(["hyperadam:checkpoint=a/run/best-validation.safetensors", "hyperadam:checkpoint=b/run/best-validation.safetensors"],
            sameFolder.Select(r => r.Optimizer));
    }

    [Fact]
    public void Trajectories_start_at_the_initial_point_and_follow_the_updates()
    {
        var settings = new EvalSettings { Steps = 3, Runs = 1, RecordTrajectory = true };
        var result = Evaluator.Evaluate(Rosenbrock, OptimizerRegistry.Create("sgd:lr=0.001"), settings);
        var tr = result.Runs[0].Trajectory!;
        Assert.Equal(4, tr.Length);
        using var f = Rosenbrock.Sample(0);
        Assert.Equal(f.InitialParameters.data<float>().ToArray(), tr[0]);
    }

    [Fact]
    public void Sqrt2_grid_has_ratio_sqrt2_and_stays_in_range()
    {
        var grid = LearningRateSweep.Grid(0.01, 0.1);
        Assert.Equal(7, grid.Count);
        Assert.All(grid, lr => Assert.InRange(lr, 0.01, 0.1));
        for (int i = 1; i < grid.Count; i++) Assert.InRange(grid[i] / grid[i - 1], 1.412, 1.417);   // 4 significant digits
        Assert.Contains(0.0625, grid);
        Assert.Throws<L2OException>(() => LearningRateSweep.Grid(0.3, 0.31));
    }

    [Fact]
    public void Sweep_never_prefers_a_rate_with_diverged_runs()
    {
        var settings = new EvalSettings { Steps = 40, Runs = 4, DivergenceThreshold = 1e4, TestMetrics = false };
        var sweep = LearningRateSweep.Run(Rosenbrock, Specs.Spec.Parse("sgd"), LearningRateSweep.Grid(1e-4, 0.02), settings);
        Assert.Contains(sweep.Points, p => p.Result.Diverged > 0);
        Assert.Equal(0, sweep.Best.Result.Diverged);
        Assert.Equal(sweep.Points.Where(p => p.Result.Diverged == 0).Min(p => p.Result.FinalLoss.Mean), sweep.Best.Result.FinalLoss.Mean);
    }

    [Fact]
    public void Summary_statistics_are_correct()
    {
        var s = Summary.Of([1.0, 2.0, 3.0, 10.0]);
        Assert.Equal(4.0, s.Mean);
        Assert.Equal(2.5, s.Median);
        Assert.Equal(Math.Sqrt((9 + 4 + 1 + 36) / 3.0), s.Std, 12);
        Assert.True(double.IsNaN(Summary.Of([]).Mean));
    }
}
