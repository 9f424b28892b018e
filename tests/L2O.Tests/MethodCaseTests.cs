using L2O.Checkpoints;
using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Specs;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>
/// One row per registered optimizer, generated from the definitions (torch.optim's OptimizerInfo idea):
/// the capability flags say which suites apply, and the examples are the configurations they run.
/// </summary>
/// <param name="Name">Registry name.</param>
/// <param name="Learned">A learned method (has a <see cref="LearnedMethod"/> definition).</param>
/// <param name="Fused">The fused engine has a cell for it.</param>
/// <param name="Pretrained">A checkpoint ships with the library.</param>
/// <param name="Examples">Specifications the suites run: the definition's examples (learned), or the settings that train the test problems (hand-designed).</param>
/// <param name="Oracle">torch.optim's implementation of the same rule, where it has one: the trajectory is held to it.</param>
/// <param name="CheckedBy">Where torch.optim has no counterpart, the test that pins the equations instead.</param>
/// <param name="Engine">For a fused method, how close its fused cell must stay to the float64 reference.</param>
public sealed record MethodCase(string Name, bool Learned, bool Fused, bool Pretrained, string[] Examples, TorchOracle? Oracle, string? CheckedBy,
    EngineTolerance? Engine = null)
{
    public override string ToString() => Name;
}

/// <summary>
/// The fused engine's tolerances against the float64 reference (issue #11): the worst relative error of an update over
/// 100 steps, and of the first-order meta-gradient and meta-loss over two unrolls.
/// </summary>
/// <param name="Float32Yardstick">Where a method's meta-gradient is ill-conditioned in float32 on the test problems, the
/// meta-gradient bound is at least twice the float32 reference's own error on the same problem
/// (<see cref="EngineMetaGradientTests.MetaGradientBound"/>): the engine is held to what float32 arithmetic of the
/// specification reaches, not to less.</param>
public sealed record EngineTolerance(double Update = 1e-4, double MetaGradient = 1e-3, double MetaLoss = 1e-4, bool Float32Yardstick = false)
{
    public static EngineTolerance Default { get; } = new();

    /// <summary>
    /// Multiscale Adam: the averaging combiners' meta-gradient is Σ ā(δ)(s_j − δ), the spread of the k unit-rate Adam steps
    /// around their average. Where the timescales agree (a noise-free quadratic: every s_j ≈ ±1) that is a difference of
    /// nearly equal float32 numbers. Measured on the 37-coordinate quadratic, two 10-step unrolls: the float32 TorchSharp
    /// reference is 4.0e-3 from the float64 one (la-b, mlp), the engine 6.1e-3; la-c, which has no such difference,
    /// 2.4e-6 and 3.8e-6.
    /// </summary>
    public static EngineTolerance MultiscaleAdam { get; } = new(Float32Yardstick: true);
}

/// <summary>Our rule <paramref name="Spec"/> and torch.optim's <paramref name="Create"/> with the same settings; trajectories agree to <paramref name="Tolerance"/> (float64).</summary>
public sealed record TorchOracle(string Spec, Func<TorchSharp.Modules.Parameter, torch.optim.Optimizer> Create, double Tolerance = 1e-10);

public static class MethodCases
{
    /// <summary>torch.optim counterparts of the hand-designed rules (settings away from the defaults, so each one matters).</summary>
    private static readonly Dictionary<string, TorchOracle> Oracles = new()
    {
        ["sgd"] = new("sgd:lr=0.03", p => torch.optim.SGD([p], 0.03)),
        ["heavy-ball"] = new("heavy-ball:lr=0.02,momentum=0.8", p => torch.optim.SGD([p], 0.02, momentum: 0.8)),
        ["nesterov"] = new("nesterov:lr=0.02,momentum=0.8", p => torch.optim.SGD([p], 0.02, momentum: 0.8, nesterov: true)),
        ["adagrad"] = new("adagrad:lr=0.3,eps=1e-10,initial=0.1", p => torch.optim.Adagrad([p], lr: 0.3, initial_accumulator_value: 0.1, eps: 1e-10)),
        ["adadelta"] = new("adadelta:lr=2,rho=0.9,eps=1e-6", p => torch.optim.Adadelta([p], lr: 2.0, rho: 0.9, eps: 1e-6)),
        ["rmsprop"] = new("rmsprop:lr=0.01,rho=0.9,eps=1e-8", p => torch.optim.RMSProp([p], lr: 0.01, alpha: 0.9, eps: 1e-8)),
        ["adam"] = new("adam:lr=0.05,beta1=0.85,beta2=0.99,eps=1e-8", p => torch.optim.Adam([p], lr: 0.05, beta1: 0.85, beta2: 0.99, eps: 1e-8)),
        ["adamax"] = new("adamax:lr=0.05,beta1=0.85,beta2=0.99,eps=1e-8", p => torch.optim.Adamax([p], lr: 0.05, beta1: 0.85, beta2: 0.99, eps: 1e-8)),
    };

