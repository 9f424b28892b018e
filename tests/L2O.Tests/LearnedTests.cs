using L2O.Checkpoints;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using L2O.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>Small float64 configurations of every learned optimizer, for exact checks.</summary>
public static class LearnedCases
{
    /// <summary>Every learned method's examples, from its definition (the learned rows of <see cref="MethodCases"/>).</summary>
    public static readonly string[] Specs = MethodCases.All.Where(c => c.Learned).SelectMany(c => c.Examples).ToArray();

    public static TheoryData<string> All() => MethodCases.LearnedExamples();

    public static LearnedOptimizer Create(string spec, long seed = 3) =>
        LearnedRegistry.Create(spec + $",init-seed={seed}", Contexts.DoubleBuild);
}

public class LearnedOptimizerTests
{
    [Fact]
    public void Every_learned_method_has_a_case()
    {
        var covered = LearnedCases.Specs.Select(s => s.Split(':')[0]).ToHashSet();
        Assert.All(LearnedRegistry.Methods, m => Assert.Contains(m.Name, covered));
    }

    [Theory]
    [MemberData(nameof(LearnedCases.All), MemberType = typeof(LearnedCases))]
    public void First_order_meta_gradient_matches_central_differences(string spec)
    {
        // The first-order meta-gradient is the exact gradient of the meta-loss when the optimizee's
        // gradients are held at their recorded values; replaying them makes that function checkable.
        using var learned = LearnedCases.Create(spec);
        var task = TaskRegistry.Create("quadratic:dim=4,init=normal:1", Contexts.Double);
        foreach (var kind in new[] { MetaLoss.Mean, MetaLoss.Last, MetaLoss.MeanLog, MetaLoss.MeanBefore })
        {
            using var scope = NewDisposeScope();
            using var tr = Trajectory.Start(task.Sample(1), learned.Rule);
            var run = Unroll.Run(learned.Rule, tr, 4, kind);
            var gradients = run.Gradients.Select(g => g.detach().clone()).ToList();
            foreach (var (_, p) in learned.Parameters) p.grad?.zero_();
            run.MetaLoss.backward();

            using var gen = new Generator(17);
            var directions = learned.Parameters.Select(p => randn(p.Parameter.shape, dtype: ScalarType.Float64, generator: gen)).ToList();
            double norm = Math.Sqrt(directions.Sum(d => d.square().sum().ToDouble()));
            double analytic = learned.Parameters.Zip(directions).Sum(x => (x.First.Parameter.grad! * x.Second).sum().ToDouble()) / norm;

            double MetaLossAt(double h)
            {
                using var _ = no_grad();
                foreach (var ((_, p), d) in learned.Parameters.Zip(directions)) p.add_(d * (h / norm));
                using var t2 = Trajectory.Start(task.Sample(1), learned.Rule);
                double value;
                using (enable_grad()) value = Unroll.Run(learned.Rule, t2, 4, kind, gradients).MetaLoss.ToDouble();
                foreach (var ((_, p), d) in learned.Parameters.Zip(directions)) p.sub_(d * (h / norm));
                return value;
            }

            // h balances truncation (O(h²)) against cancellation (≈1e-16·L/h) for derivatives as small as 1e-6.
            const double h = 1e-5;
            double numeric = (MetaLossAt(h) - MetaLossAt(-h)) / (2 * h);
            double err = Math.Abs(analytic - numeric) / Math.Max(1e-6, Math.Max(Math.Abs(analytic), Math.Abs(numeric)));
            Assert.True(err < 1e-4, $"{spec} {kind}: analytic {analytic}, numeric {numeric}, relative error {err}");
        }
    }

    [Theory]
    [MemberData(nameof(LearnedCases.All), MemberType = typeof(LearnedCases))]
    public void Rule_is_pure_and_finite_on_zero_gradients(string spec)
    {
        using var learned = LearnedCases.Create(spec);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var rule = learned.Rule;
        var w = randn(7, dtype: ScalarType.Float64);
        var s = rule.Init(w);
        for (int i = 0; i < 3; i++)
        {
            var g = i == 1 ? zeros(7, dtype: ScalarType.Float64) : randn(7, dtype: ScalarType.Float64);
            var (wc, gc) = (w.clone(), g.clone());
            var before = s.Tensors.Select(t => t.clone()).ToList();
            var step = rule.Step(g, w, s);
            Assert.Equal(0, Numeric.MaxAbsDiff(w, wc));
            Assert.Equal(0, Numeric.MaxAbsDiff(g, gc));
            foreach (var (t, c) in s.Tensors.Zip(before)) Assert.Equal(0, Numeric.MaxAbsDiff(t, c));
            Assert.True(step.Update.isfinite().all().item<bool>(), $"{spec} step {i}");
            Assert.True(step.State.IsFinite(), $"{spec} step {i}");
            w = w + step.Update;
            s = step.State;
        }
        // All-zero gradients from the start (HyperAdam's ‖g‖ and ‖m‖ guards).
        var s0 = rule.Init(w);
        var z = rule.Step(zeros(7, dtype: ScalarType.Float64), w, s0);
        Assert.True(z.Update.isfinite().all().item<bool>(), spec);
    }

