using L2O.Learned;

namespace L2O.Training;

/// <summary>How the best checkpoint is chosen.</summary>
public enum Selection
{
    /// <summary>Lowest validation score (mean loss on the validation task; DMoptimizer, HyperAdam).</summary>
    Validation,
    /// <summary>Lowest moving average of the training loss, decay 0.9 (RNNprop §5).</summary>
    TrainAverage,
}

/// <summary>
/// Settings of a meta-training run. Defaults are the papers' (100-step trajectories in unrolls of
/// 20, Adam at 1e-4, both tricks); <see cref="LearnedOptimizer.TrainingDefaults"/> supplies the
/// method-specific ones when the CLI is not told otherwise.
/// </summary>
public sealed record MetaTrainOptions
{
    /// <summary>Training tasks as specifications, optionally weighted: <c>mlp</c>, <c>mlp@2</c>.</summary>
    public IReadOnlyList<string> Tasks { get; init; } = ["mlp"];
    /// <summary>Validation task (no tricks); null = the first training task.</summary>
    public string? ValidationTask { get; init; }
    /// <summary>Meta-iterations; each runs <see cref="MetaBatch"/> trajectories.</summary>
    public int Iterations { get; init; } = 1000;
    /// <summary>
    /// Trajectories per meta-iteration, B. They run side by side at the same Θ, and after each unroll
    /// the mean of their meta-gradients is one meta-update. Trajectory b of iteration i draws
    /// everything (task instance, scalings, convex function, length, minibatches) from
    /// <see cref="MetaTrainer.TrajectorySeed"/>(seed, i, b); b = 0 is the trajectory a run with B = 1
    /// draws, and B = 1 is the single-trajectory trainer exactly. A trajectory whose loss becomes
    /// non-finite is abandoned; a finite-loss trajectory whose meta-gradient is not finite is left out
    /// of that unroll's mean (counted); an unroll with no finite meta-gradient is a skipped update.
    /// </summary>
    public int MetaBatch { get; init; } = 1;
    /// <summary>
    /// In-process workers that run the <see cref="MetaBatch"/> trajectories (slot b on worker b mod N),
    /// each with its own copy of Θ and its own engine with ⌊threads / N⌋ threads; their meta-gradients
    /// are added in slot order, so Θ does not depend on N (which may change on resume).
    /// </summary>
    public int Workers { get; init; } = 1;
    /// <summary>Trajectory length T in optimizee steps.</summary>
    public int TrajectorySteps { get; init; } = 100;
    /// <summary>When set, T is drawn uniformly from [TrajectorySteps, TrajectoryStepsMax] per trajectory (the thesis's random problem resets).</summary>
    public int? TrajectoryStepsMax { get; init; }
    /// <summary>Also end a trajectory early when the loss falls below 1e-15 or ‖w‖ exceeds 1e4 (thesis code).</summary>
    public bool ResetOnExtremes { get; init; }
    /// <summary>Steps per truncated unroll U.</summary>
    public int Unroll { get; init; } = 20;
    public MetaLoss MetaLoss { get; init; } = MetaLoss.Mean;
    public double MetaLearningRate { get; init; } = 1e-4;
    /// <summary>When set, the meta learning rate decays linearly to this value at the last iteration.</summary>
    public double? MetaLearningRateFinal { get; init; }
    /// <summary>Clip the meta-gradient to this L2 norm; null = no clipping (the papers).</summary>
    public double? ClipNorm { get; init; }
    public TrickOptions Tricks { get; init; } = new();
    public long Seed { get; init; }
    /// <summary>Write last.safetensors (resumable) every this many iterations.</summary>
    public int CheckpointEvery { get; init; } = 50;
    /// <summary>Validate every this many iterations (0 = never).</summary>
    public int ValidateEvery { get; init; } = 50;
    public int ValidationRuns { get; init; } = 10;
    /// <summary>Steps of each validation run; null = <see cref="TrajectorySteps"/>.</summary>
    public int? ValidationSteps { get; init; }
    public double AverageDecay { get; init; } = 0.9;
    public Selection Selection { get; init; } = Selection.Validation;

    public void Validate()
    {
        if (Tasks.Count == 0) throw new L2OException("give at least one training task");
        if (Iterations < 1) throw new L2OException($"iterations must be >= 1 (got {Iterations})");
        if (MetaBatch < 1) throw new L2OException($"meta-batch must be >= 1 (got {MetaBatch})");
        if (Workers < 1) throw new L2OException($"workers must be >= 1 (got {Workers})");
        if (Workers > MetaBatch) throw new L2OException($"workers ({Workers}) must not exceed meta-batch ({MetaBatch}): a worker runs whole trajectories of the meta-batch");
        if (TrajectorySteps < 1) throw new L2OException($"trajectory steps must be >= 1 (got {TrajectorySteps})");
        if (TrajectoryStepsMax is int max && max < TrajectorySteps) throw new L2OException($"trajectory-steps-max ({max}) must be >= trajectory steps ({TrajectorySteps})");
        if (Unroll < 1) throw new L2OException($"unroll must be >= 1 (got {Unroll})");
        if (Unroll < 2 && MetaLoss == MetaLoss.MeanBefore)
            throw new L2OException("--meta-loss mean-before needs --unroll >= 2: with one step its only term is the constant f(w_0)");
        if (!(MetaLearningRate > 0)) throw new L2OException($"meta learning rate must be > 0 (got {MetaLearningRate})");
        if (MetaLearningRateFinal is double f && !(f >= 0)) throw new L2OException($"final meta learning rate must be >= 0 (got {f})");
        if (MetaLearningRateFinal is double g && g > MetaLearningRate)
            throw new L2OException($"--meta-lr-final ({g}) must not exceed --meta-lr ({MetaLearningRate}): the rate decays to it");
        if (ClipNorm is double c && !(c > 0)) throw new L2OException($"clip norm must be > 0 (got {c})");
        if (CheckpointEvery < 1) throw new L2OException($"checkpoint-every must be >= 1 (got {CheckpointEvery})");
        if (ValidateEvery < 0) throw new L2OException($"validate-every must be >= 0 (got {ValidateEvery})");
        if (ValidationRuns < 1) throw new L2OException($"validation runs must be >= 1 (got {ValidationRuns})");
        if (ValidationSteps is int vs && vs < 1) throw new L2OException($"validation steps must be >= 1 (got {vs})");
        if (!(AverageDecay is >= 0 and < 1)) throw new L2OException($"average decay must be in [0, 1) (got {AverageDecay})");
        if (Tricks.RandomScaling && (!(Tricks.TaskScaleBound >= 0) || !(Tricks.ConvexScaleBound >= 0))) throw new L2OException("random-scaling bounds must be >= 0");
        if (Tricks.ConvexCombination && Tricks.ConvexDimension < 1) throw new L2OException("convex dimension must be >= 1");
        if (Tricks.ConvexInit is string init) L2O.Tasks.Initializer.Parse(init);
        if (Selection == Selection.Validation && ValidateEvery == 0) throw new L2OException("selection by validation needs validate-every > 0");
    }
}