    /// <summary>The test that pins a rule torch.optim does not have.</summary>
    private static readonly Dictionary<string, string> CheckedByHand = new()
    {
        ["momentum"] = nameof(HandComputedTests.Ema_momentum_follows_m_t_equals_1_minus_gamma_to_the_t_for_unit_gradients),
        ["mng"] = nameof(HandComputedTests.Mng_first_steps_match_algorithm_1_by_hand),
    };

    public static IReadOnlyList<MethodCase> All { get; } = OptimizerRegistry.All.Select(o => o.Learned
        ? new MethodCase(o.Name, true, FusedCells.Find(o.Name) is not null, Pretrained.Methods.Contains(o.Name), LearnedRegistry.Find(o.Name).Examples,
            null, nameof(LearnedOptimizerTests.First_order_meta_gradient_matches_central_differences),
            FusedCells.Find(o.Name) is null ? null : o.Name == "multiscale-adam" ? EngineTolerance.MultiscaleAdam : EngineTolerance.Default)
        : new MethodCase(o.Name, false, false, false, (OptimizerCaseTests.Cases.TryGetValue(o.Name, out var example) ? [example] : []), Oracles.GetValueOrDefault(o.Name), CheckedByHand.GetValueOrDefault(o.Name))).ToList();

    public static TheoryData<string> WithOracle() => Where(c => c.Oracle is not null);

    public static TheoryData<string> Where(Func<MethodCase, bool> filter)
    {
        var d = new TheoryData<string>();
        foreach (var c in All.Where(filter)) d.Add(c.Name);
        return d;
    }

    public static TheoryData<string> Examples(Func<MethodCase, bool> filter)
    {
        var d = new TheoryData<string>();
        foreach (var c in All.Where(filter)) foreach (var e in c.Examples) d.Add(e);
        return d;
    }

    public static TheoryData<string> Everything() => Where(_ => true);
    public static TheoryData<string> HandDesigned() => Where(c => !c.Learned);

    /// <summary>The engine tolerances of the method <paramref name="spec"/> names.</summary>
    public static EngineTolerance EngineToleranceOf(string spec) => Find(Spec.Parse(spec).Name).Engine
        ?? throw new InvalidOperationException($"{spec}: not a fused method");
    public static TheoryData<string> LearnedExamples() => Examples(c => c.Learned);
    /// <summary>The fused methods' examples that the engine runs (on the CPU in float32: all of them).</summary>
    public static TheoryData<string> FusedExamples()
    {
        var d = new TheoryData<string>();
        foreach (var e in EngineRunExamples()) d.Add(e);
        return d;
    }

    public static List<string> EngineRunExamples()
    {
        var list = new List<string>();
        foreach (var c in All.Where(c => c.Fused))
            foreach (var e in c.Examples)
            {
                using var learned = LearnedRegistry.Create(e, BuildContext.Cpu);
                if (Backends.Unsupported(learned, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32) is null) list.Add(e);
            }
        return list;
    }

    /// <summary><see cref="FusedExamples"/> in each layout its cell has (rows and lanes, or lanes only).</summary>
    public static TheoryData<string, CellLayout> FusedExamplesInEachLayout()
    {
        var d = new TheoryData<string, CellLayout>();
        foreach (var spec in EngineRunExamples())
        {
            var info = FusedCells.Find(Spec.Parse(spec).Name)!;
            using (var learned = LearnedRegistry.Create(spec, BuildContext.Cpu))
                if (!info.OnlyLanes(learned)) d.Add(spec, CellLayout.Rows);
            d.Add(spec, CellLayout.Lanes);
        }
        return d;
    }

    /// <summary><see cref="FusedExamplesInEachLayout"/> at each narrower vector width (AVX2, scalar); the automatic width is the other theories'.</summary>
    public static TheoryData<string, CellLayout, SimdWidth> FusedExamplesInEachLayoutAtNarrowerWidths()
    {
        var d = new TheoryData<string, CellLayout, SimdWidth>();
        foreach (var row in FusedExamplesInEachLayout())
            foreach (var width in new[] { SimdWidth.Avx2, SimdWidth.Scalar })
                d.Add((string)row[0], (CellLayout)row[1], width);
        return d;
    }

