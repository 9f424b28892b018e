using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using Xunit;

namespace L2O.Tests;

public class SpecTests
{
    [Fact]
    public void Parses_name_and_arguments_and_round_trips()
    {
        var s = Spec.Parse(" Adam : lr=0.01, beta1=0.8 ");
        Assert.Equal("adam", s.Name);
        Assert.Equal("0.01", s.Arguments["lr"]);
        Assert.Equal("0.8", s.Arguments["beta1"]);
        Assert.Equal(s.ToString(), Spec.Parse(s.ToString()).ToString());
        Assert.Empty(Spec.Parse("sgd").Arguments);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData(":lr=1", "missing name")]
    [InlineData("adam:lr", "not key=value")]
    [InlineData("adam:lr=1,lr=2", "given twice")]
    public void Malformed_specifications_are_explained(string text, string expected)
    {
        var e = Assert.Throws<L2OException>(() => Spec.Parse(text));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Unknown_option_lists_the_valid_ones()
    {
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("adam:learning_rate=0.1"));
        Assert.Contains("unknown option 'learning_rate'", e.Message);
        Assert.Contains("lr, beta1, beta2, eps", e.Message);
    }

    [Fact]
    public void Unknown_names_list_the_valid_ones()
    {
        var e1 = Assert.Throws<L2OException>(() => OptimizerRegistry.Create("adamw"));
        Assert.Contains("adam", e1.Message);
        Assert.Contains("rmsprop", e1.Message);
        var e2 = Assert.Throws<L2OException>(() => TaskRegistry.Create("resnet"));
        Assert.Contains("mlp", e2.Message);
        Assert.Contains("rosenbrock", e2.Message);
    }

    [Theory]
    [InlineData("adam:lr=-1", "'lr' must be a finite number > 0")]
    [InlineData("adam:beta1=1", "'beta1' must be in [0, 1)")]
    [InlineData("adam:lr=abc", "not a valid number")]
    [InlineData("mng:k=0", "'k' must be an integer in 1..1000")]
    [InlineData("mng:history=weekly", "timesteps, momentums")]
    public void Out_of_range_values_name_the_option_and_its_range(string spec, string expected)
    {
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create(spec));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Enum_and_bool_values_bind_case_insensitively()
    {
        var o = OptionsBinder.Bind<MlpTaskOptions>("mlp", new Dictionary<string, string> { ["activation"] = "ReLU", ["layers"] = "3" });
        Assert.Equal(Activation.Relu, o.Activation);
        Assert.Equal(3, o.Layers);
        var c = OptionsBinder.Bind<CnnTaskOptions>("cnn1", new Dictionary<string, string> { ["batch-norm"] = "yes" });
        Assert.True(c.BatchNorm);
    }

    [Fact]
    public void Describe_lists_every_option_with_its_default()
    {
        var opts = OptionsBinder.Describe(typeof(AdamOptions));
        Assert.Equal(["lr", "beta1", "beta2", "eps"], opts.Select(o => o.Key));
        Assert.Equal("0.001", opts[0].Default);
    }

    [Theory]
    [InlineData("normal:0.1")]
    [InlineData("uniform:-10:10")]
    public void Initializers_parse_and_print(string text) => Assert.Equal(text, Initializer.Parse(text).ToString());

    [Theory]
    [InlineData("gaussian")]
    [InlineData("uniform:3:1")]
    [InlineData("normal:-1")]
    public void Bad_initializers_are_explained(string text)
    {
        var e = Assert.Throws<L2OException>(() => Initializer.Parse(text));
        Assert.Contains("normal:STD", e.Message);
    }
}
