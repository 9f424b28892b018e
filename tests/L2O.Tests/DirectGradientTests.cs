using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>The engine's MLP loss and gradient (<see cref="MlpGradient{T}"/>) against TorchSharp's autograd.</summary>
public class DirectGradientTests
{
    private static readonly string[] Specs =
    [
        "mlp:batch=16",                                     // the base MLP's shapes (784-20-10, sigmoid), a short batch
        "mlp:layers=3,hidden=7,batch=13,activation=relu",   // widths and a batch that fill no vector
        "mlp:layers=2,hidden=33,batch=9,activation=elu",
        "mlp:layers=1,hidden=5,batch=8,activation=tanh",
        "mlp:layers=0,batch=8",                             // softmax regression: no hidden layer
    ];

    /// <summary>Counts the calls the wrapped executor took, so a comparison cannot pass by comparing autograd with itself.</summary>
    private sealed class Counting(IGradientExecutor inner) : IGradientExecutor
    {
        public int Taken { get; private set; }

        public double? CrossEntropy(IClassifierModel model, Tensor parameters, Batch batch, Tensor gradient)
        {
            var value = inner.CrossEntropy(model, parameters, batch, gradient);
            if (value is not null) Taken++;
            return value;
        }
    }

    public static TheoryData<SimdWidth, string> Cases()
    {
        var data = new TheoryData<SimdWidth, string>();
        foreach (var width in new[] { SimdWidth.Avx512, SimdWidth.Avx2, SimdWidth.Scalar })
            foreach (var spec in Specs)
                data.Add(width, spec);
        return data;
    }

    /// <summary>Parameters away from the start (so ReLU and ELU units sit on both sides of 0), float32.</summary>
    private static Tensor Point(IOptimizee f, long seed)
    {
        using var gen = new Generator((ulong)seed);
        return (f.InitialParameters + 0.3 * randn(f.InitialParameters.shape, generator: gen)).to(ScalarType.Float32).contiguous();
    }

    [WidthTheory]
    [MemberData(nameof(Cases))]
    public void MatchesAutogradToFloatRounding(SimdWidth width, string spec)
    {
        using var scope = NewDisposeScope();
        var task = TaskRegistry.Create(spec);
        using var f = task.Sample(4);
        var executor = new Counting(new EngineGradients(new EngineOptions { Width = width }));
        for (int step = 0; step < 3; step++)
        {
            var w = Point(f, step);
            var batch = f.NextBatch();
            var (loss, grad) = Autodiff.LossAndGradient(f, w, batch);
            var mine = empty(w.shape, ScalarType.Float32);
            double value = f.LossAndGradient(w, batch, mine, executor);
            Assert.Equal(loss.ToDouble(), value, 1e-5 * Math.Max(1, Math.Abs(value)));
            double scale = grad.abs().max().ToDouble();
            double err = Numeric.MaxAbsDiff(mine, grad);
            Assert.True(err <= 2e-5 * scale, $"{spec} {width}: max |Δ∇| {err:E2} against max |∇| {scale:E2}");
        }
        Assert.Equal(3, executor.Taken);
    }

    /// <summary>A NaN parameter gives a non-finite loss, as under autograd, so divergence is seen (ReLU's max must not swallow it).</summary>
    [WidthTheory]
    [MemberData(nameof(Cases))]
    public void ANaNParameterGivesANonFiniteLoss(SimdWidth width, string spec)
    {
        using var scope = NewDisposeScope();
        using var f = TaskRegistry.Create(spec).Sample(4);
        var w = Point(f, 0);
        w[0] = float.NaN;   // the first weight of the first layer
        var executor = new Counting(new EngineGradients(new EngineOptions { Width = width }));
        Assert.False(double.IsFinite(f.LossAndGradient(w, f.NextBatch(), empty_like(w), executor)));
        Assert.Equal(1, executor.Taken);
    }

    /// <summary>The executor takes float32 MLPs on the CPU and declines the rest, writing nothing, which autograd then computes.</summary>
    [Fact]
    public void OnlyFloat32MlpsOnTheCpuAreTakenAndTheOptionTurnsItOff()
    {
        using var scope = NewDisposeScope();
        var executor = new EngineGradients(new EngineOptions());
        var mlp = (MlpModel)((ClassifierTask)TaskRegistry.Create("mlp:batch=8")).Model;
        using var f = TaskRegistry.Create("mlp:batch=8").Sample(0);
        var batch = f.NextBatch();
        var w = f.InitialParameters;
        Assert.NotNull(executor.CrossEntropy(mlp, w, batch, empty_like(w)));
        var untouched = full_like(w, 7f);
        Assert.Null(executor.CrossEntropy(mlp, w.to(ScalarType.Float64), batch, empty_like(w).to(ScalarType.Float64)));
        Assert.Null(executor.CrossEntropy(mlp, w, batch with { Targets = batch.Targets!.to(ScalarType.Int32) }, untouched));
        Assert.Null(executor.CrossEntropy(mlp, w, batch with { Inputs = batch.Inputs!.to(ScalarType.Float64) }, untouched));
        Assert.Equal(0, Numeric.MaxAbsDiff(untouched, full_like(w, 7f)));
        var cnn = ((ClassifierTask)TaskRegistry.Create("cnn1:batch=8")).Model;
        Assert.Null(executor.CrossEntropy(cnn, zeros(cnn.Layout.Count), batch, zeros(cnn.Layout.Count)));
        Assert.Null(EngineGradients.For(new EngineOptions { DirectGradient = false }));
    }