    [Theory]
    [MemberData(nameof(LearnedCases.All), MemberType = typeof(LearnedCases))]
    public void Checkpoint_round_trip_gives_identical_updates(string spec)
    {
        using var dir = new TempDir();
        using var learned = LearnedCases.Create(spec);
        string path = dir.File("opt.safetensors");
        learned.Save(path, new Dictionary<string, string> { ["note"] = "test" });
        using var loaded = LearnedRegistry.Load(path, Contexts.DoubleBuild);
        Assert.Equal(learned.Method, loaded.Method);
        Assert.Equal(learned.Parameters.Select(p => p.Name), loaded.Parameters.Select(p => p.Name));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = randn(5, dtype: ScalarType.Float64);
        var (s1, s2) = (learned.Rule.Init(w), loaded.Rule.Init(w));
        for (int i = 0; i < 3; i++)
        {
            var g = randn(5, dtype: ScalarType.Float64);
            var a = learned.Rule.Step(g, w, s1);
            var b = loaded.Rule.Step(g, w, s2);
            // Checkpoints store float32, so compare at float32 precision.
            Assert.True(Numeric.MaxAbsDiff(a.Update, b.Update) < 1e-5 * (1 + a.Update.abs().max().ToDouble()), spec);
            (s1, s2) = (a.State, b.State);
        }
    }
}

public class HyperAdamTests
{
    private static HyperAdam Make(int j, double stepSize = 0.1) => new(new HyperAdamOptions { Candidates = j, StepSize = stepSize, InitSeed = 5 }, Contexts.DoubleBuild);

