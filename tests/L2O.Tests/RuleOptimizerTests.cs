using L2O.Engine;
using L2O.Learned;
using L2O.Optimizers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace L2O.Tests;

/// <summary>The torch.optim-shaped optimizers (<see cref="L2O.Optim"/>): behaviour users of torch.optim rely on.</summary>
public class RuleOptimizerTests
{
    private static nn.Module<Tensor, Tensor> Mlp(long seed, ScalarType dtype = ScalarType.Float32)
    {
        manual_seed(seed);
        var m = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3));
        m.to(dtype);
        return m;
    }

    /// <summary>One training step's batch, drawn from a seeded stream so that every run sees the same data.</summary>
    private static (Tensor X, Tensor Y) Batch(Generator gen, ScalarType dtype = ScalarType.Float32) =>
        (randn([16, 5], dtype: dtype, generator: gen), randint(3, [16], generator: gen));

    private static void TrainStep(nn.Module<Tensor, Tensor> model, torch.optim.Optimizer opt, Generator gen, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        var (x, y) = Batch(gen, dtype);
        opt.zero_grad();
        nn.functional.cross_entropy(model.forward(x), y).backward();
        opt.step();
    }

    [Fact]
    public void Adam_under_StepLR_matches_torch_optim_Adam_under_StepLR()
    {
        using var scope = NewDisposeScope();
        var a = Mlp(3, ScalarType.Float64);
        var b = Mlp(3, ScalarType.Float64);
        using var ours = L2O.Optim.Adam(a.parameters(), lr: 0.05);
        var theirs = torch.optim.Adam(b.parameters(), lr: 0.05);
        var s1 = torch.optim.lr_scheduler.StepLR(ours, 5, 0.5);
        var s2 = torch.optim.lr_scheduler.StepLR(theirs, 5, 0.5);
        using var g1 = new Generator(8);
        using var g2 = new Generator(8);
        for (int step = 0; step < 20; step++)
        {
            TrainStep(a, ours, g1, ScalarType.Float64);
            TrainStep(b, theirs, g2, ScalarType.Float64);
            s1.step();
            s2.step();
        }
        Assert.Equal(0.05 / 16, ours.ParamGroups.First().LearningRate, 15);
        foreach (var (pa, pb) in a.parameters().Zip(b.parameters()))
            Assert.True(Numeric.MaxAbsDiff(pa, pb) < 1e-10);
        Assert.Equal(20, ours.Steps);
    }

    [Fact]
    public void A_pretrained_learned_optimizer_trains_a_module()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10));
        var data = L2O.Data.DatasetCatalog.Load("mnist");
        using var opt = L2O.Optim.RNNprop(model.parameters());
        var x = data.Train.Images.narrow(0, 0, 512).flatten(1);
        var y = data.Train.Labels.narrow(0, 0, 512);
        double first = 0, last = 0;
        for (int step = 0; step < 60; step++)
        {
            using var s = NewDisposeScope();
            var loss = opt.step(() =>
            {
                opt.zero_grad();
                var l = nn.functional.cross_entropy(model.forward(x), y);
                l.backward();
                return l;
            });
            if (step == 0) first = loss.ToDouble();
            last = loss.ToDouble();
        }
        Assert.True(last < 0.5 * first, $"loss {first} -> {last}");
    }

    [Theory]
    [InlineData(Backend.Engine)]
    [InlineData(Backend.Reference)]
    public void A_learned_optimizers_lr_multiplies_its_learned_step(Backend backend)
    {
        using var scope = NewDisposeScope();
        Tensor FirstUpdate(double lr)
        {
            var m = Mlp(5);
            var before = m.parameters().Select(p => p.detach().clone()).ToList();
            using var opt = L2O.Optim.HyperAdam(m.parameters(), lr: lr, backend: backend);
            using var gen = new Generator(1);
            TrainStep(m, opt, gen);
            return cat(m.parameters().Zip(before).Select(t => (t.First.detach() - t.Second).flatten()).ToList());
        }
        var unit = FirstUpdate(1.0);
        var half = FirstUpdate(0.5);
        Assert.True(unit.abs().max().ToDouble() > 0);
        Assert.True(Numeric.MaxAbsDiff(half, unit * 0.5) < 1e-7);
    }

    [Fact]
    public void Parameter_groups_scale_their_slice_of_the_update()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(ones(3));
        var b = new Parameter(ones(2));
        using var opt = L2O.Optim.SGD([a], lr: 0.1);
        opt.add_param_group(new TorchSharp.Modules.ParamGroup { Parameters = [b], Options = new TorchSharp.Modules.OptimizerOptions { LearningRate = 0.3 } });
        ((a * 2).sum() + (b * 2).sum()).backward();
        opt.step();
        Assert.Equal(1 - 0.1 * 2, a[0].ToSingle(), 6);
        Assert.Equal(1 - 0.3 * 2, b[0].ToSingle(), 6);
        Assert.Equal([0.1, 0.3], opt.ParamGroups.Select(g => g.LearningRate));
    }

    [Theory]
    [InlineData("rnnprop:checkpoint=pretrained")]
    [InlineData("hyperadam:checkpoint=pretrained")]
    [InlineData("adam:lr=0.1")]
    public void Parameters_without_a_gradient_or_frozen_after_construction_do_not_move(string spec)
    {
        using var scope = NewDisposeScope();
        var used = new Parameter(randn(4));
        var unused = new Parameter(randn(3));
        var frozen = new Parameter(randn(2));
        var before = (unused.detach().clone(), frozen.detach().clone());
        using var opt = L2O.Optim.Create([used, unused, frozen], spec);
        frozen.requires_grad_(false);   // e.g. fine-tuning: a layer frozen after the optimizer was made
        for (int step = 0; step < 20; step++)
        {
            opt.zero_grad();
            (used.square().sum() + (frozen * 3).sum()).backward();
            opt.step();
        }
        Assert.Equal(0, Numeric.MaxAbsDiff(unused, before.Item1));
        Assert.Equal(0, Numeric.MaxAbsDiff(frozen, before.Item2));
        Assert.Equal(20, opt.Steps);
    }

    [Fact]
    public void A_duplicated_parameter_is_refused()
    {
        using var scope = NewDisposeScope();
        var p = new Parameter(ones(3));
        var e = Assert.Throws<L2OException>(() => L2O.Optim.Adam([p, new Parameter(ones(2)), p]));
        Assert.Contains("parameter 2", e.Message);
        Assert.Contains("same tensor as parameter 0", e.Message);
        using var opt = L2O.Optim.Adam([p]);
        Assert.Throws<L2OException>(() => opt.add_param_group(new TorchSharp.Modules.ParamGroup { Parameters = [p] }));
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("hyperadam:checkpoint=pretrained")]
    public void Moving_the_model_after_creating_the_optimizer_is_followed(string spec)
    {
        using var scope = NewDisposeScope();
        var model = Mlp(6);
        using var opt = L2O.Optim.Create(model.parameters(), spec);
        using var gen = new Generator(2);
        model.to(ScalarType.Float64);   // TorchSharp replaces the parameter objects
        TrainStep(model, opt, gen, ScalarType.Float64);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        Assert.Equal(1, opt.Steps);
    }

    [Fact]
    public void A_parameter_list_disposed_by_model_to_is_a_clear_error()
    {
        using var scope = NewDisposeScope();
        var model = Mlp(6);
        using var opt = L2O.Optim.Adam(model.parameters().ToList());
        model.to(ScalarType.Float64);
        var e = Assert.Throws<L2OException>(() => opt.step());
        Assert.Contains("model.to", e.Message);
    }

    [Fact]
    public void A_learned_optimizer_with_a_missing_checkpoint_fails_at_construction()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<L2OException>(() => L2O.Optim.Learned(Mlp(1).parameters(), "no/such.safetensors"));
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void Live_tensors_do_not_grow_over_many_steps()
    {
        using var scope = NewDisposeScope();
        var model = Mlp(7);
        using var opt = L2O.Optim.HyperAdam(model.parameters(), backend: Backend.Reference);
        using var gen = new Generator(3);
        for (int i = 0; i < 5; i++) TrainStep(model, opt, gen);
        long live = Tensor.TotalCount;
        for (int i = 0; i < 50; i++) TrainStep(model, opt, gen);
        Assert.True(Tensor.TotalCount - live <= 2, $"{Tensor.TotalCount - live} tensors leaked");
    }
}

