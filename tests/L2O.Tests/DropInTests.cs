using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Tasks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

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
