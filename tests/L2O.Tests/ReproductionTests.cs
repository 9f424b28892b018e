using L2O.Evaluation;
using L2O.Learned;
using L2O.Reproduction;
using Xunit;

namespace L2O.Tests;

public class ReproductionTests
{
    private static UnitResult U(string key, double loss, int diverged = 0, double top1 = double.NaN) =>
        new(key, key, null, 10, diverged, loss, 0.01, loss, top1, null, 1, [0], [loss]);

    public static TheoryData<string, double[], double[], bool?> TableCases => new()
    {
        // paper (adam, hyperadam), ours (adam, hyperadam), expected verdict
        { "same order", [0.35, 0.33], [0.30, 0.29], true },
        { "flipped", [0.35, 0.33], [0.29, 0.30], false },
        { "ours ties are not a win", [0.35, 0.33], [0.30, 0.30], false },
    };

    [Theory]
    [MemberData(nameof(TableCases))]
    public void Rows_with_numbers_need_the_same_winner_and_order(string name, double[] paper, double[] ours, bool? expected)
    {
        var row = new PaperRow(name, "mlp", 100, new Dictionary<string, double> { ["adam"] = paper[0], ["hyperadam"] = paper[1] });
        var (ok, verdict) = Verdicts.Judge(row, new Dictionary<string, UnitResult> { ["adam"] = U("adam", ours[0]), ["hyperadam"] = U("hyperadam", ours[1]) }, new Dictionary<string, string>());
        Assert.True(expected == ok, verdict);
    }

    [Theory]
    [InlineData(100, false, 100, 100, 10, 100)]
    [InlineData(10000, false, 10000, 10, 3, 2000)]
    [InlineData(100, true, 100, 3, 1, 50)]
    [InlineData(2000, true, 200, 1, 1, 50)]
    [InlineData(10000, true, 200, 1, 1, 50)]
    public void The_protocol_sets_horizons_runs_and_tuning_per_row(int paperSteps, bool quick, int steps, int runs, int sweepRuns, int sweepSteps)
    {
        var settings = new ReproduceSettings { Runs = 100, Quick = quick };
        var row = new PaperRow("r", "mlp", paperSteps, new Dictionary<string, double>());
        Assert.Equal((steps, runs, sweepRuns, sweepSteps), (settings.StepsFor(row), settings.RunsFor(row), settings.SweepRunsFor(row), settings.SweepStepsFor(row)));
        if (quick) Assert.Contains("200", settings.QuickDescription);
    }

    [Fact]
    public void Accuracy_rows_prefer_the_higher_value()
    {
        var row = new PaperRow("top-1", "cnn1", 100, new Dictionary<string, double> { ["adam"] = 98.5, ["hyperadam"] = 98.48 }, Metric.Top1);
        var ours = new Dictionary<string, UnitResult> { ["adam"] = U("adam", 0.1, top1: 0.99), ["hyperadam"] = U("hyperadam", 0.1, top1: 0.98) };
        Assert.True(Verdicts.Judge(row, ours, new Dictionary<string, string>()).Reproduced);
    }

    [Fact]
    public void A_claim_verdict_names_the_clauses_that_are_within_noise()
    {
        // Each U has a standard error of 0.01, so two means 0.02 apart are 1.4 combined SE apart, 0.1 apart 7.1.
        var row = new PaperRow("(c)", "mlp:layers=4", 100, new Dictionary<string, double>(), Claim: "hyperadam < j1; hyperadam < j5; hyperadam < j25");
        var ours = new Dictionary<string, UnitResult> { ["hyperadam"] = U("hyperadam", 1.0), ["j1"] = U("j1", 1.1), ["j5"] = U("j5", 1.02), ["j25"] = U("j25", 0.98) };
        var (ok, verdict) = Verdicts.Judge(row, ours, new Dictionary<string, string>());
        Assert.False(ok);
        Assert.Equal("not reproduced: hyperadam < j25 (1.4 SE) does not hold; held within 2 combined SE: hyperadam < j5 (1.4 SE)", verdict);
        var held = Verdicts.Judge(row with { Claim = "hyperadam < j1; hyperadam < j5" }, ours, new Dictionary<string, string>());
        Assert.Equal((true, "reproduced: hyperadam < j1; hyperadam < j5; held within 2 combined SE: hyperadam < j5 (1.4 SE)"), held);
        Assert.Equal((true, "reproduced: hyperadam < j1"), Verdicts.Judge(row with { Claim = "hyperadam < j1" }, ours, new Dictionary<string, string>()));
        // Diverged runs decide a comparison before the means, so no separation is given for it.
        ours["j1"] = U("j1", 0.5, diverged: 2);
        Assert.Equal((true, "reproduced: hyperadam < j1"), Verdicts.Judge(row with { Claim = "hyperadam < j1" }, ours, new Dictionary<string, string>()));
    }

