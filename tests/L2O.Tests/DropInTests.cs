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

    /// <summary>Every shipped variant (<c>checkpoint=pretrained-NAME</c>) of every method.</summary>
    public static TheoryData<string, string> Variants()
    {
        var data = new TheoryData<string, string>();
        foreach (var m in Pretrained.Methods)
            foreach (var k in Pretrained.Keywords(m).Skip(1)) data.Add(m, k);
        if (data.Count == 0) data.Add("hyperadam", "");   // keeps the theory non-empty while no variant ships
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Shipped_variants_load_under_their_name_and_optimize_the_base_mlp(string method, string keyword)
    {
        if (keyword == "") return;
        var task = TaskRegistry.Create("mlp");
        var rule = OptimizerRegistry.Create($"{method}:checkpoint={keyword}");
        Assert.Equal($"{method}({keyword})", rule.Name);
        var result = Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 100, Runs = 2, TestMetrics = false });
        Assert.Equal(0, result.Diverged);
        Assert.True(result.FinalLoss.Mean < 0.8, $"{method} {keyword}: final loss {result.FinalLoss.Mean}");
    }

    [Fact]
    public void Each_method_lists_its_main_checkpoint_first()
    {
        foreach (var m in Pretrained.Methods) Assert.Equal(Pretrained.Keyword, Pretrained.Keywords(m)[0]);
        Assert.Empty(Pretrained.Keywords("k-timesteps"));
    }

    [Theory]
    [InlineData("pretrained", true)]
    [InlineData("pretrained-mix", true)]
    [InlineData("pretrained-", false)]
    [InlineData("pretrained-../x", false)]
    [InlineData("pretrained-a.safetensors", false)]
    [InlineData("pretrained/hyperadam.safetensors", false)]
    [InlineData("runs/pretrained-mix", false)]
    public void Only_pretrained_and_pretrained_NAME_are_keywords(string checkpoint, bool expected) =>
        Assert.Equal(expected, Pretrained.IsKeyword(checkpoint));

    [Fact]
    public void An_unknown_variant_says_which_ship()
    {
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("rnnprop:checkpoint=pretrained-nope"));
        Assert.Equal("no shipped checkpoint 'pretrained-nope' for rnnprop; available: pretrained", e.Message);
    }

    [Fact]
    public void Methods_without_a_shipped_checkpoint_say_which_have_one()
    {
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("k-timesteps:checkpoint=pretrained"));
        Assert.Contains("available: hyperadam, rnnprop, dmoptimizer", e.Message);
    }
}