    public static TheoryData<string> PretrainedMethods() => Where(c => c.Pretrained);

    public static MethodCase Find(string name) => All.Single(c => c.Name == name);
}

/// <summary>The definitions drive the reference, the checkpoints and the engine: each is held to the schema.</summary>
public class MethodDefinitionTests
{
    [Fact]
    public void Every_rule_is_held_to_torch_optim_or_to_a_named_hand_check()
    {
        Assert.All(MethodCases.All, c => Assert.True(c.Oracle is not null ^ c.CheckedBy is not null, $"{c.Name}: needs exactly one of a torch.optim oracle or a named check"));
        var tests = typeof(MethodCases).Assembly.GetTypes().SelectMany(t => t.GetMethods()).Select(m => m.Name).ToHashSet();
        Assert.All(MethodCases.All.Where(c => c.CheckedBy is not null), c => Assert.Contains(c.CheckedBy!, tests));
        Assert.All(MethodCases.All.Where(c => c.Oracle is not null), c => Assert.Equal(c.Name, OptimizerRegistry.Find(Spec.Parse(c.Oracle!.Spec).Name).Name));
    }

    [Fact]
    public void The_table_has_every_registered_optimizer_with_examples()
    {
        Assert.Equal(OptimizerRegistry.All.Select(o => o.Name).Order(), MethodCases.All.Select(c => c.Name).Order());
        Assert.All(MethodCases.All, c => Assert.NotEmpty(c.Examples));
        Assert.All(MethodCases.All.Where(c => c.Learned), c => Assert.All(c.Examples, e => Assert.Equal(c.Name, Spec.Parse(e).Name)));
        // The engine's cells and the shipped checkpoints are of learned methods only.
        Assert.All(MethodCases.All.Where(c => c.Fused || c.Pretrained), c => Assert.True(c.Learned));
        Assert.Equal(["dmoptimizer", "hyperadam", "k-momentums", "k-timesteps", "multiscale-adam", "rnnprop"], MethodCases.All.Where(c => c.Fused).Select(c => c.Name).Order());
    }

    [Theory]
    [MemberData(nameof(MethodCases.LearnedExamples), MemberType = typeof(MethodCases))]
    public void The_reference_registers_exactly_the_schema_in_order(string spec)
    {
        using var learned = LearnedRegistry.Create(spec, Contexts.DoubleBuild);
        var schema = learned.Schema;
        Assert.Equal(schema.Select(m => m.Name), learned.Parameters.Select(p => p.Name));
        foreach (var (m, (_, p)) in schema.Zip(learned.Parameters)) Assert.Equal(m.Shape, p.shape);
        Assert.Equal(schema.Sum(m => m.Count), learned.ParameterCount);
    }

    [Theory]
    [MemberData(nameof(MethodCases.LearnedExamples), MemberType = typeof(MethodCases))]
    public void The_initialisation_is_a_function_of_the_seed(string spec)
    {
        using var a = LearnedRegistry.Create(spec + ",init-seed=5", Contexts.DoubleBuild);
        using var b = LearnedRegistry.Create(spec + ",init-seed=5", Contexts.DoubleBuild);
        using var c = LearnedRegistry.Create(spec + ",init-seed=6", Contexts.DoubleBuild);
        using var fa = a.Flatten();
        using var fb = b.Flatten();
        using var fc = c.Flatten();
        Assert.True(fa.equal(fb).all().item<bool>());
        Assert.False(fa.equal(fc).all().item<bool>());
    }

    [Fact]
    public void Each_initialiser_draws_what_it_describes()
    {
        using var g = new Generator(11);
        using var glorot = MetaInitializer.GlorotUniform.Draw([40, 10], g);
        double bound = Math.Sqrt(6.0 / 50);
        Assert.True(glorot.abs().max().ToDouble() <= bound);
        Assert.True(glorot.abs().max().ToDouble() > 0.9 * bound);   // 400 draws reach the bound's last tenth
        using var joined = MetaInitializer.GlorotUniformOver(7, 12).Draw([12, 3], g);
        Assert.True(joined.abs().max().ToDouble() <= Math.Sqrt(6.0 / 19));
        using var truncated = MetaInitializer.TruncatedNormal(0.1).Draw([2000], g);
        Assert.True(truncated.abs().max().ToDouble() <= 0.2);
        Assert.InRange(truncated.std().ToDouble(), 0.08, 0.092);    // a ±2σ truncated normal has σ ≈ 0.88 σ₀
        using var bias = MetaInitializer.LstmBias(1.0).Draw([12], g);
        Assert.Equal([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], bias.data<double>().ToArray());
        using var average = MetaInitializer.NearAverage(0.01).Draw([6], g);
        Assert.Equal(1.0, average.sum().ToDouble(), 1);
        Assert.All(average.data<double>().ToArray(), w => Assert.InRange(w, 0.9 / 6, 1.1 / 6));
        Assert.Throws<InvalidOperationException>(() => MetaInitializer.LstmBias(1.0).Draw([5], g));
    }

