using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Tests;

/// <summary>A seeded, deterministic test function of any dimension: ½ Σ a_i (w_i − b_i)² + 0.05 (Σ w_i)² / n.</summary>
internal sealed class SeparableQuadratic : IOptimizee
{
    private readonly Tensor _a, _b;
    private readonly Generator _noise;
    private readonly ScalarType _dtype;

    public SeparableQuadratic(int n, long seed, ScalarType dtype)
    {
        _noise = new Generator((ulong)seed + 1);
        _dtype = dtype;
        using var g = new Generator((ulong)seed);
        _a = rand([n], dtype: ScalarType.Float64, generator: g).Times(2).Plus(0.1).to(dtype).DetachFromDisposeScope();
        _b = randn([n], dtype: ScalarType.Float64, generator: g).to(dtype).DetachFromDisposeScope();
        InitialParameters = randn([n], dtype: ScalarType.Float64, generator: g).Times(0.5).to(dtype).DetachFromDisposeScope();
        Dimension = n;
    }

    public int Dimension { get; }
    public Tensor InitialParameters { get; }
    /// <summary>Standard deviation of a fresh linear term ⟨ξ_t, w⟩ per step: gradients that change sign, so m̂ varies (0: none).</summary>
    public double Noise { get; init; }
    public Batch NextBatch() => Noise > 0 ? new Batch(randn([Dimension], dtype: ScalarType.Float64, generator: _noise).Times(Noise).to(_dtype), null) : Batch.None;
    /// <summary>f = 0 everywhere (a gradient of exactly zero at every step).</summary>
    public bool Flat { get; init; }
    public Tensor Loss(Tensor w, Batch batch)
    {
        // KeptScalars, not operators: the engine's threads run beside this (docs/reliability.md).
        if (Flat) return w.Times(0).sum();
        var loss = (_a * (w - _b).Squared()).sum().Times(0.5).Plus(w.sum().Squared().Times(0.05).Over(Dimension));
        return batch.Inputs is { } xi ? loss.Plus((xi * w).sum()) : loss;
    }
    public void Dispose() { _a.Dispose(); _b.Dispose(); InitialParameters.Dispose(); _noise.Dispose(); }
}

public class EngineTests(ITestOutputHelper output)
{
    internal static FusedEngine Engine(LearnedOptimizer learned, SimdWidth width = SimdWidth.Auto, int threads = 2, int blockRows = 64, CellLayout layout = CellLayout.Rows,
        bool? keepForward = false)
    {
        var o = new EngineOptions { Width = width, Threads = threads, BlockRows = blockRows, Layout = layout, KeepForward = keepForward };
        return new FusedEngine(FusedCells.Create(learned, SimdSelect.Resolve(width), blockRows, layout)!, o);
    }

    private static LearnedOptimizer Make(string spec, ScalarType dtype, long seed = 3) =>
        LearnedRegistry.Create(spec.Contains(':') ? $"{spec},init-seed={seed}" : $"{spec}:init-seed={seed}", new BuildContext(CPU, dtype));

    /// <summary>Max over steps of ‖Δ_engine − Δ_ref‖ / ‖Δ_ref‖ over T steps of gradients from a fixed random stream.</summary>
    internal static double ForwardError(string spec, int p, int steps, SimdWidth width = SimdWidth.Auto, int threads = 2, double gradScale = 1,
        CellLayout layout = CellLayout.Rows, int blockRows = 64)
    {
        using var learned = Make(spec, ScalarType.Float64);
        var engine = Engine(learned, width, threads, blockRows, layout);
        var fused = new FusedRule(learned, engine);
        var reference = learned.Rule;
        using var g = new Generator(11);
        using var _ = no_grad();
        var w = zeros(p, dtype: ScalarType.Float64);
        var sr = reference.Init(w);
        var sf = fused.Init(w);
        double worst = 0;
        for (int t = 0; t < steps; t++)
        {
            using var scope = NewDisposeScope();
            // Scales vary across coordinates and over time, as gradients do.
            var grad = randn([p], dtype: ScalarType.Float64, generator: g) * gradScale * (1 + 0.5 * Math.Sin(t)) * (rand([p], dtype: ScalarType.Float64, generator: g) * 3).exp();
            var r = reference.Step(grad, w, sr);
            var f = fused.Step(grad, w, sf);
            double err = ((f.Update - r.Update).norm() / r.Update.norm().clamp_min(1e-30)).ToDouble();
            worst = Math.Max(worst, double.IsNaN(err) ? double.PositiveInfinity : err);
            r.State.MoveToOuterDisposeScope(); f.State.MoveToOuterDisposeScope();
            sr = r.State; sf = f.State;
            // The parameters move as the reference says (the thesis's rules read them).
            w = (w + r.Update).MoveToOuterDisposeScope();
        }
        return worst;
    }