    /// <summary>Sets decay rates to the constants β, γ and the weights to 1 (θ_u = θ_r = θ_q = 0).</summary>
    private static void MakeConstant(HyperAdam h, double beta, double gamma, double rho = 1)
    {
        using var _ = no_grad();
        foreach (var (name, p) in h.Parameters)
        {
            if (name.EndsWith(".weight") && name.StartsWith("adam.") || name == "weight.weight") p.zero_();
            if (name == "adam.beta.bias") p.fill_(Math.Log(beta / (1 - beta)));
            if (name == "adam.gamma.bias") p.fill_(Math.Log(gamma / (1 - gamma)));
            if (name == "weight.bias") p.fill_(rho);   // ELU(ρ) = ρ for ρ > 0
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Rms_input_norm_is_the_l2_form_with_inputs_scaled_by_root_p(bool preprocess)
    {
        // input-norm=rms feeds √p·ĝ and √p·m′; the same rule with l2 inputs and the weights that read
        // them (W_pre, or the LSTM's input weights, and the m′ half of θ_u, θ_r) scaled by √p is identical.
        const int p = 37, j = 4;
        using var rms = new HyperAdam(new HyperAdamOptions { Candidates = j, InitSeed = 3, Preprocess = preprocess, InputNorm = InputNorm.Rms }, Contexts.DoubleBuild);
        using var l2 = new HyperAdam(new HyperAdamOptions { Candidates = j, InitSeed = 3, Preprocess = preprocess }, Contexts.DoubleBuild);
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            double root = Math.Sqrt(p);
            foreach (var (name, param) in l2.Parameters)
            {
                if (name == (preprocess ? "state.pre.weight" : "state.lstm.weight_ih")) param.mul_(root);
                if (name is "adam.beta.weight" or "adam.gamma.weight") param.narrow(1, 0, j).mul_(root);
            }
        }
        using var _ = no_grad();
        using var gen = new Generator(4);
        var w = randn([p], dtype: ScalarType.Float64, generator: gen);
        var (a, b) = (rms.Rule.Init(w), l2.Rule.Init(w));
        for (int t = 0; t < 12; t++)
        {
            var g = randn([p], dtype: ScalarType.Float64, generator: gen) * Math.Exp(t - 6);
            var (sa, sb) = (rms.Rule.Step(g, w, a), l2.Rule.Step(g, w, b));
            double diff = (sa.Update - sb.Update).abs().max().ToDouble(), size = sb.Update.abs().max().ToDouble();
            Assert.True(diff <= 1e-10 * size, $"step {t}: updates differ by {diff:E2} (size {size:E2})");
            (a, b) = (sa.State, sb.State);
        }
    }

    [Fact]
    public void Coupled_decays_keep_gamma_above_beta_squared_and_the_field_bounded()
    {
        // Decay biases that put β² above γ (β ≈ 0.95, σ(z_γ) ≈ 0.05): under gradients that halve every
        // step the paper's m̂ = (m/β̂)/√(v/γ̂) grows like (β/√γ)^t; coupled, γ = β² + (1 − β²)σ ≥ β² bounds it.
        double Largest(bool coupled)
        {
            using var learned = new HyperAdam(new HyperAdamOptions { Candidates = 4, InitSeed = 2, CoupledDecays = coupled }, Contexts.DoubleBuild);
            using (no_grad())
                foreach (var (name, param) in learned.Parameters)
                {
                    if (name is "adam.beta.weight" or "adam.gamma.weight") param.zero_();
                    if (name == "adam.beta.bias") param.fill_(3.0);
                    if (name == "adam.gamma.bias") param.fill_(-3.0);
                }
            double worstGap = double.PositiveInfinity, largest = 0;
            Tensor? beta = null;
            learned.Probe = (name, t) =>
            {
                if (name == "beta") beta = t.detach().clone();
                if (name == "gamma") worstGap = Math.Min(worstGap, (t - beta!.square()).min().ToDouble());
                if (name == "field") largest = Math.Max(largest, t.abs().max().ToDouble());
            };
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var gen = new Generator(8);
            var w = zeros([30], dtype: ScalarType.Float64);
            var g0 = randn([30], dtype: ScalarType.Float64, generator: gen);
            var state = learned.Rule.Init(w);
            for (int t = 0; t < 40; t++) state = learned.Rule.Step(g0 * Math.Pow(0.5, t), w, state).State;
            if (coupled) Assert.True(worstGap >= 0, $"γ − β² reached {worstGap:E2}");
            return largest;
        }
        double paper = Largest(false), coupled = Largest(true);
        Assert.True(paper > 1e6, $"the paper's field reached only {paper:E2}");
        Assert.True(coupled < 20, $"the coupled field reached {coupled:E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gamma_min_maps_the_second_moment_decay_onto_its_floor(bool coupled)
    {
        // Constant decays (θ = 0): β = 0.8, σ(z_γ) = 0.5. gamma-min = 0.99 gives γ = 0.99 + 0.01 γ_cell, where
        // γ_cell = 0.5 (paper) or β² + (1 − β²) 0.5 = 0.82 (coupled); Lemma 1 then pins γ̂ = 1 − γ^t exactly.
        const double gammaMin = 0.99;
        double cell = coupled ? 0.64 + 0.36 * 0.5 : 0.5, gamma = gammaMin + (1 - gammaMin) * cell;
        using var h = new HyperAdam(new HyperAdamOptions { Candidates = 3, StepSize = 0.1, InitSeed = 5, CoupledDecays = coupled, GammaMin = gammaMin }, Contexts.DoubleBuild);
        MakeConstant(h, 0.8, 0.5);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = randn(6, dtype: ScalarType.Float64);
        var s = (HyperAdamState)h.Rule.Init(w);
        var v = zeros(6, dtype: ScalarType.Float64);
        for (int t = 1; t <= 8; t++)
        {
            var g = randn(6, dtype: ScalarType.Float64);
            s = (HyperAdamState)h.Rule.Step(g, w, s).State;
            v = gamma * v + (1 - gamma) * g.square();
            Assert.True((s.GammaHat - (1 - Math.Pow(gamma, t))).abs().max().ToDouble() < 1e-12);
            Assert.True((s.BetaHat - (1 - Math.Pow(0.8, t))).abs().max().ToDouble() < 1e-12);
            Assert.True((s.V - v.unsqueeze(1)).abs().max().ToDouble() < 1e-12);
        }
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    public void Gamma_min_outside_zero_to_one_is_refused(double gammaMin)
    {
        var e = Assert.Throws<L2OException>(() => LearnedRegistry.Create($"hyperadam:gamma-min={gammaMin.ToString(System.Globalization.CultureInfo.InvariantCulture)}"));
        Assert.Contains("gamma-min", e.Message);
    }

    [Fact]
    public void Field_clip_bounds_each_candidate_direction()
    {
        // field-clip=c replaces m̂ by clamp(m̂, −c, c): the update is −α Σ_j ρ_j clamp(m̂_j), and a bound above every
        // |m̂| changes nothing. (Its gradient, zero where the bound acts, is torch.clamp's; the engine tests hold the cells to it.)
        const double clip = 0.6;
        using var scope = NewDisposeScope();
        var w = randn(50, dtype: ScalarType.Float64, generator: new Generator(3));
        var gs = Enumerable.Range(0, 6).Select(t => randn(50, dtype: ScalarType.Float64, generator: new Generator((ulong)(10 + t))) * Math.Pow(0.3, t)).ToArray();
        Tensor Fields(double c, List<Tensor> rho)
        {
            using var h = new HyperAdam(new HyperAdamOptions { Candidates = 4, StepSize = 0.1, InitSeed = 5, FieldClip = c }, Contexts.DoubleBuild);
            Tensor? field = null, r = null;
            h.Probe = (name, x) => { if (name == "field") field = x.detach().clone().MoveToOuterDisposeScope(); else if (name == "rho") r = x.detach().clone().MoveToOuterDisposeScope(); };
            var s = h.Rule.Init(w);
            var fields = new List<Tensor>();
            using var _ = no_grad();
            foreach (var g in gs)
            {
                var step = h.Rule.Step(g, w, s);
                s = step.State;
                fields.Add(field!); rho.Add(r!);
                Assert.True((step.Update + 0.1 * (r! * field!).sum(1)).abs().max().ToDouble() < 1e-12);
            }
            return stack(fields);
        }
        var free = Fields(0, []);
        var clipped = Fields(clip, []);
        Assert.True(free.abs().max().ToDouble() > clip, "the test needs some |m̂| above the bound");
        Assert.True((clipped - free.clamp(-clip, clip)).abs().max().ToDouble() < 1e-12);
        double above = free.abs().max().ToDouble() * 1.01;
        Assert.True((Fields(above, []) - free).abs().max().ToDouble() == 0);
    }

    [Fact]
    public void Field_clip_below_zero_is_refused()
    {
        var e = Assert.Throws<L2OException>(() => LearnedRegistry.Create("hyperadam:field-clip=-1"));
        Assert.Contains("field-clip", e.Message);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void State_norm_feeds_the_adam_cell_unit_columns_of_the_state_and_the_weight_cell_the_state(bool stateNorm, bool rms)
    {
        // state-norm=true: β = σ([m′, s′] θ_u + b_u), γ = σ([m′, s′] θ_r + b_r) with s′ = s_t / √(Σ_i s_ij² (/p with rms) + 1e-16)
        // per column, while ρ = ELU(s_t θ_q + b_q) still reads s_t (the authors' AdamLSTMCell and weight layer).
        const int p = 23, j = 4;
        using var h = new HyperAdam(new HyperAdamOptions { Candidates = j, InitSeed = 6, NormalizeState = stateNorm, InputNorm = rms ? InputNorm.Rms : InputNorm.L2 }, Contexts.DoubleBuild);
        var parameters = h.Parameters.ToDictionary(x => x.Name, x => (Tensor)x.Parameter);
        using var scope = NewDisposeScope();
        var seen = new Dictionary<string, Tensor>();
        h.Probe = (name, t) => seen[name] = t.detach().clone();
        using var _ = no_grad();
        using var gen = new Generator(9);
        var w = randn([p], dtype: ScalarType.Float64, generator: gen);
        var state = h.Rule.Init(w);
        for (int t = 0; t < 5; t++)
        {
            state = h.Rule.Step(randn([p], dtype: ScalarType.Float64, generator: gen), w, state).State;
            var st = seen["state"];
            var norms = st.square().sum(0, keepdim: true);
            if (rms) norms = norms / p;
            var read = stateNorm ? st / (norms + 1e-16).sqrt() : st;
            if (stateNorm)
            {
                // sum([0L]): a bare sum(0) binds to the dtype overload and sums everything.
                double off = (read.square().sum([0L]) / (rms ? p : 1) - 1).abs().max().ToDouble();
                Assert.True(off < 1e-12, $"s′ has unit columns ({off:E2})");
            }
            var features = cat([seen["m_norm"], read], 1);
            var beta = (features.matmul(parameters["adam.beta.weight"].t()) + parameters["adam.beta.bias"]).sigmoid();
            var gamma = (features.matmul(parameters["adam.gamma.weight"].t()) + parameters["adam.gamma.bias"]).sigmoid();
            var rho = nn.functional.elu(st.matmul(parameters["weight.weight"].t()) + parameters["weight.bias"], 1.0, false);
            Assert.True((beta - seen["beta"]).abs().max().ToDouble() < 1e-12, $"step {t}: β");
            Assert.True((gamma - seen["gamma"]).abs().max().ToDouble() < 1e-12, $"step {t}: γ");
            Assert.True((rho - seen["rho"]).abs().max().ToDouble() < 1e-12, $"step {t}: ρ");
        }
    }

    [Fact]
    public void State_norm_runs_on_the_engine_in_the_lanes_layout_whatever_the_layout_asked()
    {
        using var learned = LearnedRegistry.Create("hyperadam:j=3,state-norm=true");
        Assert.Null(L2O.Engine.Backends.Unsupported(learned, CPU, ScalarType.Float32));
        var rows = new L2O.Engine.EngineOptions { Layout = L2O.Engine.CellLayout.Rows };
        var engine = L2O.Engine.Backends.CreateEngine(learned, Backend.Engine, rows)!;
        Assert.StartsWith("HyperAdamLanesCell", engine.Cell.GetType().Name);
        Assert.True(engine.Cell.HasStatePhase);
        using var plain = LearnedRegistry.Create("hyperadam:j=3");
        var plainEngine = L2O.Engine.Backends.CreateEngine(plain, Backend.Engine, rows)!;
        Assert.StartsWith("HyperAdamCell", plainEngine.Cell.GetType().Name);
        Assert.False(plainEngine.Cell.HasStatePhase);
    }

    [Fact]
    public void Rms_normalisation_has_unit_root_mean_square()
    {
        using var scope = NewDisposeScope();
        var x = randn([1000, 3], dtype: ScalarType.Float64) * 1e-3;
        Assert.Equal(1.0, Cells.SafeNormalize(x, rms: true).square().mean().ToDouble(), 9);
        var columns = Cells.SafeNormalize(x, 0, rms: true).square().mean([0L]).data<double>().ToArray();
        Assert.All(columns, c => Assert.Equal(1.0, c, 9));
        Assert.Equal(0.0, Cells.SafeNormalize(zeros([5], dtype: ScalarType.Float64), rms: true).abs().max().ToDouble());
    }

    [Fact]
    public void Lemma_1_bias_factors_equal_one_minus_beta_to_the_t()
    {
        using var h = Make(2);
        MakeConstant(h, 0.8, 0.95);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = randn(6, dtype: ScalarType.Float64);
        var s = (HyperAdamState)h.Rule.Init(w);
        for (int t = 1; t <= 8; t++)
        {
            var step = h.Rule.Step(randn(6, dtype: ScalarType.Float64), w, s);
            s = (HyperAdamState)step.State;
            Assert.True((s.BetaHat - (1 - Math.Pow(0.8, t))).abs().max().ToDouble() < 1e-12);
            Assert.True((s.GammaHat - (1 - Math.Pow(0.95, t))).abs().max().ToDouble() < 1e-12);
        }
    }

    [Fact]
    public void With_one_candidate_constant_decays_and_unit_weight_it_is_Adam()
    {
        using var h = Make(1, stepSize: 0.05);
        MakeConstant(h, 0.9, 0.999);
        var adam = new Adam(new AdamOptions { LearningRate = 0.05, Beta1 = 0.9, Beta2 = 0.999, Epsilon = 0 });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var gen = new Generator(9);
        var w = randn([10], dtype: ScalarType.Float64, generator: gen);
        var (sh, sa) = (h.Rule.Init(w), adam.Init(w));
        for (int t = 0; t < 20; t++)
        {
            var g = randn([10], dtype: ScalarType.Float64, generator: gen);
            var a = h.Rule.Step(g, w, sh);
            var b = adam.Step(g, w, sa);
            // HyperAdam's ε = 1e-24 sits inside the square root; with |v| ≫ 1e-24 the difference is negligible.
            Assert.True(Numeric.MaxAbsDiff(a.Update, b.Update) < 1e-12, $"step {t}");
            (sh, sa) = (a.State, b.State);
            w = w + b.Update;
        }
    }

    [Fact]
    public void Updates_are_invariant_to_the_scale_of_the_gradient()
    {
        using var h = Make(5);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var gen = new Generator(4);
        var w = randn([12], dtype: ScalarType.Float64, generator: gen);
        var (s1, s2) = (h.Rule.Init(w), h.Rule.Init(w));
        for (int t = 0; t < 15; t++)
        {
            var g = randn([12], dtype: ScalarType.Float64, generator: gen);
            var a = h.Rule.Step(g, w, s1);
            var b = h.Rule.Step(g * 1000, w, s2);
            double rel = Numeric.MaxAbsDiff(a.Update, b.Update) / a.Update.abs().max().ToDouble();
            Assert.True(rel < 1e-9, $"step {t}: relative difference {rel}");
            (s1, s2) = (a.State, b.State);
            w = w + a.Update;
        }
    }

    [Fact]
    public void Meta_parameters_have_the_documented_names_and_shapes()
    {
        using var h = Make(20);
        var shapes = h.Parameters.ToDictionary(p => p.Name, p => p.Parameter.shape);
        Assert.Equal(new long[] { 20, 1 }, shapes["state.pre.weight"]);
        Assert.Equal(new long[] { 80, 20 }, shapes["state.lstm.weight_ih"]);
        Assert.Equal(new long[] { 80, 20 }, shapes["state.lstm.weight_hh"]);
        Assert.Equal(new long[] { 80 }, shapes["state.lstm.bias"]);
        Assert.Equal(new long[] { 20, 40 }, shapes["adam.beta.weight"]);
        Assert.Equal(new long[] { 20, 40 }, shapes["adam.gamma.weight"]);
        Assert.Equal(new long[] { 20, 20 }, shapes["weight.weight"]);
        // LSTM forget-gate bias starts at +1, the other gates at 0.
        var b = h.Parameters.Single(p => p.Name == "state.lstm.bias").Parameter;
        Assert.Equal(20.0, b.narrow(0, 20, 20).sum().ToDouble());
        Assert.Equal(20.0, b.sum().ToDouble());
    }

    [Fact]
    public void Initial_decay_rates_are_about_one_half()
    {
        // Glorot weights with zero bias: σ(≈0) ≈ 0.5, as the authors' code starts (not 0.9 / 0.999).
        using var h = Make(20);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = randn(50, dtype: ScalarType.Float64);
        var s = (HyperAdamState)h.Rule.Step(randn(50, dtype: ScalarType.Float64), w, h.Rule.Init(w)).State;
        // β̂_1 = 1 − β_1.
        double meanBeta = (1 - s.BetaHat).mean().ToDouble();
        Assert.InRange(meanBeta, 0.35, 0.65);
    }
}

public class RnnPropAndDmTests
{
    [Fact]
    public void RnnProp_inputs_are_Adams_normalised_moments()
    {
        var o = new RnnPropOptions();
        var adam = new Adam(new AdamOptions { LearningRate = 1, Beta1 = 0.95, Beta2 = 0.95, Epsilon = 1e-8 });
        using var scope = NewDisposeScope();
        using var gen = new Generator(2);
        var w = zeros(6, dtype: ScalarType.Float64);
        var s = (TwoMomentState)adam.Init(w);
        var (m, v) = (s.M, s.V);
        for (int t = 1; t <= 10; t++)
        {
            var g = randn([6], dtype: ScalarType.Float64, generator: gen);
            var (inputs, m2, v2) = RnnProp.Inputs(g, m, v, t, o);
            var a = adam.Step(g, w, s);
            // Adam with α = 1 moves by −m̂/(√v̂ + ε); RNNprop's second input is m̂/(√v̂ + ε).
            Assert.True(Numeric.MaxAbsDiff(inputs.select(1, 1), -a.Update) < 1e-12);
            var vHat = v2 / (1 - Math.Pow(0.95, t));
            Assert.True(Numeric.MaxAbsDiff(inputs.select(1, 0), g / (vHat.sqrt() + 1e-8)) < 1e-12);
            s = (TwoMomentState)a.State;
            (m, v) = (m2, v2);
        }
    }

    [Fact]
    public void RnnProp_steps_are_bounded_by_alpha()
    {
        using var r = LearnedRegistry.Create("rnnprop:lr=0.1", Contexts.DoubleBuild);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = zeros(100, dtype: ScalarType.Float64);
        var step = r.Rule.Step(randn(100, dtype: ScalarType.Float64) * 1e6, w, r.Rule.Init(w));
        Assert.True(step.Update.abs().max().ToDouble() <= 0.1);
    }

    [Fact]
    public void LogAndSign_matches_its_definition()
    {
        using var scope = NewDisposeScope();
        var g = tensor(new[] { 1.0, -1e-4, 0.0, 1e-2 });
        var x = DmOptimizer.LogAndSign(g, 5);
        double eps = 1.1920928955078125e-07;
        var expectedLog = new[] { Math.Log(1 + eps) / 5, Math.Max(Math.Log(1e-4 + eps) / 5, -1), -1, Math.Log(1e-2 + eps) / 5 };
        var expectedSign = new[] { 1.0, Math.Max(-1e-4 * Math.Exp(5), -1), 0, Math.Min(1e-2 * Math.Exp(5), 1) };
        Assert.Equal(expectedLog, x.select(1, 0).data<double>().ToArray(), new ToleranceComparer(1e-12));
        Assert.Equal(expectedSign, x.select(1, 1).data<double>().ToArray(), new ToleranceComparer(1e-12));
    }

    private sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double x) => 0;
    }
}

public class ThesisLearnedTests
{
    [Fact]
    public void Step_is_the_product_of_expected_magnitude_and_expected_sign()
    {
        using var o = (NormalizedHistoryOptimizer)LearnedCases.Create("k-timesteps:k=3,hidden=4");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // Zero output weights: uniform softmaxes → E[mag] = mean(linspace(0,1,10)) = 0.5, E[sign] = 0.
        foreach (var (n, p) in o.Parameters) if (n.StartsWith("mlp.out")) p.zero_();
        var d = o.Delta(randn(5, 3, dtype: ScalarType.Float64));
        Assert.True(d.abs().max().ToDouble() < 1e-15);
        // Bias the sign logits hard towards +1 and the largest magnitude: δ → 1.
        var bias = o.Parameters.Single(p => p.Name == "mlp.out.bias").Parameter;
        bias[9] = tensor(60.0);
        bias[11] = tensor(60.0);
        d = o.Delta(randn(5, 3, dtype: ScalarType.Float64));
        Assert.True((d - 1).abs().max().ToDouble() < 1e-12);
    }

    [Fact]
    public void Multiscale_adam_la_b_weights_are_convex_and_la_a_sum_to_one()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (spec, convex) in new[] { ("multiscale-adam:combiner=la-b", true), ("multiscale-adam:combiner=la-a", false) })
        {
            using var o = (MultiscaleAdam)LearnedCases.Create(spec);
            o.Parameters[0].Parameter.copy_(tensor(new[] { 2.0, -1, 0.5, 0.5, 1, -2 }));
            var w = o.Weights(zeros(1, 6, dtype: ScalarType.Float64));
            Assert.Equal(1.0, w.sum().ToDouble(), 12);
            Assert.Equal(convex, w.min().ToDouble() >= 0);
        }
    }

    [Fact]
    public void Multiscale_adam_with_one_hot_weights_is_that_adam()
    {
        // LA_c with weight 1 on Adam(0.9, 0.999) reproduces that Adam at rate η.
        using var o = (MultiscaleAdam)LearnedCases.Create("multiscale-adam:combiner=la-c,lr=0.01");
        var adam = new Adam(new AdamOptions { LearningRate = 0.01, Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8 });
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        o.Parameters[0].Parameter.copy_(tensor(new[] { 0.0, 1, 0, 0, 0, 0 }));
        var w = randn(8, dtype: ScalarType.Float64);
        var (s1, s2) = (o.Rule.Init(w), adam.Init(w));
        for (int t = 0; t < 10; t++)
        {
            var g = randn(8, dtype: ScalarType.Float64);
            var a = o.Rule.Step(g, w, s1);
            var b = adam.Step(g, w, s2);
            Assert.True(Numeric.MaxAbsDiff(a.Update, b.Update) < 1e-14);
            (s1, s2) = (a.State, b.State);
        }
    }
}

public class CheckpointFormatTests
{
    [Fact]
    public void Checkpoints_under_pretrained_load_from_the_library_when_the_file_is_not_in_the_working_folder()
    {
        // The tests run in bin/, where pretrained/ablations/ does not exist: every shipped ablation loads from the embedded copy, equal to the file.
        var files = Directory.GetFiles(DocSnippetTests.RepositoryFile("pretrained/ablations"), "*.safetensors");
        Assert.Equal(12, files.Length);
        foreach (var file in files)
        {
            string relative = "pretrained/ablations/" + Path.GetFileName(file);
            Assert.False(File.Exists(relative));
            using var embedded = LearnedRegistry.Load(relative);
            using var onDisk = LearnedRegistry.Load(file);
            using var scope = NewDisposeScope();
            Assert.Equal(onDisk.Flatten().data<float>().ToArray(), embedded.Flatten().data<float>().ToArray());
        }
        Assert.Null(Pretrained.TryLoadShipped("pretrained/ablations/hyperadam-j2.safetensors"));
        Assert.Null(Pretrained.TryLoadShipped("pretrained/../pretrained/hyperadam.safetensors"));
        Assert.Contains("does not exist", Assert.Throws<L2OException>(() => LearnedRegistry.Load("pretrained/ablations/nope.safetensors")).Message);
    }

