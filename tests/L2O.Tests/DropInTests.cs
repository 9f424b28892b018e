using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

public class FlatOptimizerTests
{
    [Fact]
    public void Driving_a_module_with_the_adam_rule_matches_torch_optim_adam()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var a = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3));
        var b = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3));
        b.load_state_dict(a.state_dict());
        a.to(ScalarType.Float64);
        b.to(ScalarType.Float64);
        using var ours = new FlatOptimizer(a.parameters(), new Adam(new AdamOptions { LearningRate = 0.05 }));
        var theirs = torch.optim.Adam(b.parameters(), lr: 0.05);
        using var gen = new Generator(8);
        for (int step = 0; step < 20; step++)
        {
            var x = randn([16, 5], dtype: ScalarType.Float64, generator: gen);
            var y = randint(3, [16], generator: gen);
            ours.ZeroGrad();
            nn.functional.cross_entropy(a.forward(x), y).backward();
            ours.Step();
            theirs.zero_grad();
            nn.functional.cross_entropy(b.forward(x), y).backward();
            theirs.step();
        }
        foreach (var (pa, pb) in a.parameters().Zip(b.parameters()))
            Assert.True(Numeric.MaxAbsDiff(pa, pb) < 1e-10);
        Assert.Equal(20, ours.Steps);
    }

    [Fact]
    public void A_learned_rule_trains_a_module()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10));
        var data = L2O.Data.DatasetCatalog.Load("mnist");
        using var opt = new FlatOptimizer(model.parameters(), OptimizerRegistry.Create("rnnprop:checkpoint=pretrained"));
        var x = data.Train.Images.narrow(0, 0, 512).flatten(1);
        var y = data.Train.Labels.narrow(0, 0, 512);
        double first = 0, last = 0;
        for (int step = 0; step < 60; step++)
        {
            using var s = NewDisposeScope();
            opt.ZeroGrad();
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            loss.backward();
            opt.Step();
            if (step == 0) first = loss.ToDouble();
            last = loss.ToDouble();
        }
        Assert.True(last < 0.5 * first, $"loss {first} -> {last}");
    }
}

public class PretrainedTests
{
    public static TheoryData<string> Methods() => ["hyperadam", "rnnprop", "dmoptimizer"];

    [Theory]
    [MemberData(nameof(Methods))]
    public void Shipped_checkpoints_load_and_optimize_the_base_mlp(string method)
    {
        var task = TaskRegistry.Create("mlp");
        var rule = OptimizerRegistry.Create($"{method}:checkpoint=pretrained");
        Assert.Equal($"{method}(pretrained)", rule.Name);
        var result = Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 100, Runs = 2, TestMetrics = false });
        Assert.Equal(0, result.Diverged);
        // Meta-trained optimizers reach well below the initial ln 10 ≈ 2.3 in 100 steps.
        Assert.True(result.FinalLoss.Mean < 0.6, $"{method}: final loss {result.FinalLoss.Mean}");
    }

    [Fact]
    public void Methods_without_a_shipped_checkpoint_say_which_have_one()
    {
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("k-timesteps:checkpoint=pretrained"));
        Assert.Contains("available: hyperadam, rnnprop, dmoptimizer", e.Message);
    }
}