    /// <summary>The fused cell, in each layout it has, reads every meta-parameter of the schema (with its size) and writes the meta-gradient of exactly those.</summary>
    [Theory]
    [MemberData(nameof(MethodCases.FusedExamplesInEachLayout), MemberType = typeof(MethodCases))]
    public void The_fused_cell_reads_and_writes_exactly_the_schema(string spec, CellLayout layout)
    {
        using var learned = LearnedRegistry.Create(spec, BuildContext.Cpu);
        var schema = learned.Schema.ToDictionary(m => m.Name, m => m.Count);
        var cell = FusedCells.Create(learned, SimdWidth.Scalar, 16, layout)!;
        var read = new Dictionary<string, long>();
        var values = TensorMemory.Reader(learned);
        cell.Load(name =>
        {
            var v = values(name);
            read[name] = v.Length;
            return v;
        });
        Assert.Equal(schema.OrderBy(kv => kv.Key), read.OrderBy(kv => kv.Key));
        var written = new Dictionary<string, long>();
        cell.Unpack(new double[cell.GradientFloats], (name, g) => written.Add(name, g.Length));
        Assert.Equal(schema.OrderBy(kv => kv.Key), written.OrderBy(kv => kv.Key));
    }

    [Theory]
    [MemberData(nameof(MethodCases.PretrainedMethods), MemberType = typeof(MethodCases))]
    public void The_shipped_checkpoint_holds_the_schema_of_its_options(string method)
    {
        var contents = Pretrained.Load(method);
        try
        {
            using var learned = LearnedRegistry.Load(Pretrained.Keyword, Contexts.DoubleBuild, method);
            var stored = contents.Tensors.Where(t => !t.Name.StartsWith("trainer.", StringComparison.Ordinal)).ToDictionary(t => t.Name, t => t.Tensor.shape);
            Assert.Equal(learned.Schema.Select(m => m.Name).Order(), stored.Keys.Order());
            Assert.All(learned.Schema, m => Assert.Equal(m.Shape, stored[m.Name]));
        }
        finally
        {
            foreach (var (_, t) in contents.Tensors) t.Dispose();
        }
    }

    /// <summary>
    /// The definition's examples together set every option away from its default (only <c>checkpoint</c> and
    /// <c>init-seed</c> choose Θ rather than the rule), so each suite that runs the examples (finite differences,
    /// engine equivalence, checkpoints) covers each option; an option added without an example fails here. For a
    /// fused method the engine runs every example (on the CPU in float32), so the engine suites cover each option too.
    /// </summary>
    [Fact]
    public void The_examples_set_every_option_away_from_its_default()
    {
        var fused = MethodCases.EngineRunExamples().ToHashSet();
        foreach (var method in LearnedRegistry.Methods)
        {
            var defaults = OptionsBinder.ToArguments(Activator.CreateInstance(method.OptionsType)!);
            IEnumerable<string> Missing(IEnumerable<string> examples)
            {
                var varied = new HashSet<string> { "checkpoint", "init-seed" };
                foreach (var example in examples)
                {
                    var bound = OptionsBinder.ToArguments(OptionsBinder.Bind(method.OptionsType, method.Name, Spec.Parse(example).Arguments));
                    varied.UnionWith(bound.Where(kv => kv.Value != defaults[kv.Key]).Select(kv => kv.Key));
                }
                return defaults.Keys.Where(k => !varied.Contains(k)).Order();
            }
            Assert.True(!Missing(method.Examples).Any(), $"{method.Name}: no example sets {string.Join(", ", Missing(method.Examples))}");
            if (FusedCells.Find(method.Name) is null) continue;
            var notRun = method.Examples.Where(e => !fused.Contains(e)).ToList();
            Assert.True(notRun.Count == 0, $"{method.Name}: the engine does not run {string.Join(", ", notRun)}");
        }
    }

