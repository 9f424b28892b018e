using L2O.Learned;
using L2O.Performance;
using Xunit;

namespace L2O.Tests;

public class FlopModelTests
{
    /// <summary>
    /// HyperAdam's per-coordinate network (§4): the pre-layer J × 1, the LSTM's two 4J × J kernels, the
    /// two J × 2J decay layers and the J × J weight layer, i.e. 2(J + 13J²) operations per step.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(20)]
    public void HyperAdam_forward_counts_its_five_products(int j)
    {
        using var learned = LearnedRegistry.Create($"hyperadam:j={j}");
        Assert.Equal(2L * (j + 13L * j * j), FlopModel.ForwardFlopsPerCoordinate(learned));
        Assert.Equal(4 * FlopModel.ForwardFlopsPerCoordinate(learned), FlopModel.MetaGradientFlopsPerCoordinate(learned.Schema));
    }

    [Theory]
    [InlineData("rnnprop", 2L * (20 * 2 + 4 * 80 * 20 + 20))]         // pre 20×2, two LSTM layers of two 80×20 kernels, out 1×20
    [InlineData("dmoptimizer", 2L * (80 * 2 + 3 * 80 * 20 + 20))]     // LSTM inputs 80×2, then three 80×20 kernels, out 1×20
    public void The_rnn_rules_count_their_matrices(string method, long expected)
    {
        using var learned = LearnedRegistry.Create(method);
        Assert.Equal(expected, FlopModel.ForwardFlopsPerCoordinate(learned));
    }

    [Fact]
    public void The_measured_fma_peak_is_a_positive_rate_and_threads_are_checked()
    {
        double peak = PeakFlops.Measure(1, seconds: 0.005);
        Assert.True(double.IsFinite(peak) && peak > 1e8, $"peak {peak}");
        Assert.Throws<L2OException>(() => PeakFlops.Measure(0));
    }
}