    [Fact]
    public void Diverged_runs_lose_a_comparison_whatever_the_mean_of_the_rest()
    {
        var row = new PaperRow("cnn", "cnn1", 100, new Dictionary<string, double>(), Claim: "hyperadam < adam");
        var ours = new Dictionary<string, UnitResult> { ["adam"] = U("adam", 0.2), ["hyperadam"] = U("hyperadam", 0.1, diverged: 1) };
        var (ok, verdict) = Verdicts.Judge(row, ours, new Dictionary<string, string>());
        Assert.False(ok);
        Assert.Contains("hyperadam < adam", verdict);
    }

    [Fact]
    public void Missing_optimizers_or_data_are_not_run_never_a_verdict()
    {
        var row = new PaperRow("cifar", "cnn1:dataset=cifar10", 100, new Dictionary<string, double> { ["adam"] = 1, ["hyperadam"] = 0.5 }, NeedsCifar: true);
        var (ok, verdict) = Verdicts.Judge(row, new Dictionary<string, UnitResult>(), new Dictionary<string, string> { ["adam"] = "no CIFAR-10 data", ["hyperadam"] = "no CIFAR-10 data" });
        Assert.Null(ok);
        Assert.Contains("no CIFAR-10 data", verdict);
    }

    [Fact]
    public void A_claim_that_cannot_be_checked_names_the_missing_optimizers_it_needs()
    {
        // Fig. 8 (c) needs the J variants; another row's missing no-cc must not be given as the reason.
        var row = new PaperRow("(c)", "mlp:layers=4", 100, new Dictionary<string, double>(), Claim: "full < j1; j5 < j1");
        var ours = new Dictionary<string, UnitResult> { ["full"] = U("full", 1.0) };
        var missing = new Dictionary<string, string> { ["no-cc"] = "no-cc.safetensors does not exist", ["j1"] = "j1.safetensors does not exist", ["j5"] = "j5.safetensors does not exist" };
        var (ok, verdict) = Verdicts.Judge(row, ours, missing);
        Assert.Null(ok);
        Assert.Equal("not run: full < j1; j5 < j1 (j1: j1.safetensors does not exist; j5: j5.safetensors does not exist)", verdict);
    }

    [Fact]
    public void The_registry_names_known_tasks_and_optimizers_and_every_paper_value_has_an_optimizer()
    {
        var all = Papers.Experiments.ToList();
        Assert.Equal(all.Count, all.Select(e => e.Name).Distinct().Count());   // names are unique across papers
        Assert.DoesNotContain(all, e => Papers.All.Any(p => p.Name == e.Name));   // and differ from the papers' names
        foreach (var e in all)
        {
            foreach (var k in e.Optimizers) L2O.Optimizers.OptimizerRegistry.Find(k);
            foreach (var r in e.Rows)
            {
                Assert.All(r.Paper.Keys, k => Assert.Contains(k, e.Optimizers));
                if (r.Claim is not null)
                    Assert.All(r.Claim.Split(';').SelectMany(c => c.Split('<')).Select(s => s.Trim()), k => Assert.True(e.Optimizers.Contains(k) || e.Variants.ContainsKey(k), $"{e.Name}/{r.Label}: '{k}'"));
                Assert.Equal(r.Paper.Count == 0, r.Claim is not null);
            }
        }
        Assert.Equal(0.33, HyperAdamPaper.Find("table1").Rows[0].Paper["hyperadam"]);
        Assert.Equal(0.27, Papers.Find("rnnprop-table2").Single().Rows[1].Paper["rnnprop"]);
        Assert.Equal(RnnPropPaper.Experiments, Papers.Find("rnnprop"));
        Assert.Contains("valid: hyperadam, rnnprop (a whole paper) or table1", Assert.Throws<L2OException>(() => Papers.Find("table9")).Message);
    }

