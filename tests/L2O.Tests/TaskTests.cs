using L2O.Evaluation;
using L2O.Tasks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

public class TaskTests
{
    /// <summary>Small float64 versions of every task, for gradient checks.</summary>
    public static TheoryData<string> SmallTasks() =>
    [
        "mlp:layers=2,hidden=5,batch=8,activation=sigmoid",
        "mlp:layers=1,hidden=5,batch=8,activation=relu",
        "mlp:layers=1,hidden=5,batch=8,activation=elu",
        "mlp:layers=3,hidden=4,batch=8,activation=tanh",
        "cnn1:c1=2,batch=4",
        "cnn1:c1=2,batch=4,batch-norm=true",
        "cnn2:c1=2,c2=3,fc=4,batch=4,dropout=0.5",
        "lstm:layers=1,hidden=3,batch=4",
        "lstm:layers=2,hidden=3,batch=4,noise=0.01",
        "sum-of-squares:dim=10",
        "rosenbrock",
        "quadratic:dim=6",
        "convex:dim=8",
        "convex:dim=8,clip=0.5",
    ];

    [Theory]
    [MemberData(nameof(SmallTasks))]
    public void Autograd_gradient_matches_central_differences(string spec)
    {
        var task = TaskRegistry.Create(spec, Contexts.Double);
        using var f = task.Sample(5);
        using var scope = NewDisposeScope();
        var batch = f.NextBatch();
        var w = f.InitialParameters;
        if (spec.StartsWith("convex:dim=8,clip")) w = w * 3;   // put some terms above the clip
        double err = Numeric.DirectionalGradientError(x => f.Loss(x, batch), w);
        Assert.True(err < 1e-6, $"{spec}: relative error {err}");
    }

    [Theory]
    [MemberData(nameof(SmallTasks))]
    public void Same_seed_same_instance_and_batches(string spec)
    {
        var task = TaskRegistry.Create(spec, Contexts.Double);
        using var a = task.Sample(11);
        using var b = task.Sample(11);
        using var c = task.Sample(12);
        using var scope = NewDisposeScope();
        Assert.Equal(task.Dimension, a.Dimension);
        Assert.Equal(new long[] { task.Dimension }, a.InitialParameters.shape);
        Assert.Equal(0, Numeric.MaxAbsDiff(a.InitialParameters, b.InitialParameters));
        Assert.True(Numeric.MaxAbsDiff(a.InitialParameters, c.InitialParameters) > 0);
        for (int i = 0; i < 3; i++)
        {
            var (ba, bb) = (a.NextBatch(), b.NextBatch());
            Assert.Equal(a.Loss(a.InitialParameters, ba).ToDouble(), b.Loss(b.InitialParameters, bb).ToDouble());
        }
    }

    [Fact]
    public void Base_mlp_has_15910_parameters_and_starts_near_ln_10()
    {
        var task = TaskRegistry.Create("mlp");
        Assert.Equal(784 * 20 + 20 + 20 * 10 + 10, task.Dimension);
        using var f = task.Sample(0);
        using var scope = NewDisposeScope();
        double loss = f.Loss(f.InitialParameters, f.NextBatch()).ToDouble();
        Assert.InRange(loss, Math.Log(10) - 0.2, Math.Log(10) + 0.2);
        var m = f.Test(f.InitialParameters)!;
        Assert.InRange(m.Top1!.Value, 0, 1);
        Assert.True(m.Top2 >= m.Top1);
        Assert.InRange(m.Loss, 1.5, 3.5);
    }

    [Fact]
    public void Deep_mlp_variants_have_the_expected_size()
    {
        // 784-20-...-20-10 with L hidden layers.
        for (int layers = 1; layers <= 10; layers += 3)
        {
            int expected = 784 * 20 + 20 + (layers - 1) * (20 * 20 + 20) + 20 * 10 + 10;
            Assert.Equal(expected, TaskRegistry.Create($"mlp:layers={layers}").Dimension);
        }
    }

