using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>
/// The lanes cells (<see cref="CellLayout.Lanes"/>, coordinates along the vector lanes: HyperAdam, and RNNprop and
/// DMoptimizer's recurrent cell) against the float64 TorchSharp reference and against the rows cells, on every
/// vector width, for J and H that do and do not divide the vector width and p that is not a multiple of 16.
/// </summary>
public class LaneEngineTests(ITestOutputHelper output)
{
    [WidthTheory]
    [InlineData("hyperadam:j=20", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20", 1, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=1", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,lstm=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,preprocess=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,input-norm=rms", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,coupled=true", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20,coupled=true,input-norm=rms", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=1,coupled=true,lstm=false,preprocess=false", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,gamma-min=0.99", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20,gamma-min=0.9,coupled=true,input-norm=rms", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,gamma-min=0.99,coupled=true", 37, SimdWidth.Scalar)]
    [InlineData("hyperadam:j=5,field-clip=0.7", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,field-clip=0.7,coupled=true", 37, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=20", 1000, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=5,lstm=false,coupled=true", 37, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=5,preprocess=false,input-norm=rms", 37, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Scalar)]
    [InlineData("hyperadam:j=1,lstm=false,preprocess=false", 37, SimdWidth.Scalar)]
    [InlineData("hyperadam:j=5,coupled=true,input-norm=rms", 37, SimdWidth.Scalar)]
    [InlineData("rnnprop", 1, SimdWidth.Avx512)]
    [InlineData("rnnprop", 1000, SimdWidth.Avx512)]
    [InlineData("rnnprop:hidden=7,layers=1", 37, SimdWidth.Avx512)]
    [InlineData("rnnprop:hidden=5,layers=3", 37, SimdWidth.Avx2)]
    [InlineData("rnnprop", 37, SimdWidth.Scalar)]
    [InlineData("dmoptimizer", 7, SimdWidth.Avx512)]
    [InlineData("dmoptimizer", 1000, SimdWidth.Avx512)]
    [InlineData("dmoptimizer:preprocess=false,hidden=5,layers=3", 1000, SimdWidth.Avx512)]
    [InlineData("dmoptimizer", 37, SimdWidth.Avx2)]
    [InlineData("dmoptimizer:preprocess=false,layers=1", 37, SimdWidth.Scalar)]
    public void ForwardMatchesReferenceOver100Steps(string spec, int p, SimdWidth width)
    {
        double err = EngineTests.ForwardError(spec, p, 100, width, layout: CellLayout.Lanes);
        output.WriteLine($"{spec} p={p} {width}: max relative update error {err:E2}");
        Assert.True(err <= MethodCases.EngineToleranceOf(spec).Update, $"{spec} p={p} {width}: relative error {err:E2}");
    }

    [WidthTheory]
    [InlineData("hyperadam:j=20", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=1", 1000, SimdWidth.Avx512, MetaLoss.MeanLog)]
    [InlineData("hyperadam:j=5", 1000, SimdWidth.Avx512, MetaLoss.Last)]
    [InlineData("hyperadam:j=5", 1000, SimdWidth.Avx512, MetaLoss.MeanBefore)]
    [InlineData("hyperadam:j=5,lstm=false", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,preprocess=false", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,input-norm=rms", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,coupled=true", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20,coupled=true,input-norm=rms", 37, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=1,coupled=true,lstm=false", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,gamma-min=0.99", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20,gamma-min=0.9,coupled=true,input-norm=rms", 37, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,gamma-min=0.99,coupled=true", 37, SimdWidth.Avx2, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,field-clip=0.7", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20,field-clip=0.7", 37, SimdWidth.Scalar, MetaLoss.Mean)]
    // ε = 0: lanes past the last coordinate compute 0/√0 = NaN, which must not reach the sums over coordinates.
    [InlineData("hyperadam:j=5,eps=0", 37, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Avx2, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false,coupled=true", 37, SimdWidth.Avx2, MetaLoss.Mean)]
    [InlineData("hyperadam:j=7", 37, SimdWidth.Scalar, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,preprocess=false,input-norm=rms", 37, SimdWidth.Scalar, MetaLoss.Mean)]
    [InlineData("rnnprop", 1, SimdWidth.Avx512, MetaLoss.Last)]
    [InlineData("rnnprop", 1000, SimdWidth.Avx512, MetaLoss.Last)]
    [InlineData("rnnprop:layers=1,hidden=9", 7, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("rnnprop", 7, SimdWidth.Avx512, MetaLoss.MeanBefore)]
    [InlineData("rnnprop:hidden=5,layers=3", 37, SimdWidth.Avx2, MetaLoss.Mean)]
    [InlineData("rnnprop", 37, SimdWidth.Scalar, MetaLoss.Last)]
    [InlineData("dmoptimizer", 7, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("dmoptimizer", 1000, SimdWidth.Avx512, MetaLoss.Mean)]
    [InlineData("dmoptimizer:preprocess=false,layers=3,hidden=6", 1000, SimdWidth.Avx512, MetaLoss.MeanLog)]
    [InlineData("dmoptimizer", 37, SimdWidth.Avx2, MetaLoss.Mean)]
    [InlineData("dmoptimizer:preprocess=false,layers=1", 37, SimdWidth.Scalar, MetaLoss.Mean)]
    public void MetaGradientMatchesReference(string spec, int p, SimdWidth width, MetaLoss kind)
    {
        var (err, lossErr) = EngineMetaGradientTests.Compare(spec, dt => new SeparableQuadratic(p, 17, dt), 10, kind, width, layout: CellLayout.Lanes);
        output.WriteLine($"{spec} p={p} {width} {kind}: meta-gradient relative error {err:E2}, meta-loss {lossErr:E2}");
        var tolerance = MethodCases.EngineToleranceOf(spec);
        Assert.True(err <= tolerance.MetaGradient, $"{spec} p={p} {width}: meta-gradient relative error {err:E2}");
        Assert.True(lossErr <= tolerance.MetaLoss, $"{spec} p={p} {width}: meta-loss relative error {lossErr:E2}");
    }

    /// <summary>Blocks whose size is not a multiple of the vector width: every block ends in a part-filled vector.</summary>
    [WidthTheory]
    [InlineData("hyperadam:j=20", SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false,coupled=true", SimdWidth.Avx2)]
    [InlineData("rnnprop", SimdWidth.Avx512)]
    [InlineData("dmoptimizer", SimdWidth.Avx2)]
    public void OddBlockSizesMatchTheReference(string spec, SimdWidth width)
    {
        double err = EngineTests.ForwardError(spec, 1000, 30, width, layout: CellLayout.Lanes, blockRows: 20);
        var (metaErr, _) = EngineMetaGradientTests.Compare(spec, dt => new SeparableQuadratic(1000, 17, dt), 6, MetaLoss.Mean, width,
            layout: CellLayout.Lanes, blockRows: 20, unrolls: 1);
        output.WriteLine($"{spec} {width} block 20: update {err:E2}, meta-gradient {metaErr:E2}");
        var tolerance = MethodCases.EngineToleranceOf(spec);
        Assert.True(err <= tolerance.Update, $"update error {err:E2}");
        Assert.True(metaErr <= tolerance.MetaGradient, $"meta-gradient error {metaErr:E2}");
    }

    private static LearnedOptimizer Make(string spec) =>
        LearnedRegistry.Create($"{spec}{(spec.Contains(':') ? ',' : ':')}init-seed=9", new BuildContext(CPU, ScalarType.Float32));

    /// <summary>Worst relative difference of the update, over 100 steps, and of the meta-gradient of two unrolls, lanes against rows (both float32).</summary>
    private static (double Update, double MetaGradient) LanesAgainstRows(string spec, int p, SimdWidth width)
    {
        using var learned = Make(spec);
        var rows = EngineTests.Engine(learned, width, layout: CellLayout.Rows);
        var lanes = EngineTests.Engine(learned, width, layout: CellLayout.Lanes);
        var ruleRows = new FusedRule(learned, rows);
        var ruleLanes = new FusedRule(learned, lanes);
        double worst = 0;
        using (no_grad())
        {
            using var g = new Generator(21);
            var w = zeros(p);
            var sr = ruleRows.Init(w);
            var sl = ruleLanes.Init(w);
            for (int t = 0; t < 100; t++)
            {
                using var scope = NewDisposeScope();
                var grad = randn([p], generator: g) * (1 + 0.5 * Math.Sin(t)) * (rand([p], generator: g) * 3).exp();
                var r = ruleRows.Step(grad, w, sr);
                var l = ruleLanes.Step(grad, w, sl);
                double err = ((l.Update - r.Update).norm() / r.Update.norm().clamp_min(1e-30)).ToDouble();
                worst = Math.Max(worst, double.IsNaN(err) ? double.PositiveInfinity : err);
                r.State.MoveToOuterDisposeScope(); l.State.MoveToOuterDisposeScope();
                sr = r.State; sl = l.State;
            }
        }
        double worstMeta = 0;
        using var tr = new FusedTrajectory(learned, rows, new SeparableQuadratic(p, 3, ScalarType.Float32));
        using var tl = new FusedTrajectory(learned, lanes, new SeparableQuadratic(p, 3, ScalarType.Float32));
        for (int u = 0; u < 2; u++)
        {
            using var a = tr.Unroll(10, MetaLoss.Mean);
            using var b = tl.Unroll(10, MetaLoss.Mean);
            Assert.True(a.Finite && b.Finite);
            worstMeta = Math.Max(worstMeta, ((b.MetaGradient! - a.MetaGradient!).norm() / a.MetaGradient!.norm()).ToDouble());
        }
        return (worst, worstMeta);
    }

    [WidthTheory]
    [InlineData("hyperadam:j=20", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=1", 37, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,lstm=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,preprocess=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20,coupled=true,input-norm=rms", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=5,coupled=true,input-norm=rms", 1000, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=20", 37, SimdWidth.Scalar)]
    [InlineData("hyperadam:j=1,lstm=false,preprocess=false,coupled=true", 37, SimdWidth.Scalar)]
    [InlineData("hyperadam:j=20,gamma-min=0.99,coupled=true", 1000, SimdWidth.Avx512)]
    [InlineData("hyperadam:j=5,gamma-min=0.9", 37, SimdWidth.Avx2)]
    [InlineData("hyperadam:j=5,field-clip=0.7", 1000, SimdWidth.Avx512)]
    [InlineData("rnnprop", 1000, SimdWidth.Avx512)]
    [InlineData("rnnprop:hidden=7,layers=3", 37, SimdWidth.Avx2)]
    [InlineData("dmoptimizer", 1000, SimdWidth.Avx512)]
    [InlineData("dmoptimizer:preprocess=false", 37, SimdWidth.Scalar)]
    public void LanesMatchRows(string spec, int p, SimdWidth width)
    {
        var (update, meta) = LanesAgainstRows(spec, p, width);
        output.WriteLine($"{spec} p={p} {width}: lanes vs rows, update {update:E2}, meta-gradient {meta:E2}");
        Assert.True(update <= 1e-4, $"update difference {update:E2}");
        Assert.True(meta <= 1e-3, $"meta-gradient difference {meta:E2}");
    }

    // Thread-count independence, zero and NaN gradients: EnginePropertyTests, with CellLayout.Lanes rows.

    [Fact]
    public void LayoutOptionSelectsTheCell()
    {
        using var learned = Make("hyperadam:j=3");
        Assert.IsType<HyperAdamLanesCell<V1>>(EngineTests.Engine(learned, SimdWidth.Scalar, layout: CellLayout.Lanes).Cell);
        Assert.IsType<HyperAdamCell<V1>>(EngineTests.Engine(learned, SimdWidth.Scalar, layout: CellLayout.Rows).Cell);
        var engine = Backends.CreateEngine(learned, Optimizers.Backend.Engine, new EngineOptions { Width = SimdWidth.Scalar, Layout = CellLayout.Lanes })!;
        Assert.IsType<HyperAdamLanesCell<V1>>(engine.Cell);
        using var rnn = LearnedRegistry.Create("rnnprop:init-seed=1");
        Assert.IsType<RecurrentLanesCell<V1>>(EngineTests.Engine(rnn, SimdWidth.Scalar, layout: CellLayout.Lanes).Cell);
        Assert.IsType<RecurrentCell<V1>>(EngineTests.Engine(rnn, SimdWidth.Scalar, layout: CellLayout.Rows).Cell);
    }

    [Fact]
    public void WithoutALayoutEveryUseGetsLanes()
    {
        using var learned = Make("hyperadam:j=3");
        var auto = new EngineOptions { Width = SimdWidth.Scalar };
        Assert.Null(auto.Layout);
        Assert.Equal(CellLayout.Lanes, auto.ResolvedLayout);
        Assert.Equal("engine (scalar, 1 thread)", Backends.Describe(Backends.CreateEngine(learned, Optimizers.Backend.Engine, auto with { Threads = 1 })));
        Assert.Equal("engine (scalar, 2 threads)", Backends.Describe(Backends.CreateEngine(learned, Optimizers.Backend.Engine, auto with { Threads = 2 })));
        Assert.IsType<HyperAdamLanesCell<V1>>(Backends.CreateEngine(learned, Optimizers.Backend.Engine, auto)!.Cell);
        // Meta-training recomputes the forward in its backward: a lanes cell keeps nothing.
        Assert.False(Backends.CreateEngine(learned, Optimizers.Backend.Engine, auto)!.KeepsForward(1000, 20));
        Assert.Equal(512, auto.BlockRowsFor(CellLayout.Lanes));
        Assert.Equal(128, auto.BlockRowsFor(CellLayout.Rows));
        // A layout given explicitly holds for every use; the rows cell keeps its forward where it fits.
        var rows = auto with { Layout = CellLayout.Rows };
        Assert.IsType<HyperAdamCell<V1>>(Backends.CreateEngine(learned, Optimizers.Backend.Engine, rows)!.Cell);
        Assert.True(Backends.CreateEngine(learned, Optimizers.Backend.Engine, rows)!.KeepsForward(1000, 20));
        Assert.IsType<HyperAdamCell<V1>>(Assert.IsType<FusedRule>(Backends.Rule(learned, Optimizers.Backend.Engine, rows)).Engine.Cell);
        // The update rule (evaluation, the drop-in optimizer) is a forward use.
        var rule = Assert.IsType<FusedRule>(Backends.Rule(learned, Optimizers.Backend.Engine, auto));
        Assert.IsType<HyperAdamLanesCell<V1>>(rule.Engine.Cell);
        using var dm = LearnedRegistry.Create("dmoptimizer:init-seed=1");
        // The recurrent methods too: their lanes forward measured as fast as rows or faster (docs/performance.md).
        Assert.IsType<RecurrentLanesCell<V1>>(Backends.CreateEngine(dm, Optimizers.Backend.Engine, auto)!.Cell);
        Assert.IsType<RecurrentCell<V1>>(Backends.CreateEngine(dm, Optimizers.Backend.Engine, auto with { Layout = CellLayout.Rows })!.Cell);
    }

    [Fact]
    public void WrongMetaParameterShapesAreAClearError()
    {
        var cell = new HyperAdamLanesCell<V1>(new HyperAdamOptions { Candidates = 3 }, 16);
        var e = Assert.Throws<ArgumentException>(() => cell.Load(name => new float[name == "state.lstm.weight_ih" ? 5 : 1]));
        Assert.Contains("state.pre.weight", e.Message);
    }
}