    [Fact]
    public void The_summary_names_the_checkpoint_of_each_learned_column_and_the_other_shipped_ones()
    {
        string Line(ReproduceSettings s) => ReproductionReport.Checkpoints(["adam", "hyperadam", "rnnprop", "hyperadam"], s);
        var byDefault = Line(new ReproduceSettings());
        Assert.Contains("hyperadam: `checkpoint=pretrained` (also shipped: `pretrained-mix`; choose with `--hyperadam NAME`)", byDefault);
        Assert.Contains("rnnprop: `checkpoint=pretrained`.", byDefault);
        Assert.DoesNotContain("adam:", byDefault.Replace("hyperadam:", ""));
        var mix = Line(new ReproduceSettings { Checkpoints = new Dictionary<string, string> { ["hyperadam"] = "pretrained-mix" } });
        Assert.Contains("hyperadam: `checkpoint=pretrained-mix` (also shipped: `pretrained`;", mix);
        Assert.Equal("", ReproductionReport.Checkpoints(["adam", "sgd"], new ReproduceSettings()));
    }

    public static TheoryData<string> ExperimentNames => new(Papers.Experiments.Select(e => e.Name));

    [Theory]
    [MemberData(nameof(ExperimentNames))]
    public void Every_experiment_runs_at_tiny_size_and_resumes_from_its_cache(string name)
    {
        var full = Papers.Find(name).Single();
        var e = full with { Rows = [full.Rows[0]] };
        string folder = Path.Combine(Path.GetTempPath(), $"l2o-repro-{name}-{Guid.NewGuid():N}");
        try
        {
            var settings = new ReproduceSettings { Runs = 1, SweepRuns = 1, StepsOverride = 2, Quick = true, SweepSeed = 50 };
            var rows = new Reproducer(folder, settings).Run(e);
            Assert.Single(rows);
            Assert.False(string.IsNullOrEmpty(rows[0].Verdict));
            Assert.Equal(Reproducer.Units(e), rows[0].Ours.Count + rows[0].Missing.Count);
            ReproductionReport.Write(e, rows, settings, Path.Combine(folder, name));
            Assert.Contains(full.Rows[0].Label, File.ReadAllText(Path.Combine(folder, name, "table.md")));
            var cached = Directory.GetFiles(Path.Combine(folder, "cache")).Length;
            var again = new Reproducer(folder, settings).Run(e);   // every unit comes from the cache
            Assert.Equal(rows[0].Verdict, again[0].Verdict);
            Assert.Equal(cached, Directory.GetFiles(Path.Combine(folder, "cache")).Length);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    [Fact]
    public void A_checkpoint_replaced_at_the_same_path_is_evaluated_again_not_read_from_the_cache()
    {
        var full = HyperAdamPaper.Find("table1");
        var e = full with { Rows = [full.Rows[0]], Optimizers = ["hyperadam"] };
        string folder = Path.Combine(Path.GetTempPath(), $"l2o-repro-digest-{Guid.NewGuid():N}");
        string file = Path.Combine(folder, "candidate.safetensors");
        try
        {
            Directory.CreateDirectory(folder);
            File.WriteAllBytes(file, Pretrained.ReadBytes("hyperadam")!);
            var settings = new ReproduceSettings { Runs = 1, SweepRuns = 1, StepsOverride = 2, Quick = true, SweepSeed = 50, Checkpoints = new Dictionary<string, string> { ["hyperadam"] = file } };
            var first = new Reproducer(folder, settings).Run(e)[0].Ours["hyperadam"];
            new Reproducer(folder, settings).Run(e);
            Assert.Single(Directory.GetFiles(Path.Combine(folder, "cache")));   // same bytes: cached

            File.WriteAllBytes(file, Pretrained.ShippedBytes("pretrained/ablations/hyperadam-j5.safetensors")!);
            var second = new Reproducer(folder, settings).Run(e)[0].Ours["hyperadam"];
            Assert.Equal(2, Directory.GetFiles(Path.Combine(folder, "cache")).Length);
            Assert.NotEqual(first.FinalLoss, second.FinalLoss);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    [Fact]
    public void A_plan_counts_the_protocol_s_work_and_what_the_cache_and_earlier_rows_already_hold()
    {
        // Two rows on the same task and horizon: the second's units are the first's.
        var row = new PaperRow("r", "quadratic:dim=3", 100, new Dictionary<string, double>(), Claim: "hyperadam < adam");
        var e = new Experiment("plan", "plan", "test", ["adam", "hyperadam"], [row, row with { Label = "same" }])
        {
            Variants = new Dictionary<string, string> { ["gone"] = "hyperadam:checkpoint=no/such.safetensors" },
        };
        string folder = Path.Combine(Path.GetTempPath(), $"l2o-repro-plan-{Guid.NewGuid():N}");
        try
        {
            var settings = new ReproduceSettings { Runs = 2, SweepRuns = 1, StepsOverride = 3, Quick = true, SweepSeed = 50 };
            var plan = new Reproducer(folder, settings).Plan([e]);
            Assert.Equal(6, plan.Count);
            var adam = plan.Single(u => u.Row == "r" && u.Key == "adam");
            int points = LearningRateSweep.Grid(1e-4, 1).Where((_, i) => i % 4 == 0).Count();
            Assert.Equal((PlanState.ToRun, PlanState.ToRun, 2L * 3 + points * 1 * 3), (adam.Evaluation, adam.Tuning, adam.RemainingSteps));
            var learned = plan.Single(u => u.Row == "r" && u.Key == "hyperadam");
            Assert.Equal((PlanState.ToRun, PlanState.None, 6L), (learned.Evaluation, learned.Tuning, learned.RemainingSteps));
            Assert.All(plan.Where(u => u.Row == "same" && u.Key != "gone"), u => Assert.Equal((PlanState.Shared, 0L), (u.Evaluation, u.RemainingSteps)));
            var gone = plan.Where(u => u.Key == "gone").ToList();
            Assert.All(gone, u => Assert.Equal(PlanState.NotRunnable, u.Evaluation));
            Assert.Contains("no/such.safetensors", gone[0].Why);

            new Reproducer(folder, settings).Run(e with { Variants = new Dictionary<string, string>() });
            var after = new Reproducer(folder, settings).Plan([e]);
            Assert.All(after.Where(u => u.Key != "gone"), u => Assert.Equal(0L, u.RemainingSteps));
            Assert.Equal(PlanState.Cached, after.Single(u => u.Row == "r" && u.Key == "adam").Evaluation);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, true);
        }
    }

    [Fact]
    public void A_step_s_cost_is_measured_from_a_real_run()
    {
        var task = L2O.Tasks.TaskRegistry.Create("quadratic:dim=3", L2O.Tasks.TaskContext.Cpu);
        double seconds = StepCost.Measure(task, L2O.Optimizers.OptimizerRegistry.Create("adam:lr=0.001", L2O.Optimizers.BuildContext.Cpu), steps: 5);
        Assert.InRange(seconds, 1e-9, 1.0);
        Assert.Throws<L2OException>(() => StepCost.Measure(task, L2O.Optimizers.OptimizerRegistry.Create("adam", L2O.Optimizers.BuildContext.Cpu), steps: 0));
    }

    [Fact]
    public void Tuning_seeds_must_not_overlap_evaluation_seeds()
    {
        var e = Assert.Throws<L2OException>(() => new ReproduceSettings { Runs = 100, SweepSeed = 50 }.Validate());
        Assert.Contains("overlap", e.Message);
    }
}