    [Fact]
    public void Safetensors_round_trip_and_header_layout()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        string path = dir.File("x.safetensors");
        var a = arange(6, dtype: ScalarType.Float32).view(2, 3);
        SafeTensors.Save(path, [("a", a), ("b.c", ones(4))], new Dictionary<string, string> { ["k"] = "v" });
        byte[] bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, n % 8);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Contains("\"dtype\":\"F32\"", header);
        Assert.Contains("\"shape\":[2,3]", header);
        Assert.Contains("\"__metadata__\":{\"k\":\"v\"}", header);
        var c = SafeTensors.Load(path);
        Assert.Equal("v", c.Metadata["k"]);
        Assert.Equal(a.data<float>().ToArray(), c["a"].data<float>().ToArray());
        Assert.Equal(new long[] { 2, 3 }, c["a"].shape);
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 }, "shorter")]
    [InlineData(new byte[] { 255, 0, 0, 0, 0, 0, 0, 0, 123 }, "truncated")]
    [InlineData(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'x' }, "not valid JSON")]
    public void Corrupt_checkpoints_name_the_file_and_the_problem(byte[] content, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<L2O.Data.DataFormatException>(() => SafeTensors.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Checkpoint_of_another_method_or_with_conflicting_options_is_refused()
    {
        using var dir = new TempDir();
        using var h = LearnedRegistry.Create("hyperadam:j=4");
        string path = dir.File("h.safetensors");
        h.Save(path);
        var e1 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create($"rnnprop:checkpoint={path}"));
        Assert.Contains("holds a hyperadam optimizer", e1.Message);
        var e2 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create($"hyperadam:checkpoint={path},j=8"));
        Assert.Contains("'j=8' conflicts with the checkpoint's 'j=4'", e2.Message);
        // The shipped checkpoints predate gamma-min: they were trained with its default, so another value conflicts.
        var e4 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("hyperadam:checkpoint=pretrained-mix,gamma-min=0.99"));
        Assert.Contains("'gamma-min=0.99' conflicts with the checkpoint's 'gamma-min=0'", e4.Message);
        // An option written at its default value is still given: j=20 (the default) against a j=4 file, and
        // field-clip=0 (no bound, the default) against pretrained-mix, which ships with field-clip=10.
        var e5 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create($"hyperadam:checkpoint={path},j=20"));
        Assert.Contains("'j=20' conflicts with the checkpoint's 'j=4'", e5.Message);
        var e6 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("hyperadam:checkpoint=pretrained-mix,field-clip=0"));
        Assert.Contains("'field-clip=0' conflicts with the checkpoint's 'field-clip=10'", e6.Message);
        Assert.Equal("hyperadam(pretrained-mix)", OptimizerRegistry.Create("hyperadam:checkpoint=pretrained-mix,field-clip=10").Name);
        // A record built in code cannot say what was written, so only values away from the defaults are checked.
        using var fromCode = LearnedRegistry.Build(LearnedRegistry.Find("hyperadam"), new HyperAdamOptions { Checkpoint = path }, BuildContext.Cpu);
        Assert.Equal(4, ((HyperAdamOptions)fromCode.Options).Candidates);
        var rule = OptimizerRegistry.Create($"hyperadam:checkpoint={path}");
        Assert.Equal("hyperadam(h)", rule.Name);
        var e3 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create($"hyperadam:checkpoint={dir.File("missing.safetensors")}"));
        Assert.Contains("does not exist", e3.Message);
    }
}