    [Fact]
    public void Rosenbrock_and_sum_of_squares_have_their_known_minima()
    {
        using var scope = NewDisposeScope();
        var rb = (FunctionTask)TaskRegistry.Create("rosenbrock", Contexts.Double);
        Assert.Equal(new[] { 1.0, 1.0 }, rb.KnownMinimizer);
        using var f = rb.Sample(0);
        var at = tensor(rb.KnownMinimizer!);
        var (loss, grad) = Autodiff.LossAndGradient(f, at, Batch.None);
        Assert.Equal(0.0, loss.ToDouble());
        Assert.Equal(0.0, grad.abs().max().ToDouble());
        // Classic value: f(-1.2, 1) = 24.2.
        Assert.Equal(24.2, f.Loss(tensor(new[] { -1.2, 1.0 }), Batch.None).ToDouble(), 10);

        var sq = TaskRegistry.Create("sum-of-squares:dim=4", Contexts.Double);
        using var g = sq.Sample(0);
        Assert.Equal(0.0, g.Loss(zeros(4, dtype: ScalarType.Float64), Batch.None).ToDouble());
        Assert.Equal(30.0, g.Loss(tensor(new[] { 1.0, 2, 3, 4 }), Batch.None).ToDouble(), 12);
    }

    [Fact]
    public void Sum_of_squares_starts_uniform_in_plus_minus_ten()
    {
        using var f = TaskRegistry.Create("sum-of-squares").Sample(0);
        Assert.InRange(f.InitialParameters.min().ToDouble(), -10, -9);
        Assert.InRange(f.InitialParameters.max().ToDouble(), 9, 10);
    }

    [Fact]
    public void Convex_function_is_the_mean_squared_distance_to_its_random_centre()
    {
        using var scope = NewDisposeScope();
        using var f = TaskRegistry.Create("convex:dim=5", Contexts.Double).Sample(0);
        // The gradient at z is 2 (z − a) / n, so a = z − n g / 2.
        var z = zeros(5, dtype: ScalarType.Float64);
        var (loss, grad) = Autodiff.LossAndGradient(f, z, Batch.None);
        var a = z - grad * 2.5;
        Assert.InRange(a.min().ToDouble(), -1, 1);
        Assert.InRange(a.max().ToDouble(), -1, 1);
        Assert.Equal(a.square().mean().ToDouble(), loss.ToDouble(), 12);
        Assert.Equal(0.0, f.Loss(a, Batch.None).ToDouble(), 12);
    }

    [Fact]
    public void Sine_sequences_satisfy_the_sine_recurrence_and_predict_f_at_L()
    {
        // Without noise, f(k+1) + f(k−1) = 2 cos(ω) f(k) for every k, the target f(L) included.
        var task = (SineLstmTask)TaskRegistry.Create("lstm:noise=0,batch=16", Contexts.Double);
        using var g = new Generator(3);
        using var scope = NewDisposeScope();
        var (x, y) = task.Draw(16, g);
        var seq = cat([x.squeeze(2), y], 1);                       // (16, 11)
        var c = (seq.select(1, 2) + seq.select(1, 0)) / (2 * seq.select(1, 1));
        for (int k = 2; k < 10; k++)
        {
            var lhs = seq.select(1, k + 1) + seq.select(1, k - 1);
            var rhs = 2 * c * seq.select(1, k);
            Assert.True((lhs - rhs).abs().max().ToDouble() < 1e-6 * (1 + seq.abs().max().ToDouble()) || (seq.select(1, 1).abs().min().ToDouble() < 1e-3));
        }
        Assert.InRange(seq.abs().max().ToDouble(), 0, 10);
    }

    [Fact]
    public void Classifier_batches_cover_an_epoch_without_repeats()
    {
        var task = TaskRegistry.Create("mlp:batch=1000");
        using var f = task.Sample(0);
        using var scope = NewDisposeScope();
        var seen = new List<Tensor>();
        for (int i = 0; i < 7; i++) seen.Add(f.NextBatch().Inputs!.flatten(1));
        var all = cat(seen, 0);                                    // 7000 of the 7996 training images
        var unique = all.unique(dim: 0).output.shape[0];
        Assert.True(unique >= 6990, $"only {unique} distinct images in one epoch");
    }

    [Fact]
    public void Batch_larger_than_the_dataset_is_refused()
    {
        var e = Assert.Throws<L2OException>(() => TaskRegistry.Create("mlp:batch=100000"));
        Assert.Contains("exceeds", e.Message);
    }
}