    [Theory]
    [InlineData("hyperadam:j=20", 1)]
    [InlineData("hyperadam:j=20", 7)]
    [InlineData("hyperadam:j=20", 1000)]
    [InlineData("hyperadam:j=20", 15930)]
    [InlineData("rnnprop", 15930)]
    [InlineData("dmoptimizer", 15930)]
    [InlineData("hyperadam:j=1", 7)]
    [InlineData("hyperadam:j=5", 1000)]
    [InlineData("hyperadam:j=5,lstm=false", 1000)]
    [InlineData("hyperadam:j=5,preprocess=false", 1000)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", 1000)]
    [InlineData("hyperadam:j=20,input-norm=rms", 7)]
    [InlineData("hyperadam:j=5,input-norm=rms", 1000)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false,input-norm=rms", 1000)]
    [InlineData("hyperadam:j=20,coupled=true,input-norm=rms", 7)]
    [InlineData("hyperadam:j=5,coupled=true", 1000)]
    [InlineData("hyperadam:j=5,gamma-min=0.99", 1000)]
    [InlineData("hyperadam:j=20,gamma-min=0.9,coupled=true,input-norm=rms", 7)]
    [InlineData("hyperadam:j=5,field-clip=0.7", 1000)]
    [InlineData("hyperadam:j=20,field-clip=0.7,gamma-min=0.9,coupled=true", 7)]
    [InlineData("rnnprop", 1)]
    [InlineData("rnnprop", 1000)]
    [InlineData("rnnprop:hidden=7,layers=1", 1000)]
    [InlineData("dmoptimizer", 7)]
    [InlineData("dmoptimizer", 1000)]
    [InlineData("dmoptimizer:preprocess=false,hidden=5,layers=3", 1000)]
    [InlineData("k-timesteps", 7)]
    [InlineData("k-timesteps", 1000)]
    [InlineData("k-timesteps:k=1,reference=current", 1000)]
    [InlineData("k-momentums", 1000)]
    [InlineData("k-momentums:k=3,reference=midpoint,hidden=9", 37)]
    public void ForwardMatchesReferenceOver100Steps(string spec, int p)
    {
        double err = ForwardError(spec, p, 100);
        output.WriteLine($"{spec} p={p}: max relative update error {err:E2}");
        Assert.True(err <= MethodCases.EngineToleranceOf(spec).Update, $"{spec} p={p}: relative error {err:E2}");
    }

    /// <summary>
    /// Every example of every fused method that the engine runs (the definition's cases, which together set each
    /// option away from its default), in each layout its cell has, at a size that no vector width divides; the
    /// hand-written cases above add sizes and J, and LaneEngineTests the vector widths.
    /// </summary>
    [Theory]
    [MemberData(nameof(MethodCases.FusedExamplesInEachLayout), MemberType = typeof(MethodCases))]
    public void EveryFusedExampleMatchesTheReferenceOver100Steps(string spec, CellLayout layout)
    {
        double err = ForwardError(spec, 37, 100, layout: layout);
        output.WriteLine($"{spec} {layout} p=37: max relative update error {err:E2}");
        Assert.True(err <= MethodCases.EngineToleranceOf(spec).Update, $"{spec} {layout} p=37: relative error {err:E2}");
    }
}

public class EngineMetaGradientTests(ITestOutputHelper output)
{
    private static LearnedOptimizer Make(string spec, ScalarType dtype) =>
        LearnedRegistry.Create(spec.Contains(':') ? $"{spec},init-seed=5" : $"{spec}:init-seed=5", new BuildContext(CPU, dtype));

    /// <summary>
    /// (engine, reference) outcomes of two consecutive unrolls of <paramref name="steps"/> on the same optimizee;
    /// <paramref name="eachUnroll"/>(unroll, schema, reference meta-gradient, engine meta-gradient) sees every unroll's pair.
    /// </summary>
    internal static (double Error, double MetaLossError) Compare(string spec, Func<ScalarType, IOptimizee> optimizee, int steps, MetaLoss kind,
        SimdWidth width = SimdWidth.Auto, int threads = 2, int unrolls = 2, CellLayout layout = CellLayout.Rows, int blockRows = 64,
        bool? keepForward = false, Action<int, IReadOnlyList<MetaParameter>, Tensor, Tensor>? eachUnroll = null, Action<LearnedOptimizer>? adjust = null)
    {
        using var learned = Make(spec, ScalarType.Float64);
        adjust?.Invoke(learned);
        var engine = EngineTests.Engine(learned, width, threads, blockRows, layout, keepForward);
        using var reference = new ReferenceMetaTrajectory(learned, optimizee(ScalarType.Float64));
        using var fused = new FusedTrajectory(learned, engine, optimizee(ScalarType.Float64));
        double worst = 0, worstLoss = 0;
        for (int u = 0; u < unrolls; u++)
        {
            using var r = reference.Unroll(steps, kind);
            using var f = fused.Unroll(steps, kind);
            Assert.True(r.Finite && f.Finite);
            double err = ((f.MetaGradient! - r.MetaGradient!).norm() / r.MetaGradient!.norm()).ToDouble();
            worst = Math.Max(worst, err);
            worstLoss = Math.Max(worstLoss, Math.Abs(f.MetaLoss - r.MetaLoss) / Math.Abs(r.MetaLoss));
            eachUnroll?.Invoke(u, learned.Schema, r.MetaGradient!, f.MetaGradient!);
        }
        return (worst, worstLoss);
    }

    /// <summary>
    /// The meta-gradient bound for <paramref name="spec"/> on <paramref name="optimizee"/>: the case's tolerance, or, where
    /// the case asks for the float32 yardstick (<see cref="EngineTolerance.Float32Yardstick"/>), at least twice the relative
    /// error of the float32 TorchSharp reference against the float64 one over the same unrolls.
    /// </summary>
    internal static double MetaGradientBound(string spec, Func<ScalarType, IOptimizee> optimizee, int steps, MetaLoss kind, int unrolls = 2,
        Action<LearnedOptimizer>? adjust = null)
    {
        var tolerance = MethodCases.EngineToleranceOf(spec);
        return tolerance.Float32Yardstick ? Math.Max(tolerance.MetaGradient, 2 * Float32ReferenceError(spec, optimizee, steps, kind, unrolls, adjust)) : tolerance.MetaGradient;
    }

    /// <summary>The worst relative meta-gradient error of the float32 reference against the float64 reference over <paramref name="unrolls"/> unrolls.</summary>
    internal static double Float32ReferenceError(string spec, Func<ScalarType, IOptimizee> optimizee, int steps, MetaLoss kind, int unrolls = 2,
        Action<LearnedOptimizer>? adjust = null)
    {
        using var exact = Make(spec, ScalarType.Float64);
        using var single = Make(spec, ScalarType.Float32);
        adjust?.Invoke(exact);
        adjust?.Invoke(single);
        using var r64 = new ReferenceMetaTrajectory(exact, optimizee(ScalarType.Float64));
        using var r32 = new ReferenceMetaTrajectory(single, optimizee(ScalarType.Float32));
        double worst = 0;
        for (int u = 0; u < unrolls; u++)
        {
            using var a = r64.Unroll(steps, kind);
            using var b = r32.Unroll(steps, kind);
            using var difference = b.MetaGradient!.to(ScalarType.Float64) - a.MetaGradient!;
            worst = Math.Max(worst, (difference.norm() / a.MetaGradient!.norm()).ToDouble());
        }
        return worst;
    }

    /// <summary>
    /// Why Multiscale Adam's cases take the float32 yardstick: on the noise-free quadratic the float32 reference itself is
    /// more than 1e-3 from the float64 one for an averaging combiner, and the engine is within twice that; with gradients
    /// that change sign (the timescales disagree) both are within the plain 1e-3.
    /// </summary>
    [Theory]
    [InlineData("multiscale-adam:combiner=la-b")]
    [InlineData("multiscale-adam:combiner=mlp,hidden=5,lr=0.05")]
    public void Multiscale_adam_meta_gradient_is_as_accurate_as_float32_allows(string spec)
    {
        Func<ScalarType, IOptimizee> agreeing = dt => new SeparableQuadratic(37, 17, dt), disagreeing = dt => new SeparableQuadratic(37, 17, dt) { Noise = 1 };
        double single = Float32ReferenceError(spec, agreeing, 10, MetaLoss.Mean);
        var (engine, _) = Compare(spec, agreeing, 10, MetaLoss.Mean, layout: CellLayout.Lanes);
        output.WriteLine($"{spec} noise-free: float32 reference {single:E2}, engine {engine:E2}");
        Assert.True(single > 1e-3, $"the float32 reference is within {single:E2}: the yardstick is not needed");
        Assert.True(engine <= 2 * single, $"engine {engine:E2} against the float32 reference's {single:E2}");
        double singleNoisy = Float32ReferenceError(spec, disagreeing, 10, MetaLoss.Mean);
        var (engineNoisy, _) = Compare(spec, disagreeing, 10, MetaLoss.Mean, layout: CellLayout.Lanes);
        output.WriteLine($"{spec} noisy: float32 reference {singleNoisy:E2}, engine {engineNoisy:E2}");
        Assert.True(singleNoisy <= 1e-3 && engineNoisy <= 1e-3, $"noisy: float32 reference {singleNoisy:E2}, engine {engineNoisy:E2}");
    }

    /// <summary>
    /// The linear combiners' Jacobian away from the near-average start: LA_a with a negative weight, LA_b with a zero
    /// weight (torch's |w| passes no gradient at 0, so that weight's meta-gradient is 0) and a negative one.
    /// </summary>
    [Theory]
    [InlineData("multiscale-adam:combiner=la-a", new[] { 0.5, -0.2, 0.3, 0.1, 0.2, 0.1 })]
    [InlineData("multiscale-adam:combiner=la-b", new[] { 0.0, -0.4, 0.3, 0.1, 0.2, 0.1 })]
    [InlineData("multiscale-adam:combiner=la-c", new[] { 0.0, -0.4, 0.3, 0.1, 0.2, 0.1 })]
    public void Multiscale_adam_linear_weights_anywhere_match_the_reference(string spec, double[] weights)
    {
        Func<ScalarType, IOptimizee> quadratic = dt => new SeparableQuadratic(37, 17, dt) { Noise = 1 };
        Tensor? zeroWeightGradient = null;
        Action<LearnedOptimizer> set = l => { using var _ = no_grad(); l.Parameters[0].Parameter.copy_(tensor(weights, l.Parameters[0].Parameter.dtype)); };
        var (err, _) = Compare(spec, quadratic, 10, MetaLoss.Mean, layout: CellLayout.Lanes, adjust: set,
            eachUnroll: (_, _, reference, engine) => zeroWeightGradient ??= engine[0].detach().clone());
        double bound = MetaGradientBound(spec, quadratic, 10, MetaLoss.Mean, adjust: set);
        output.WriteLine($"{spec}: meta-gradient relative error {err:E2} (bound {bound:E2})");
        Assert.True(err <= bound, $"{spec}: meta-gradient relative error {err:E2}, bound {bound:E2}");
        if (spec.EndsWith("la-b")) Assert.Equal(0.0, zeroWeightGradient!.ToDouble());
    }

    [Theory]
    [InlineData("hyperadam:j=20", 1, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20", 7, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=1", 1000, MetaLoss.MeanLog)]
    [InlineData("hyperadam:j=5", 1000, MetaLoss.Last)]
    [InlineData("hyperadam:j=5,lstm=false", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,preprocess=false", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=20,input-norm=rms", 7, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,input-norm=rms", 1000, MetaLoss.Mean)]
    [InlineData("rnnprop", 1, MetaLoss.Last)]
    [InlineData("rnnprop", 1000, MetaLoss.Last)]
    [InlineData("rnnprop:layers=1,hidden=9", 7, MetaLoss.Mean)]
    [InlineData("dmoptimizer", 7, MetaLoss.Mean)]
    [InlineData("dmoptimizer", 1000, MetaLoss.Mean)]
    [InlineData("dmoptimizer:preprocess=false,layers=3,hidden=6", 1000, MetaLoss.MeanLog)]
    [InlineData("hyperadam:j=5", 1000, MetaLoss.MeanBefore)]
    [InlineData("hyperadam:j=20,coupled=true,input-norm=rms", 7, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,coupled=true", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=1,coupled=true,lstm=false", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,gamma-min=0.99", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,gamma-min=0.9,coupled=true,input-norm=rms", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,field-clip=0.7", 1000, MetaLoss.Mean)]
    [InlineData("hyperadam:j=5,field-clip=0.7,coupled=true,lstm=false", 1000, MetaLoss.MeanBefore)]
    [InlineData("rnnprop", 7, MetaLoss.MeanBefore)]
    // The thesis's η_min = 1e-4 leaves an untrained midpoint rule (δ ≈ 0) moving w by ever smaller halvings, until float32
    // cannot order the history; the float32 reference's meta-gradient then differs from the float64 one by 3-7 % at 1e-3.
    // η_min = 0.01 keeps the comparison about the engine.
    [InlineData("k-timesteps:eta-min=0.01", 1000, MetaLoss.Last)]
    [InlineData("k-timesteps:k=1", 7, MetaLoss.Mean)]
    [InlineData("k-timesteps:reference=current", 1000, MetaLoss.MeanLog)]
    [InlineData("k-momentums", 1000, MetaLoss.Mean)]
    [InlineData("k-momentums:reference=midpoint,k=2", 37, MetaLoss.MeanBefore)]
    public void MetaGradientMatchesReference(string spec, int p, MetaLoss kind)
    {
        var (err, lossErr) = Compare(spec, dt => new SeparableQuadratic(p, 17, dt), 10, kind);
        output.WriteLine($"{spec} p={p} {kind}: meta-gradient relative error {err:E2}, meta-loss {lossErr:E2}");
        var tolerance = MethodCases.EngineToleranceOf(spec);
        Assert.True(err <= tolerance.MetaGradient, $"{spec} p={p}: meta-gradient relative error {err:E2}");
        Assert.True(lossErr <= tolerance.MetaLoss, $"{spec} p={p}: meta-loss relative error {lossErr:E2}");
    }

    /// <summary>The definition's examples of every fused method, in each layout: meta-gradients over two 10-step unrolls at a size no width divides.</summary>
    [Theory]
    [MemberData(nameof(MethodCases.FusedExamplesInEachLayout), MemberType = typeof(MethodCases))]
    public void EveryFusedExampleMatchesTheReferenceMetaGradient(string spec, CellLayout layout)
    {
        Func<ScalarType, IOptimizee> quadratic = dt => new SeparableQuadratic(37, 17, dt);
        var (err, lossErr) = Compare(spec, quadratic, 10, MetaLoss.Mean, layout: layout);
        output.WriteLine($"{spec} {layout} p=37: meta-gradient relative error {err:E2}, meta-loss {lossErr:E2}");
        var tolerance = MethodCases.EngineToleranceOf(spec);
        Assert.True(err <= MetaGradientBound(spec, quadratic, 10, MetaLoss.Mean), $"{spec} {layout} p=37: meta-gradient relative error {err:E2}");
        Assert.True(lossErr <= tolerance.MetaLoss, $"{spec} {layout} p=37: meta-loss relative error {lossErr:E2}");
    }

    /// <summary>The same examples and layouts on the AVX2 and scalar paths: updates over 100 steps and meta-gradients over two 10-step unrolls.</summary>
    [WidthTheory]
    [MemberData(nameof(MethodCases.FusedExamplesInEachLayoutAtNarrowerWidths), MemberType = typeof(MethodCases))]
    public void EveryFusedExampleMatchesTheReferenceAtNarrowerWidths(string spec, CellLayout layout, SimdWidth width)
    {
        double updateErr = EngineTests.ForwardError(spec, 37, 100, width, layout: layout);
        Func<ScalarType, IOptimizee> quadratic = dt => new SeparableQuadratic(37, 17, dt);
        var (err, lossErr) = Compare(spec, quadratic, 10, MetaLoss.Mean, width, layout: layout);
        output.WriteLine($"{spec} {layout} {width} p=37: update {updateErr:E2}, meta-gradient {err:E2}, meta-loss {lossErr:E2}");
        var tolerance = MethodCases.EngineToleranceOf(spec);
        Assert.True(updateErr <= tolerance.Update, $"{spec} {layout} {width}: update relative error {updateErr:E2}");
        Assert.True(err <= MetaGradientBound(spec, quadratic, 10, MetaLoss.Mean), $"{spec} {layout} {width}: meta-gradient relative error {err:E2}");
        Assert.True(lossErr <= tolerance.MetaLoss, $"{spec} {layout} {width}: meta-loss relative error {lossErr:E2}");
    }

    /// <summary>
    /// Each meta-parameter's own gradient against the reference, on gradients that change sign (so m̂ and the decays
    /// matter): the global relative error above is dominated by the path through ρ and once hid a wrong adjoint of the
    /// m′ normalisation in multi-row blocks (beta.bias off by 15 %). field-clip=0.8 clips some entries and not others.
    /// </summary>
    [WidthTheory]
    [InlineData("hyperadam:j=5", CellLayout.Rows, SimdWidth.Avx512, 64, false)]
    [InlineData("hyperadam:j=5", CellLayout.Rows, SimdWidth.Avx512, 64, true)]
    [InlineData("hyperadam:j=5", CellLayout.Rows, SimdWidth.Scalar, 7, false)]
    [InlineData("hyperadam:j=5", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    [InlineData("hyperadam:j=5,field-clip=0.8", CellLayout.Rows, SimdWidth.Avx512, 64, true)]
    [InlineData("hyperadam:j=5,field-clip=0.8", CellLayout.Lanes, SimdWidth.Avx2, 64, false)]
    [InlineData("hyperadam:j=5,field-clip=0.5,lstm=false", CellLayout.Rows, SimdWidth.Avx2, 64, false)]
    [InlineData("hyperadam:j=20,coupled=true,gamma-min=0.9,input-norm=rms", CellLayout.Rows, SimdWidth.Avx512, 64, false)]
    [InlineData("hyperadam:j=20,coupled=true,gamma-min=0.9,input-norm=rms", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    // state-norm: a column reduction in the middle of each step and of its backward, over 16 blocks (the last one partial).
    [InlineData("hyperadam:j=5,state-norm=true", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    [InlineData("hyperadam:j=5,state-norm=true,lstm=false", CellLayout.Lanes, SimdWidth.Avx2, 64, false)]
    [InlineData("hyperadam:j=5,state-norm=true,lstm=false,preprocess=false", CellLayout.Lanes, SimdWidth.Scalar, 20, false)]
    [InlineData("hyperadam:j=20,state-norm=true,input-norm=rms,coupled=true", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    [InlineData("rnnprop", CellLayout.Rows, SimdWidth.Avx512, 64, true)]
    [InlineData("rnnprop:layers=1,hidden=7", CellLayout.Rows, SimdWidth.Avx2, 64, false)]
    [InlineData("dmoptimizer", CellLayout.Rows, SimdWidth.Avx512, 64, true)]
    [InlineData("dmoptimizer:preprocess=false", CellLayout.Rows, SimdWidth.Scalar, 7, false)]
    // k ≥ 3 with the midpoint is ill-conditioned in float32 in the first unroll (the float32 reference differs from the
    // float64 one by 2.5e-4 at η_min = 1 and 4e-3 at 0.01); k = 2 and the current reference point are not.
    [InlineData("k-timesteps:k=2,eta-min=1", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    [InlineData("k-timesteps:k=2,eta-min=0.1", CellLayout.Lanes, SimdWidth.Avx2, 20, false)]
    [InlineData("k-timesteps:eta-min=1,reference=current", CellLayout.Lanes, SimdWidth.Avx512, 64, false)]
    [InlineData("k-momentums:eta-min=0.01", CellLayout.Lanes, SimdWidth.Scalar, 7, false)]
    public void Every_meta_parameter_gradient_matches_the_reference(string spec, CellLayout layout, SimdWidth width, int blockRows, bool keep)
    {
        Compare(spec, dt => new SeparableQuadratic(1000, 17, dt) { Noise = 1 }, 10, MetaLoss.Mean, width, layout: layout, blockRows: blockRows,
            keepForward: keep, eachUnroll: (u, schema, reference, fused) =>
            {
                double total = reference.norm().ToDouble();
                long offset = 0;
                foreach (var m in schema)
                {
                    var rk = reference.narrow(0, offset, m.Count);
                    var fk = fused.narrow(0, offset, m.Count);
                    double norm = rk.norm().ToDouble(), err = (fk - rk).norm().ToDouble() / Math.Max(norm, 1e-6 * total);
                    output.WriteLine($"unroll {u} {m.Name}: |g| {norm:E2}, relative error {err:E2}");
                    Assert.True(norm > 1e-9 * total, $"{m.Name}: no gradient to compare");
                    Assert.True(err <= 1e-4, $"{m.Name}: relative error {err:E2}");
                    offset += m.Count;
                }
            });
    }
}

public class EnginePropertyTests(ITestOutputHelper output)
{
    private static LearnedOptimizer Make(string spec, ScalarType dtype = ScalarType.Float32) =>
        LearnedRegistry.Create(spec.Contains(':') ? $"{spec},init-seed=9" : $"{spec}:init-seed=9", new BuildContext(CPU, dtype));

    private static float[] Updates(LearnedOptimizer learned, FusedEngine engine, Func<int, Tensor> gradient, int steps, int p,
        long chunkFloats = FusedRule.DefaultChunkFloats)
    {
        var rule = new FusedRule(learned, engine, chunkFloats);
        using var _ = no_grad();
        var w = zeros(p);
        var s = rule.Init(w);
        var all = new List<float>();
        for (int t = 0; t < steps; t++)
        {
            var r = rule.Step(gradient(t), w, s);
            all.AddRange(r.Update.data<float>().ToArray());
            s = r.State;
            w = w + r.Update;   // the thesis's rules read the parameters
        }
        return [.. all];
    }

    [Theory]
    [InlineData("hyperadam", CellLayout.Rows)]
    [InlineData("hyperadam:input-norm=rms,coupled=true", CellLayout.Rows)]
    [InlineData("rnnprop", CellLayout.Rows)]
    [InlineData("dmoptimizer", CellLayout.Rows)]
    [InlineData("hyperadam", CellLayout.Lanes)]
    [InlineData("hyperadam:input-norm=rms,coupled=true", CellLayout.Lanes)]
    [InlineData("hyperadam:state-norm=true", CellLayout.Lanes)]
    [InlineData("hyperadam:state-norm=true,lstm=false,preprocess=false,input-norm=rms", CellLayout.Lanes)]
    [InlineData("rnnprop", CellLayout.Lanes)]
    [InlineData("dmoptimizer", CellLayout.Lanes)]
    [InlineData("k-timesteps", CellLayout.Lanes)]
    public void A_state_split_into_chunks_gives_the_updates_of_one_piece(string spec, CellLayout layout)
    {
        using var learned = Make(spec);
        int p = 1000;   // chunks of three 64-row blocks: 192, 192, 192, 192, 192, 40
        using var g = new Generator(5);
        var grads = Enumerable.Range(0, 30).Select(_ => randn([p], generator: g) * (rand([p], generator: g) * 3).exp()).ToList();
        var engine = EngineTests.Engine(learned, threads: 2, blockRows: 64, layout: layout);
        Assert.Equal(192, new FusedRule(learned, engine, engine.StateLength(192)).ChunkCoordinates);
        Assert.True(new FusedRule(learned, engine).ChunkCoordinates >= p);
        var whole = Updates(learned, engine, t => grads[t], 30, p);
        var chunked = Updates(learned, engine, t => grads[t], 30, p, engine.StateLength(192));
        // Only the order of the state's double-precision reduction differs (chunk by chunk instead of block by block).
        double worst = whole.Zip(chunked, (a, b) => Math.Abs(a - b) / (Math.Abs(a) + 1e-12)).Max();
        Assert.True(worst <= 1e-5, $"{spec} {layout}: chunked updates differ by {worst:E2} relative");
    }

    [Theory]
    [InlineData("hyperadam", CellLayout.Rows)]
    [InlineData("rnnprop", CellLayout.Rows)]
    [InlineData("dmoptimizer", CellLayout.Rows)]
    [InlineData("hyperadam", CellLayout.Lanes)]
    [InlineData("rnnprop", CellLayout.Lanes)]
    [InlineData("dmoptimizer", CellLayout.Lanes)]
    [InlineData("k-timesteps", CellLayout.Lanes)]
    [InlineData("k-momentums", CellLayout.Lanes)]
    public void ResultsDoNotDependOnTheThreadCount(string spec, CellLayout layout)
    {
        using var learned = Make(spec);
        int p = 1000;
        using var g = new Generator(4);
        var grads = Enumerable.Range(0, 20).Select(_ => randn([p], generator: g)).ToList();
        var one = Updates(learned, EngineTests.Engine(learned, threads: 1, blockRows: 64, layout: layout), t => grads[t], 20, p);
        var four = Updates(learned, EngineTests.Engine(learned, threads: 4, blockRows: 64, layout: layout), t => grads[t], 20, p);
        Assert.Equal(one, four);   // bitwise: partial sums are added in block order whatever the threads

        var ctx = new TaskContext(CPU, ScalarType.Float32, null);
        Tensor MetaGradient(int threads)
        {
            using var tr = new FusedTrajectory(learned, EngineTests.Engine(learned, threads: threads, layout: layout), new SeparableQuadratic(p, 3, ScalarType.Float32));
            var o = tr.Unroll(10, MetaLoss.Mean);
            return o.MetaGradient!;
        }
        Assert.Equal(MetaGradient(1).data<float>().ToArray(), MetaGradient(3).data<float>().ToArray());
    }

    /// <summary>
    /// A kept forward (EngineOptions.KeepForward) is the recomputed one read back: the same meta-gradients and losses, bit for bit,
    /// over two unrolls (HyperAdam's second carries the normalisation's pending part), for every option of the rows cells and a part-filled last block.
    /// </summary>
    [WidthTheory]
    [InlineData("hyperadam", SimdWidth.Auto)]
    [InlineData("hyperadam:j=5", SimdWidth.Auto)]
    [InlineData("hyperadam:j=7", SimdWidth.Avx2)]
    [InlineData("hyperadam:j=7", SimdWidth.Scalar)]
    [InlineData("hyperadam:lstm=false", SimdWidth.Auto)]
    [InlineData("hyperadam:preprocess=false", SimdWidth.Auto)]
    [InlineData("hyperadam:lstm=false,preprocess=false", SimdWidth.Auto)]
    [InlineData("hyperadam:gamma-min=0.9", SimdWidth.Auto)]
    [InlineData("hyperadam:field-clip=0.7", SimdWidth.Auto)]
    [InlineData("hyperadam:input-norm=rms,coupled=true,eps=0", SimdWidth.Auto)]
    [InlineData("rnnprop", SimdWidth.Auto)]
    [InlineData("rnnprop:layers=1,hidden=7", SimdWidth.Avx2)]
    [InlineData("rnnprop:layers=3,hidden=5", SimdWidth.Scalar)]
    [InlineData("dmoptimizer", SimdWidth.Auto)]
    [InlineData("dmoptimizer:preprocess=false,layers=3", SimdWidth.Auto)]
    public void A_kept_forward_gives_the_recomputed_meta_gradient(string spec, SimdWidth width)
    {
        using var learned = Make(spec);
        int p = 1000;   // 15 blocks of 64 and one of 40
        (float[] Gradient, double[] Losses) Run(bool keep)
        {
            var engine = EngineTests.Engine(learned, width, threads: 2, blockRows: 64, keepForward: keep);
            using var tr = new FusedTrajectory(learned, engine, new SeparableQuadratic(p, 3, ScalarType.Float32));
            var first = tr.Unroll(6, MetaLoss.Mean);
            var second = tr.Unroll(6, MetaLoss.MeanLog);
            return ([.. first.MetaGradient!.data<float>().ToArray(), .. second.MetaGradient!.data<float>().ToArray()], [.. first.Losses, .. second.Losses]);
        }
        var recomputed = Run(false);
        var kept = Run(true);
        Assert.Equal(recomputed.Losses, kept.Losses);
        Assert.Equal(recomputed.Gradient, kept.Gradient);
        Assert.Contains(recomputed.Gradient, v => v != 0);
    }

    /// <summary>EngineOptions.KeepForward null (the default): keep where the cell can and one unroll's kept outputs fit in 1 GiB.</summary>
    [WidthFact(SimdWidth.Avx512)]
    public void A_kept_step_stores_the_forward_values_the_backward_reads()
    {
        // The stored floats count whole vectors: AVX-512's padding below.
        using var learned = Make("hyperadam");
        var rows = EngineTests.Engine(learned, SimdWidth.Avx512, keepForward: null);
        // What a kept step stores per coordinate at J = 20 (padded to 32 lanes): ĝ, [β | γ], [1 − β | 1 − γ], the
        // candidate directions, ρ's logits and ρ, the LSTM's four gates (80, padded to 96) and tanh c; not m′, nor the input layer (recomputed).
        Assert.Equal(1 + 64 + 64 + 3 * 32 + 96 + 32, rows.KeptLength(6400) / 6400);
        // RNNprop: its two features and output, and each layer's gates and tanh c; not the input layer (recomputed).
        using var rnnprop = Make("rnnprop");
        Assert.Equal(2 + 1 + 2 * (96 + 32), EngineTests.Engine(rnnprop, SimdWidth.Avx512, keepForward: null).KeptLength(6400) / 6400);
    }

    [Fact]
    public void By_default_the_forward_is_kept_where_the_cell_can_and_it_fits()
    {
        using var learned = Make("hyperadam");
        var rows = EngineTests.Engine(learned, keepForward: null);
        var lanes = EngineTests.Engine(learned, layout: CellLayout.Lanes, keepForward: null);
        long perStep = rows.KeptLength(15_930) * sizeof(float);
        Assert.True(rows.KeepsForward(15_930, 20));   // the base MLP's unroll: about 0.55 GB at AVX-512
        Assert.True(rows.KeepsForward(15_930, (int)(EngineOptions.AutoKeepForwardBytes / perStep)));
        Assert.False(rows.KeepsForward(15_930, (int)(EngineOptions.AutoKeepForwardBytes / perStep) + 1));
        Assert.False(rows.KeepsForward(117_434, 20));  // CNN-2: about 4 GB, recomputed
        Assert.False(lanes.KeepsForward(100, 20));     // the lanes cells always recompute
        Assert.False(EngineTests.Engine(learned, keepForward: false).KeepsForward(100, 20));
        Assert.True(EngineTests.Engine(learned, keepForward: true).KeepsForward(117_434, 20));
    }

    [Fact]
    public void Bench_times_the_evaluation_update_of_each_named_method()
    {
        var o = new L2O.Performance.EngineBenchmarkOptions { EvalTasks = ["quadratic"], EvalSteps = 2, EvalMethods = ["rnnprop:hidden=3", "dmoptimizer:hidden=3"], Layouts = [null] };
        var rows = L2O.Performance.EngineBenchmark.Evaluation(o);
        Assert.Equal(["rnnprop:hidden=3", "dmoptimizer:hidden=3"], rows.Select(r => r.Method));
        Assert.All(rows, r => { Assert.Equal("quadratic", r.Task); Assert.True(r.EngineMs > 0 && r.ReferenceMs > 0 && r.Flops > 0); });
        Assert.Equal(rows[0].AdamMs, rows[1].AdamMs);   // Adam is timed once per task
        Assert.Throws<L2OException>(() => L2O.Performance.EngineBenchmark.Evaluation(o with { EvalMethods = [] }));
    }

    [Fact]
    public void Bench_times_the_optimizee_step_with_each_gradient_and_labels_both()
    {
        var o = new L2O.Performance.EngineBenchmarkOptions { EvalTasks = ["mlp:layers=1,hidden=5,batch=8"], EvalSteps = 2 };
        var row = Assert.Single(L2O.Performance.EngineBenchmark.OptimizeeSteps(o));
        Assert.Equal("mlp:layers=1,hidden=5,batch=8", row.Task);
        Assert.True(row.DirectMs > 0 && row.AutogradMs > 0);
        var both = new L2O.Performance.EngineBenchmarkOptions { DirectGradient = [true, false], Layouts = [null], KeepForward = [false] };
        Assert.Equal("hyperadam (direct)", both.Label("hyperadam", null, false, true));
        Assert.Equal("hyperadam (rows, recompute, autograd)", (both with { Layouts = [CellLayout.Rows, CellLayout.Lanes], KeepForward = [false, true] }).Label("hyperadam", CellLayout.Rows, false, false));
        Assert.Equal("hyperadam", (both with { DirectGradient = [true] }).Label("hyperadam", null, false, true));
        Assert.Throws<L2OException>(() => (both with { DirectGradient = [] }).Validate());
    }

    [Fact]
    public void Bench_times_a_kept_forward_only_where_the_cell_keeps_it()
    {
        var o = new L2O.Performance.EngineBenchmarkOptions { KeepForward = [false, true], Layouts = [CellLayout.Rows, CellLayout.Lanes] };
        Assert.Equal([false, true], o.KeepForwardOf("hyperadam", CellLayout.Rows));
        Assert.Equal([false, true], o.KeepForwardOf("rnnprop", CellLayout.Rows));
        Assert.Equal([false], o.KeepForwardOf("rnnprop", null));   // auto: lanes, which recomputes
        Assert.Equal([false], o.KeepForwardOf("hyperadam", CellLayout.Lanes));
        Assert.Equal("hyperadam (rows, keep)", o.Label("hyperadam", CellLayout.Rows, true));
        Assert.Equal("hyperadam (keep)", (o with { Layouts = [null] }).Label("hyperadam", null, true));
        Assert.Equal("hyperadam", (o with { Layouts = [null], KeepForward = [true] }).Label("hyperadam", null, true));
        // Option values that only the lanes cell runs are timed once, in that layout, and never kept.
        Assert.Equal([CellLayout.Lanes], o.LayoutsOf("hyperadam:state-norm=true"));
        Assert.Equal([CellLayout.Rows, CellLayout.Lanes], o.LayoutsOf("hyperadam:j=5"));
        Assert.Equal([false], o.KeepForwardOf("hyperadam:state-norm=true", CellLayout.Lanes));
    }

    [Theory]
    [InlineData("hyperadam", CellLayout.Lanes)]
    [InlineData("dmoptimizer", CellLayout.Lanes)]
    [InlineData("hyperadam:state-norm=true", CellLayout.Rows)]
    public void Keeping_the_forward_where_the_cell_cannot_is_a_one_line_error(string spec, CellLayout layout)
    {
        using var learned = Make(spec);
        var e = Assert.Throws<L2OException>(() => new FusedTrajectory(learned, EngineTests.Engine(learned, layout: layout, keepForward: true), new SeparableQuadratic(10, 3, ScalarType.Float32)));
        Assert.StartsWith("keep-forward: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // A rule that only the lanes cell runs is not told to ask for the rows layout, which would not help it.
        if (spec.Contains("state-norm")) Assert.DoesNotContain("engine layout rows", e.Message);
    }

    [WidthTheory]
    [InlineData("hyperadam:j=7", SimdWidth.Scalar)]
    [InlineData("hyperadam:j=7", SimdWidth.Avx2)]
    [InlineData("rnnprop", SimdWidth.Scalar)]
    [InlineData("rnnprop", SimdWidth.Avx2)]
    [InlineData("dmoptimizer", SimdWidth.Scalar)]
    [InlineData("dmoptimizer", SimdWidth.Avx2)]
    public void NarrowerVectorPathsMatchTheReference(string spec, SimdWidth width)
    {
        var (err, _) = EngineMetaGradientTests.Compare(spec, dt => new SeparableQuadratic(37, 2, dt), 8, MetaLoss.Mean, width);
        output.WriteLine($"{spec} {width}: meta-gradient relative error {err:E2}");
        Assert.True(err <= MethodCases.EngineToleranceOf(spec).MetaGradient, $"{spec} {width}: {err:E2}");
    }

    [Theory]
    [InlineData("hyperadam", CellLayout.Rows)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", CellLayout.Rows)]
    [InlineData("rnnprop", CellLayout.Rows)]
    [InlineData("dmoptimizer", CellLayout.Rows)]
    [InlineData("hyperadam", CellLayout.Lanes)]
    [InlineData("hyperadam:j=5,lstm=false,preprocess=false", CellLayout.Lanes)]
    [InlineData("rnnprop", CellLayout.Lanes)]
    [InlineData("dmoptimizer", CellLayout.Lanes)]
    public void ZeroGradientsGiveFiniteUpdatesAndMetaGradients(string spec, CellLayout layout)
    {
        using var learned = Make(spec);
        var engine = EngineTests.Engine(learned, layout: layout);
        var u = Updates(learned, engine, _ => zeros(77), 10, 77);
        Assert.All(u, x => Assert.True(float.IsFinite(x)));
        // A flat region: the optimizee's gradient is exactly zero at every step.
        using var tr = new FusedTrajectory(learned, engine, new SeparableQuadratic(77, 1, ScalarType.Float32) { Flat = true });
        using var o = tr.Unroll(5, MetaLoss.Mean);
        Assert.True(o.Finite);
        Assert.True(o.MetaGradient!.isfinite().all().item<bool>());
    }

    [Theory]
    [InlineData("hyperadam", CellLayout.Rows)]
    [InlineData("rnnprop", CellLayout.Rows)]
    [InlineData("dmoptimizer", CellLayout.Rows)]
    [InlineData("hyperadam", CellLayout.Lanes)]
    [InlineData("rnnprop", CellLayout.Lanes)]
    [InlineData("dmoptimizer", CellLayout.Lanes)]
    [InlineData("k-timesteps", CellLayout.Lanes)]
    [InlineData("k-momentums", CellLayout.Lanes)]
    public void NonFiniteGradientsAreNotHidden(string spec, CellLayout layout)
    {
        using var learned = Make(spec);
        var u = Updates(learned, EngineTests.Engine(learned, layout: layout), _ => tensor(new[] { 1f, float.NaN, -2f, 0.5f }), 1, 4);
        Assert.True(float.IsNaN(u[1]) || (spec.StartsWith("hyperadam") && u.All(float.IsNaN)), $"{spec}: a NaN gradient must give a NaN update, got {string.Join(", ", u)}");
    }

    [Fact]
    public void FullSizeTrainingTaskMatchesTheReference()
    {
        // The base MLP plus the 20-dimensional convex function: p = 15 930, as in meta-training.
        static IOptimizee Task(ScalarType dt)
        {
            var ctx = new TaskContext(CPU, dt, null);
            var training = new TrainingTask([(TaskRegistry.Create("mlp", ctx), 1.0)], new TrickOptions(), ctx);
            return training.Sample(5);
        }
        using (var probe = Task(ScalarType.Float32)) Assert.Equal(15930, probe.Dimension);
        var (err, lossErr) = EngineMetaGradientTests.Compare("hyperadam:j=20", Task, 20, MetaLoss.Mean, unrolls: 1);
        output.WriteLine($"hyperadam p=15930: meta-gradient relative error {err:E2}, meta-loss {lossErr:E2}");
        Assert.True(err <= MethodCases.EngineToleranceOf("hyperadam").MetaGradient, $"meta-gradient relative error {err:E2}");
    }

    [Fact]
    public void BackendSelection()
    {
        using var f32 = Make("hyperadam:j=3");
        Assert.IsType<FusedRule>(Backends.Rule(f32, Backend.Auto));
        Assert.IsNotType<FusedRule>(Backends.Rule(f32, Backend.Reference));
        using var f64 = Make("hyperadam:j=3", ScalarType.Float64);
        Assert.IsNotType<FusedRule>(Backends.Rule(f64, Backend.Auto));
        Assert.Contains("float32", Assert.Throws<L2OException>(() => Backends.Rule(f64, Backend.Engine)).Message);
        using var ms = Make("multiscale-adam:combiner=mlp");
        Assert.IsType<FusedRule>(Backends.Rule(ms, Backend.Auto));
        using var normed = Make("hyperadam:j=3,state-norm=true");
        Assert.IsType<FusedRule>(Backends.Rule(normed, Backend.Auto));
        var e = Assert.Throws<L2OException>(() => Backends.Parse("gpu"));
        Assert.Contains("auto, engine, reference", e.Message);
        Assert.IsType<FusedRule>(OptimizerRegistry.Create("rnnprop"));
        Assert.IsNotType<FusedRule>(OptimizerRegistry.Create("rnnprop", BuildContext.Cpu with { Backend = Backend.Reference }));
    }
}

public class FusedRuleTests
{
    [Fact]
    public void SeesMetaParametersChangedInPlace()
    {
        using var learned = LearnedRegistry.Create("rnnprop:init-seed=2");
        var fused = Backends.Rule(learned, Backend.Engine);
        using var _ = no_grad();
        var w = zeros(50);
        var g = randn(50, generator: new Generator(1));
        var before = fused.Step(g, w, fused.Init(w)).Update.clone();
        foreach (var (_, p) in learned.Parameters) p.add_(0.05);    // what a meta-optimizer step does
        var after = fused.Step(g, w, fused.Init(w)).Update;
        var reference = learned.Rule.Step(g, w, learned.Rule.Init(w)).Update;
        Assert.False(before.allclose(after));
        Assert.True(after.allclose(reference, rtol: 1e-4, atol: 1e-7));
    }
}

public unsafe class EngineKernelTests
{
    private static double WorstRelative<T>(Func<T, T> f, Func<double, double> exact, double lo, double hi, double step, double floor) where T : unmanaged, ISimd<T>
    {
        double worst = 0;
        var buf = new float[64];
        for (double x0 = lo; x0 < hi; x0 += step * T.Count)
        {
            fixed (float* p = buf)
            {
                for (int i = 0; i < T.Count; i++) p[i] = (float)(x0 + i * step);
                T.Store(p + 32, f(T.Load(p)));
                for (int i = 0; i < T.Count; i++)
                {
                    double e = exact(p[i]);
                    worst = Math.Max(worst, Math.Abs(p[32 + i] - e) / Math.Max(Math.Abs(e), floor));
                }
            }
        }
        return worst;
    }

    // e^x − 1 in double loses digits near 0 itself; its series is exact there.
    private static double Expm1Exact(double x) => Math.Abs(x) < 1e-3 ? x + x * x / 2 + x * x * x / 6 + x * x * x * x / 24 : Math.Exp(x) - 1;

    [Fact]
    public void VectorFunctionsAreAccurate()
    {
        // Relative error, small arguments included (1e-30 floor: no absolute escape hatch).
        Assert.True(WorstRelative<V1>(Act<V1>.Exp, Math.Exp, -80, 80, 1e-3, 1e-30) < 1e-6);
        Assert.True(WorstRelative<V512>(Act<V512>.Exp, Math.Exp, -80, 80, 1e-3, 1e-30) < 1e-6);
        Assert.True(WorstRelative<V512>(Act<V512>.Tanh, Math.Tanh, -12, 12, 1e-4, 1e-30) < 4e-7);
        Assert.True(WorstRelative<V512>(Act<V512>.Expm1, Expm1Exact, -5, 5, 1e-4, 1e-30) < 1e-6);
        Assert.True(WorstRelative<V512>(x => Act<V512>.SigmoidPair(x, out _), x => 1 / (1 + Math.Exp(-x)), -80, 80, 1e-3, 1e-30) < 1e-6);
        Assert.True(WorstRelative<V512>(x => { Act<V512>.SigmoidPair(x, out var om); return om; }, x => 1 / (1 + Math.Exp(x)), -80, 80, 1e-3, 1e-30) < 1e-6);
        // The LSTM gate is accurate in absolute terms (what a multiplying gate needs).
        Assert.True(WorstRelative<V512>(Act<V512>.Gate, x => 1 / (1 + Math.Exp(-x)), -30, 30, 1e-3, 1.0) < 3e-7);
    }

    [Fact]
    public void ExpSaturatesWithoutInfinityAndPassesNaN()
    {
        var buf = new float[32];
        fixed (float* p = buf)
        {
            p[0] = 1000f; p[1] = -1000f; p[2] = float.NaN;
            for (int i = 0; i < 3; i++) p[16 + i] = 0;
            var y = new float[3];
            for (int i = 0; i < 3; i++) { V1.Store(p + 16 + i, Act<V1>.Exp(V1.Load(p + i))); y[i] = p[16 + i]; }
            Assert.True(float.IsFinite(y[0]) && y[0] > 1e38f);
            Assert.True(y[1] >= 0 && y[1] < 1e-37f);
            Assert.True(float.IsNaN(y[2]));
        }
    }

    [Fact]
    public void GemmTilesMatchNaiveProducts()
    {
        var rng = new Random(3);
        foreach (int rows in new[] { 1, 3, 8, 13, 64 })
            foreach (int k in new[] { 1, 5, 20, 40 })
                foreach (int n in new[] { 16, 32, 48, 64, 80, 96, 112, 144 })
                {
                    var x = new AlignedBuffer(rows * k + 64); var b = new AlignedBuffer(k * n + 64);
                    var y = new AlignedBuffer(rows * n + 64); var acc = new AlignedBuffer(k * n + 64);
                    for (int i = 0; i < rows * k; i++) x.Pointer[i] = (float)rng.NextDouble() - 0.5f;
                    for (int i = 0; i < k * n; i++) b.Pointer[i] = (float)rng.NextDouble() - 0.5f;
                    Gemm<V512>.MulAdd(x.Pointer, k, rows, k, b.Pointer, n, n, y.Pointer, n);
                    if (rows <= k) Gemm<V512>.AccumulateXtY(x.Pointer, k, rows, k, b.Pointer, n, n, acc.Pointer, n);   // b's first rows as dy
                    for (int r = 0; r < rows; r++)
                        for (int c = 0; c < n; c++)
                        {
                            double e = 0;
                            for (int i = 0; i < k; i++) e += x.Pointer[r * k + i] * b.Pointer[i * n + c];
                            Assert.True(Math.Abs(y.Pointer[r * n + c] - e) < 1e-4, $"MulAdd rows={rows} k={k} n={n}");
                        }
                    if (rows > k) continue;
                    for (int i = 0; i < k; i++)
                        for (int c = 0; c < n; c++)
                        {
                            double e = 0;
                            for (int r = 0; r < rows; r++) e += x.Pointer[r * k + i] * b.Pointer[r * n + c];
                            Assert.True(Math.Abs(acc.Pointer[i * n + c] - e) < 1e-4, $"XtY rows={rows} k={k} n={n}");
                        }
                }
    }
}

public class EngineLimitsTests
{
    [Fact]
    public void OversizedBuffersAreAClearError()
    {
        var e = Assert.Throws<L2OException>(() => new AlignedBuffer(3L << 30));
        Assert.Contains("--backend reference", e.Message);
    }
}