    /// <summary>The executor reads and writes slices of the whole vector (the convex combination's parts) through their own data pointer.</summary>
    [Fact]
    public unsafe void ASliceHasItsOwnDataPointer()
    {
        using var t = arange(10, dtype: ScalarType.Float32);
        using var slice = t.narrow(0, 3, 4);
        Assert.True(TensorMemory.Floats(slice) == TensorMemory.Floats(t) + 3);
        Assert.Equal(3f, *TensorMemory.Floats(slice));
    }

    /// <summary>The training tricks' wrappers pass the executor through: Random Scaling and the convex combination around an MLP.</summary>
    [Fact]
    public void TheTrainingTricksPassItThrough()
    {
        using var scope = NewDisposeScope();
        var training = new L2O.Training.TrainingTask([(TaskRegistry.Create("mlp:batch=16"), 1.0)], new L2O.Training.TrickOptions(), TaskContext.Cpu);
        using var f = training.Sample(5);
        var w = Point(f, 5);
        var batch = f.NextBatch();
        var (loss, grad) = Autodiff.LossAndGradient(f, w, batch);
        var mine = empty_like(w);
        var executor = new Counting(new EngineGradients(new EngineOptions()));
        double value = f.LossAndGradient(w, batch, mine, executor);
        Assert.Equal(1, executor.Taken);
        Assert.Equal(loss.ToDouble(), value, 1e-5 * Math.Abs(value));
        double err = Numeric.MaxAbsDiff(mine, grad), scale = grad.abs().max().ToDouble();
        Assert.True(err <= 2e-5 * scale, $"max |Δ∇| {err:E2} against max |∇| {scale:E2}");
    }

    /// <summary>Evaluation takes the direct gradient by default, and its losses match autograd's over a run.</summary>
    [Fact]
    public void AnEvaluationMatchesTheAutogradOne()
    {
        var task = TaskRegistry.Create("mlp:layers=2,hidden=12,batch=16,activation=elu");
        var adam = OptimizerRegistry.Create("adam:lr=0.01");
        var settings = new L2O.Evaluation.EvalSettings { Steps = 30, Runs = 2, TestMetrics = false };
        Assert.True(settings.DirectGradient);
        var direct = L2O.Evaluation.Evaluator.Evaluate(task, adam, settings);
        var autograd = L2O.Evaluation.Evaluator.Evaluate(task, adam, settings with { DirectGradient = false });
        for (int r = 0; r < 2; r++)
            for (int t = 0; t <= 30; t++)
                Assert.Equal(autograd.Runs[r].Losses[t], direct.Runs[r].Losses[t], 1e-4 * autograd.Runs[r].Losses[t]);
        // Two different computations: they round differently somewhere (equal throughout would mean one path ran twice).
        Assert.Contains(Enumerable.Range(0, 2), r => !autograd.Runs[r].Losses.SequenceEqual(direct.Runs[r].Losses));
    }

    /// <summary>A meta-training unroll on the base MLP gives the same losses and meta-gradient with either gradient.</summary>
    [Fact]
    public void AFusedUnrollMatchesTheAutogradOne()
    {
        using var scope = NewDisposeScope();
        using var learned = LearnedRegistry.Create("hyperadam:init-seed=2", new BuildContext(CPU, ScalarType.Float32));
        var task = TaskRegistry.Create("mlp:batch=32");
        UnrollOutcome Run(bool direct)
        {
            var options = new EngineOptions { Threads = 2, Layout = CellLayout.Lanes, DirectGradient = direct };
            var engine = new FusedEngine(FusedCells.Create(learned, SimdSelect.Resolve(SimdWidth.Auto), 512, CellLayout.Lanes)!, options);
            using var trajectory = new FusedTrajectory(learned, engine, task.Sample(3));
            trajectory.Unroll(5, MetaLoss.Mean).Dispose();
            return trajectory.Unroll(5, MetaLoss.Mean);
        }
        using var autograd = Run(false);
        using var direct = Run(true);
        Assert.True(autograd.Finite && direct.Finite);
        for (int s = 0; s < 5; s++) Assert.Equal(autograd.Losses[s], direct.Losses[s], 1e-4 * autograd.Losses[s]);
        Assert.False(autograd.Losses.SequenceEqual(direct.Losses));   // two computations, not one run twice
        double err = ((direct.MetaGradient! - autograd.MetaGradient!).norm() / autograd.MetaGradient!.norm()).ToDouble();
        Assert.True(err <= 1e-3, $"relative meta-gradient difference {err:E2}");
    }
}
