using System.Text.Json.Nodes;
using L2O.Checkpoints;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>Meta-batches (B trajectories per meta-update) and the in-process workers that run them.</summary>
public class MetaBatchTests
{
    private static MetaTrainOptions Quick(int iterations) => new()
    {
        Tasks = ["quadratic"],
        Iterations = iterations,
        TrajectorySteps = 10,
        TrajectoryStepsMax = 14,   // slots of one meta-batch differ in length: the last rounds have fewer trajectories
        Unroll = 4,
        MetaLearningRate = 3e-3,
        Tricks = new TrickOptions { ConvexDimension = 3 },
        CheckpointEvery = 2,
        ValidateEvery = 2,
        ValidationRuns = 2,
        Seed = 3,
    };

    private const string Spec = "rnnprop:hidden=4,init-seed=2";

    /// <summary>Θ after training, and the log without its timing column.</summary>
    private static (float[] Theta, string[] Log) Train(MetaTrainOptions options, Backend backend = Backend.Auto)
    {
        using var dir = new TempDir();
        using var learned = LearnedRegistry.Create(Spec);
        using (var trainer = new MetaTrainer(learned, options, TaskContext.Cpu, dir.Path, backend: backend))
            trainer.Train();
        return (Theta(learned), Log(dir.Path));
    }

    private static float[] Theta(LearnedOptimizer learned)
    {
        using var flat = learned.Flatten();
        return flat.data<float>().ToArray();
    }

    private static string[] Log(string folder) =>
        File.ReadLines(Path.Combine(folder, MetaTrainer.LogFile)).Select(l => string.Join(",", l.Split(',').Where((_, i) => i != 7))).ToArray();

    [Fact]
    public void A_meta_batch_of_one_is_the_single_trajectory_trainer_bit_for_bit()
    {
        var absent = Train(Quick(4));
        var one = Train(Quick(4) with { MetaBatch = 1, Workers = 1 });
        Assert.Equal(absent.Theta, one.Theta);
        Assert.Equal(absent.Log, one.Log);

        // The single-trajectory algorithm written out: trajectory i seeded by Derive(seed, 1000 + i), one Adam step per unroll.
        var o = Quick(4);
        using var learned = LearnedRegistry.Create(Spec);
        var engine = Backends.CreateEngine(learned, Backend.Auto);
        var training = new TrainingTask([(TaskRegistry.Create("quadratic", TaskContext.Cpu), 1.0)], o.Tricks, TaskContext.Cpu);
        using var meta = new MetaOptimizer(learned.Parameters.Select(p => p.Parameter).ToList(), o.MetaLearningRate, o.ClipNorm);
        for (int i = 0; i < o.Iterations; i++)
        {
            long seed = Seeds.Derive(o.Seed, 1000 + i);
            int length = new Random(unchecked((int)Seeds.Derive(seed, 20))).Next(o.TrajectorySteps, o.TrajectoryStepsMax!.Value + 1);
            using var trajectory = MetaTrajectories.Start(learned, training.Sample(seed), engine);
            while (trajectory.StepsTaken < length)
            {
                using var outcome = trajectory.Unroll(Math.Min(o.Unroll, length - trajectory.StepsTaken), o.MetaLoss);
                Assert.True(outcome.Finite);
                meta.Step(outcome.MetaGradient!);
            }
        }
        Assert.Equal(Theta(learned), absent.Theta);
    }

    public static TheoryData<Backend> BackendCases() => [Backend.Engine, Backend.Reference];

    [Theory]
    [MemberData(nameof(BackendCases))]
    public void Theta_does_not_depend_on_the_number_of_workers(Backend backend)
    {
        var one = Train(Quick(3) with { MetaBatch = 4, Workers = 1 }, backend);
        var two = Train(Quick(3) with { MetaBatch = 4, Workers = 2 }, backend);
        var three = Train(Quick(3) with { MetaBatch = 4, Workers = 3 }, backend);   // uneven: slots 0 and 3 share a worker
        Assert.Equal(one.Theta, two.Theta);
        Assert.Equal(one.Theta, three.Theta);
        Assert.Equal(one.Log, two.Log);
        Assert.Equal(one.Log, three.Log);
        Assert.NotEqual(one.Theta, Train(Quick(3), backend).Theta);   // and the meta-batch did change the run
    }

    [Fact]
    public void A_resumed_meta_batch_run_continues_exactly_with_any_number_of_workers()
    {
        var straight = Train(Quick(4) with { MetaBatch = 3, Workers = 2 });
        using var dir = new TempDir();
        using (var learned = LearnedRegistry.Create(Spec))
        using (var trainer = new MetaTrainer(learned, Quick(2) with { MetaBatch = 3, Workers = 2 }, TaskContext.Cpu, dir.Path))
            trainer.Train();
        using (var resumed = MetaTrainer.Resume(dir.Path, TaskContext.Cpu, new ResumeChanges { Iterations = 4, Workers = 1 }))
        {
            Assert.Equal(3, resumed.Options.MetaBatch);
            Assert.Equal(1, resumed.Options.Workers);
            resumed.Train();
            Assert.Equal(straight.Theta, Theta(resumed.Learned));
        }
        Assert.Equal(straight.Log, Log(dir.Path));
        Assert.Contains("\"MetaBatch\": 3", File.ReadAllText(Path.Combine(dir.Path, "options.json")));
    }