    [Theory]
    [MemberData(nameof(MethodCases.LearnedExamples), MemberType = typeof(MethodCases))]
    public void Recommended_training_comes_from_the_definition(string spec)
    {
        using var learned = LearnedRegistry.Create(spec, Contexts.DoubleBuild);
        var d = learned.TrainingDefaults;
        Assert.True(d.Unroll >= 1);
        Assert.InRange(d.MetaLearningRate, 1e-6, 1e-2);
        Assert.Equal(LearnedRegistry.Find(learned.Method).Training(learned.Options), d);
    }
}

/// <summary>The error-input table, generated for every option of every registered optimizer.</summary>
public class MethodErrorInputTests
{
    public static TheoryData<string, string, string> BadOptions()
    {
        var d = new TheoryData<string, string, string>();
        foreach (var o in OptimizerRegistry.All)
        {
            d.Add(o.Name, "no-such-option=1", "unknown option 'no-such-option'");
            foreach (var option in OptionsBinder.Describe(o.OptionsType))
            {
                if (option.Type.StartsWith("text", StringComparison.Ordinal)) continue;   // paths: any text parses
                d.Add(o.Name, $"{option.Key}=abc", $"'{option.Key}'");
                if (option.Type.StartsWith("number", StringComparison.Ordinal)) d.Add(o.Name, $"{option.Key}=nan", $"'{option.Key}'");
            }
        }
        return d;
    }

    /// <summary>Every option rejects a value of the wrong type, and every real-valued option rejects NaN, with a message naming it.</summary>
    [Theory]
    [MemberData(nameof(BadOptions))]
    public void A_bad_option_value_is_one_line_naming_the_option(string method, string argument, string expected)
    {
        var e = Assert.Throws<L2OException>(() =>
        {
            var rule = OptimizerRegistry.Create($"{method}:{argument}", Contexts.DoubleBuild);
            (rule as IDisposable)?.Dispose();
        });
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>
    /// Boundary values for every number and integer option of every registered optimizer: negative, zero and (for
    /// numbers) infinite and huge. Which of them an option accepts is its own range; what the table holds to is how a
    /// refused one is refused.
    /// </summary>
    public static TheoryData<string, string, string> BoundaryOptions()
    {
        var d = new TheoryData<string, string, string>();
        foreach (var o in OptimizerRegistry.All)
            foreach (var option in OptionsBinder.Describe(o.OptionsType))
            {
                string[] values = option.Type.StartsWith("number", StringComparison.Ordinal) ? ["-1", "0", "Infinity", "-Infinity", "1e30", "-1e30"]
                    : option.Type.StartsWith("integer", StringComparison.Ordinal) ? ["-1", "0"] : [];
                foreach (var v in values) d.Add(o.Name, option.Key, v);
            }
        return d;
    }

    /// <summary>A boundary value is either accepted (and gives a rule) or refused by a one-line L2OException naming the option; never another exception.</summary>
    [Theory]
    [MemberData(nameof(BoundaryOptions))]
    public void A_boundary_option_value_is_accepted_or_refused_in_one_line_naming_the_option(string method, string key, string value)
    {
        try
        {
            var rule = OptimizerRegistry.Create($"{method}:{key}={value}", Contexts.DoubleBuild);
            Assert.NotNull(rule);
            (rule as IDisposable)?.Dispose();
        }
        catch (L2OException e)
        {
            Assert.Contains($"'{key}'", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    /// <summary>A checkpoint whose tensor has another shape than the schema says is refused with the name and both shapes.</summary>
    [Theory]
    [MemberData(nameof(MethodCases.LearnedExamples), MemberType = typeof(MethodCases))]
    public void A_checkpoint_tensor_of_the_wrong_shape_is_named(string spec)
    {
        using var dir = new TempDir();
        using var learned = LearnedRegistry.Create(spec, Contexts.DoubleBuild);
        var first = learned.Schema[0];
        string path = dir.File("bad.safetensors");
        learned.Save(path);
        var contents = SafeTensors.Load(path);
        var tensors = contents.Tensors.Select(t => t.Name == first.Name ? (t.Name, zeros(first.Count + 1, dtype: ScalarType.Float64)) : (t.Name, t.Tensor)).ToList();
        SafeTensors.Save(path, tensors, contents.Metadata);
        foreach (var (_, t) in tensors) t.Dispose();
        var e = Assert.Throws<L2OException>(() => LearnedRegistry.Load(path, Contexts.DoubleBuild));
        Assert.Contains($"tensor '{first.Name}' has shape [{first.Count + 1}], expected [{string.Join(", ", first.Shape)}]", e.Message);
    }
}