/// <summary>
/// Exact resume: 2N steps in one go equal N steps, save_state_dict, a fresh model and optimizer,
/// load_state_dict, N steps — bitwise, for every registered rule (one table, the registry).
/// </summary>
public class RuleOptimizerResumeTests
{
    public static TheoryData<string> Specs()
    {
        var data = new TheoryData<string>();
        foreach (var spec in OptimizerCaseTests.Cases.Values) data.Add(spec);
        foreach (var m in LearnedRegistry.Methods)
            data.Add(Pretrained.Methods.Contains(m.Name) ? $"{m.Name}:checkpoint=pretrained" : m.Name);
        data.Add("hyperadam:checkpoint=pretrained|reference");   // the TorchSharp reference next to the engine
        return data;
    }

    [Fact]
    public void The_table_covers_every_registered_optimizer()
    {
        var covered = ((IEnumerable<object[]>)Specs()).Select(row => ((string)row[0]).Split(':', '|')[0]).ToHashSet();
        Assert.All(OptimizerRegistry.All, o => Assert.Contains(o.Name, covered));
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void Saving_and_loading_mid_training_continues_bitwise(string row)
    {
        const int n = 6;
        var parts = row.Split('|');
        var backend = parts.Length > 1 ? Backends.Parse(parts[1]) : Backend.Auto;
        using var scope = NewDisposeScope();
        var path = Path.Combine(Path.GetTempPath(), $"l2o-resume-{Guid.NewGuid():N}.bin");
        try
        {
            var straight = Train(parts[0], backend, 2 * n, null, null);
            var firstHalf = Train(parts[0], backend, n, null, path);
            var resumed = Train(parts[0], backend, n, (firstHalf, path), null);
            Assert.Equal(Bytes(straight), Bytes(resumed));
            // The check has teeth: without the saved state (only the weights) the run goes elsewhere.
            if (!row.StartsWith("sgd", StringComparison.Ordinal))
                Assert.NotEqual(Bytes(straight), Bytes(Train(parts[0], backend, n, (firstHalf, ""), null)));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Trains a fresh model for <paramref name="steps"/> steps under StepLR, or continues one from
    /// <paramref name="resume"/> (its weights after <paramref name="steps"/> steps and the saved optimizer); returns the weights.
    /// </summary>
    private static Tensor Train(string spec, Backend backend, int steps, (Tensor Weights, string State)? resume, string? saveTo)
    {
        manual_seed(11);
        var model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3));
        using var gen = new Generator(12);
        using var opt = L2O.Optim.Create(model.parameters(), spec, backend: backend);
        var schedule = torch.optim.lr_scheduler.StepLR(opt, 4, 0.5);
        if (resume is { } r)
        {
            using (no_grad())
            {
                long offset = 0;
                foreach (var p in model.parameters()) { p.copy_(r.Weights.narrow(0, offset, p.numel()).view(p.shape)); offset += p.numel(); }
            }
            // The data stream and the schedule continue where the first half stopped.
            for (int i = 0; i < steps; i++) { Draw(gen); schedule.step(); }
            if (r.State.Length > 0)
            {
                opt.load_state_dict(r.State);
                Assert.Equal(steps, opt.Steps);
            }
        }
        for (int step = 0; step < steps; step++)
        {
            using var s = NewDisposeScope();
            var (x, y) = Draw(gen);
            opt.zero_grad();
            nn.functional.cross_entropy(model.forward(x), y).backward();
            opt.step();
            schedule.step();
        }
        if (saveTo is not null) opt.save_state_dict(saveTo);
        using (no_grad())
            return cat(model.parameters().Select(p => p.detach().flatten()).ToList(), 0).clone().DetachFromDisposeScope();
    }

    private static (Tensor X, Tensor Y) Draw(Generator gen) => (randn([16, 5], generator: gen), randint(3, [16], generator: gen));

    private static byte[] Bytes(Tensor t) => t.contiguous().bytes.ToArray();
}

public class ModelCardTests
{
    [Theory]
    [InlineData("hyperadam", 120)]   // 6J, J = 20
    [InlineData("rnnprop", 82)]
    [InlineData("dmoptimizer", 80)]
    public void Shipped_checkpoints_have_a_card_and_their_measured_memory(string method, long floats)
    {
        Assert.NotNull(ModelCards.For(method));
        using var learned = LearnedRegistry.Load(Pretrained.Keyword, expectedMethod: method);
        Assert.Equal(floats, ModelCards.StateFloatsPerParameter(learned.Rule));
        Assert.Equal(floats, ModelCards.StateFloatsPerParameter(Backends.Rule(learned, Backend.Engine)));
    }

    [Fact]
    public void Every_shipped_checkpoint_has_a_card_and_every_card_a_checkpoint()
    {
        var shipped = Pretrained.Methods.SelectMany(m => Pretrained.Keywords(m).Select(k => (m, k))).Order().ToList();
        Assert.Equal(shipped, ModelCards.All.Select(c => (c.Method, c.Keyword)).Order().ToList());
    }

    [Fact]
    public void Adam_keeps_two_floats_and_sgd_none() =>
        Assert.Equal([2L, 0L], new[] { "adam", "sgd" }.Select(s => ModelCards.StateFloatsPerParameter(OptimizerRegistry.Create(s))));
}
