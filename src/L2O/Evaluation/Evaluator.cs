using System.Diagnostics;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Evaluation;

/// <summary>How to evaluate an optimizer on a task.</summary>
public sealed record EvalSettings
{
    /// <summary>Optimization steps T per run (the papers: 100).</summary>
    public int Steps { get; init; } = 100;
    /// <summary>Independent runs R, each with its own initial point and minibatches (the papers: 100).</summary>
    public int Runs { get; init; } = 100;
    /// <summary>Base seed; run r uses seed + r, so different optimizers see the same starts and batches.</summary>
    public long Seed { get; init; }
    /// <summary>A run whose loss exceeds this (or is NaN/Inf) is stopped and counted as diverged; null = the task's default.</summary>
    public double? DivergenceThreshold { get; init; }
    /// <summary>Record w_t at every step (only for tasks with at most <see cref="TrajectoryLimit"/> parameters).</summary>
    public bool RecordTrajectory { get; init; }
    public int TrajectoryLimit { get; init; } = 5000;
    /// <summary>Compute test metrics at the final parameters (classification and LSTM tasks).</summary>
    public bool TestMetrics { get; init; } = true;
    /// <summary>
    /// Compute the optimizee's loss and gradient with the engine's own kernels where it has them (MLP tasks in float32 on
    /// the CPU, <see cref="Engine.EngineOptions.DirectGradient"/>), equal to autograd to float rounding; false = TorchSharp's
    /// autograd for every task.
    /// </summary>
    public bool DirectGradient { get; init; } = true;

    public void Validate()
    {
        if (Steps < 1) throw new L2OException($"steps must be >= 1 (got {Steps})");
        if (Runs < 1) throw new L2OException($"runs must be >= 1 (got {Runs})");
        if (DivergenceThreshold is double d && !(d > 0)) throw new L2OException($"divergence threshold must be > 0 (got {d})");
    }

    /// <summary>Also checks what depends on the task: a trajectory is recorded only for small tasks, and asking for more is an error, not a silent skip.</summary>
    public void Validate(ITask task)
    {
        Validate();
        if (RecordTrajectory && task.Dimension > TrajectoryLimit)
            throw new L2OException($"--trajectory records at most {TrajectoryLimit} parameters; {task.Name} has {task.Dimension}");
    }
}

/// <summary>Everything measured in one run.</summary>
/// <param name="Losses">Minibatch loss at w_0 … w_T (length T+1); entries after divergence are NaN.</param>
/// <param name="DivergedAt">Step whose loss was non-finite or above the threshold, or null.</param>
/// <param name="Trajectory">w_0 … w_T when recorded.</param>
public sealed record RunRecord(int Run, long Seed, double[] Losses, int? DivergedAt, TestMetrics? Test,
    double UpdateSeconds, double StepSeconds, int StepsTaken, float[][]? Trajectory)
{
    public bool Diverged => DivergedAt is not null;
}

/// <summary>Progress of an evaluation: run index and step within it.</summary>
public readonly record struct EvalProgress(string Optimizer, int Run, int Runs, int Step, int Steps);

/// <summary>
/// Runs an update rule on a task for R seeded runs of T steps and records every loss.
/// Each step: draw a minibatch, take loss and gradient at w_t, record the loss, then
/// w_{t+1} = w_t + Δ from the rule (under no_grad). The loss at w_T is recorded on a fresh batch.
/// </summary>
public static class Evaluator
{
    public static OptimizerResult Evaluate(ITask task, IUpdateRule rule, EvalSettings settings, string? spec = null,
        IProgress<EvalProgress>? progress = null, CancellationToken cancel = default)
    {
        settings.Validate(task);
        double threshold = settings.DivergenceThreshold ?? task.DefaultDivergenceThreshold;
        var runs = new List<RunRecord>(settings.Runs);
        for (int r = 0; r < settings.Runs; r++)
        {
            cancel.ThrowIfCancellationRequested();
            runs.Add(RunOnce(task, rule, settings, r, threshold, progress, cancel));
        }
        return OptimizerResult.From(rule.Name, spec ?? rule.Name, runs, threshold, settings.Steps);
    }

    /// <summary>One seeded run; tensors of each step are released at the end of the step.</summary>
    /// <param name="observe">Called after each update with (t, g_t, Δ_t), inside the step's dispose scope.</param>
    public static RunRecord RunOnce(ITask task, IUpdateRule rule, EvalSettings settings, int run, double threshold,
        IProgress<EvalProgress>? progress = null, CancellationToken cancel = default, Action<int, Tensor, Tensor>? observe = null)
    {
        long seed = settings.Seed + run;
        int T = settings.Steps;
        var losses = new double[T + 1];
        Array.Fill(losses, double.NaN);
        bool record = settings.RecordTrajectory && task.Dimension <= settings.TrajectoryLimit;
        var trajectory = record ? new List<float[]>(T + 1) : null;
        int? divergedAt = null;
        var updateWatch = new Stopwatch();
        var stepWatch = new Stopwatch();
        int taken = 0;

        using var optimizee = task.Sample(seed);
        var executor = settings.DirectGradient ? new Engine.EngineGradients(Engine.EngineOptions.Default) : null;
        Tensor w;
        using (NewDisposeScope()) w = optimizee.InitialParameters.detach().clone().DetachFromDisposeScope();
        var state = InitState(rule, w);
        try
        {
            for (int t = 0; t <= T; t++)
            {
                cancel.ThrowIfCancellationRequested();
                stepWatch.Start();
                using var scope = NewDisposeScope();
                var batch = optimizee.NextBatch();
                var grad = empty_like(w);
                double value = optimizee.LossAndGradient(w, batch, grad, executor);
                trajectory?.Add(w.to(ScalarType.Float32).cpu().data<float>().ToArray());
                losses[t] = value;
                if (!double.IsFinite(value) || value > threshold)
                {
                    stepWatch.Stop();
                    divergedAt = t;
                    losses[t] = double.IsFinite(value) ? value : double.NaN;
                    break;
                }
                if (t == T) { stepWatch.Stop(); break; }

                updateWatch.Start();
                Tensor next;
                OptimizerState nextState;
                using (no_grad())
                {
                    var step = rule.Step(grad, w, state);
                    observe?.Invoke(t, grad, step.Update);
                    next = w.Plus(step.Update).MoveToOuterDisposeScope();
                    nextState = step.State;
                    nextState.MoveToOuterDisposeScope();
                }
                updateWatch.Stop();
                stepWatch.Stop();

                w.Dispose();
                state.DisposeReplaced(nextState);
                w = next.DetachFromDisposeScope();
                state = nextState;
                state.DetachFromDisposeScope();
                taken++;
                Runtime.NativeGarbage.AfterStep(t);
                progress?.Report(new EvalProgress(rule.Name, run, settings.Runs, t + 1, T));
            }

            TestMetrics? test = null;
            if (settings.TestMetrics && divergedAt is null)
                test = optimizee.Test(w);
            return new RunRecord(run, seed, losses, divergedAt, test,
                updateWatch.Elapsed.TotalSeconds, stepWatch.Elapsed.TotalSeconds, taken, trajectory?.ToArray());
        }
        finally
        {
            w.Dispose();
            state.DisposeReplaced(null);
        }
    }

    private static OptimizerState InitState(IUpdateRule rule, Tensor w)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var s = rule.Init(w);
        s.MoveToOuterDisposeScope();
        s.DetachFromDisposeScope();
        return s;
    }
}