    [Fact]
    public void A_checkpoint_from_before_meta_batches_resumes_with_one_trajectory_and_one_worker()
    {
        using var dir = new TempDir();
        using (var learned = LearnedRegistry.Create(Spec))
        using (var trainer = new MetaTrainer(learned, Quick(2), TaskContext.Cpu, dir.Path))
            trainer.Train();
        // Rewrite the trainer state as an older version wrote it: no MetaBatch, Workers or DroppedGradients.
        string last = Path.Combine(dir.Path, MetaTrainer.LastFile);
        var contents = SafeTensors.Load(last);
        var trainerState = JsonNode.Parse(contents.Metadata["trainer"])!.AsObject();
        trainerState.Remove("DroppedGradients");
        trainerState["Options"]!.AsObject().Remove("MetaBatch");
        trainerState["Options"]!.AsObject().Remove("Workers");
        var metadata = contents.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
        metadata["trainer"] = trainerState.ToJsonString();
        SafeTensors.Save(last, contents.Tensors, metadata);
        Assert.DoesNotContain("MetaBatch", SafeTensors.Load(last).Metadata["trainer"]);

        using var resumed = MetaTrainer.Resume(dir.Path, TaskContext.Cpu, new ResumeChanges { Iterations = 3 });
        Assert.Equal(1, resumed.Options.MetaBatch);
        Assert.Equal(1, resumed.Options.Workers);
        Assert.Equal(3, resumed.Train().Iterations);
    }

    [Fact]
    public void Trajectory_seeds_keep_slot_zero_and_differ_per_slot_and_iteration()
    {
        Assert.Equal(Seeds.Derive(7, 1000 + 5), MetaTrainer.TrajectorySeed(7, 5, 0));
        var seeds = Enumerable.Range(0, 3).SelectMany(i => Enumerable.Range(0, 8).Select(b => MetaTrainer.TrajectorySeed(7, i, b))).ToList();
        Assert.Equal(seeds.Count, seeds.Distinct().Count());
        Assert.Equal(seeds, Enumerable.Range(0, 3).SelectMany(i => Enumerable.Range(0, 8).Select(b => MetaTrainer.TrajectorySeed(7, i, b))));
    }

    [Fact]
    public void The_round_mean_leaves_out_diverged_trajectories_and_non_finite_meta_gradients()
    {
        using var scope = NewDisposeScope();
        UnrollOutcome Finite(params float[] g) => new(1.0, [1.0], tensor(g));
        var diverged = new UnrollOutcome(double.NaN, [double.NaN], null);
        var nonFinite = Finite(1, float.PositiveInfinity);
        var round = MetaTrainer.CombineMetaGradients([Finite(1, 2), diverged, null, nonFinite, Finite(3, 6)]);
        Assert.Equal(3, round.Finite);   // the diverged one and the one that sat the round out have no loss
        Assert.Equal(1, round.Dropped);
        Assert.Equal(new[] { 2f, 4f }, round.Mean!.data<float>().ToArray());

        var single = Finite(5, 7);
        Assert.Same(single.MetaGradient, MetaTrainer.CombineMetaGradients([diverged, single]).Mean);   // one gradient: itself, unscaled
        var none = MetaTrainer.CombineMetaGradients([nonFinite, diverged]);
        Assert.Null(none.Mean);   // a skipped update
        Assert.Equal((1, 1), (none.Finite, none.Dropped));
        Assert.Equal(0, MetaTrainer.CombineMetaGradients([diverged, null]).Finite);   // no update at all
    }

    [Fact]
    public void Diverging_trajectories_of_a_meta_batch_are_counted_and_do_not_reach_theta()
    {
        // Half the training distribution starts at |w| ~ 1e30, where f overflows float32 whatever the rule does; the
        // task each slot draws is a function of (seed, iteration, slot) only, so which meta-batches are partly diverged
        // does not depend on the machine (random draws of libtorch, e.g. the quadratics' W, may differ between CPUs).
        var options = Quick(3) with
        {
            Tasks = ["quadratic", "quadratic:init=normal:1e30"],
            MetaBatch = 4,
            Workers = 2,
            ValidateEvery = 3,
            Selection = Selection.TrainAverage,
        };
        using var dir = new TempDir();
        using var learned = LearnedRegistry.Create("hyperadam:j=4");
        using var trainer = new MetaTrainer(learned, options, TaskContext.Cpu, dir.Path);
        var result = trainer.Train();
        var diverged = Log(dir.Path).Skip(1).Select(l => int.Parse(l.Split(',')[4], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(result.DivergedTrajectories, diverged.Sum());
        Assert.Contains(diverged, d => d is > 0 and < 4);   // a partly diverged meta-batch
        Assert.True(result.MetaUpdates > result.SkippedUpdates);   // the finite slots' updates were applied
        var theta = Theta(learned);
        Assert.All(theta, v => Assert.True(float.IsFinite(v)));
        using var untrained = LearnedRegistry.Create("hyperadam:j=4");
        Assert.NotEqual(Theta(untrained), theta);
    }

    [Fact]
    public void Bad_meta_batch_options_are_explained()
    {
        var o = Quick(1);
        Assert.Equal("meta-batch must be >= 1 (got 0)", Assert.Throws<L2OException>(() => (o with { MetaBatch = 0 }).Validate()).Message);
        Assert.Equal("workers must be >= 1 (got 0)", Assert.Throws<L2OException>(() => (o with { Workers = 0 }).Validate()).Message);
        Assert.Contains("must not exceed meta-batch (2)", Assert.Throws<L2OException>(() => (o with { MetaBatch = 2, Workers = 3 }).Validate()).Message);
        Assert.Equal(1, MetaWorkers.ThreadsPerWorker(2, 4));
        Assert.Equal(4, MetaWorkers.ThreadsPerWorker(16, 4));
        Assert.Equal(5, MetaWorkers.ThreadsPerWorker(16, 3));
    }
}
