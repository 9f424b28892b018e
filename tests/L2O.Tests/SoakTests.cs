using System.Diagnostics;
using L2O.Engine;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Tasks;
using Xunit;
using TorchSharp;

namespace L2O.Tests;

/// <summary>
/// Long runs of the TorchSharp reference path (every CUDA run and every method without a fused cell
/// takes it): live tensors must not grow, and neither must resident memory.
/// </summary>
public class SoakTests
{
    [Theory]
    [InlineData("hyperadam:checkpoint=pretrained")]
    [InlineData("rnnprop:checkpoint=pretrained")]
    public void Reference_path_keeps_tensors_and_memory_flat_over_hundreds_of_steps(string spec)
    {
        // 3 000 coordinates, one thread: without NativeGarbage HyperAdam grew about 600 MB here (2 MB per step); with it, under 5 MB.
        var task = TaskRegistry.Create("convex:dim=3000");
        var rule = OptimizerRegistry.Create(spec, BuildContext.Cpu with { Backend = Backend.Reference });
        var stats = DisposeScopeManager.Statistics;
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);   // small tensors: a second thread only adds contention
        try
        {
            Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 60, Runs = 1, TestMetrics = false });   // warm caches and the heap
            long tensors = stats.TensorStatistics.ThreadTotalLiveCount;
            double rss = ResidentMegabytes();

            Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 300, Runs = 1, TestMetrics = false });

            Assert.Equal(tensors, stats.TensorStatistics.ThreadTotalLiveCount);
            double grown = ResidentMegabytes() - rss;
            Assert.True(grown < 32, $"{spec}: resident memory grew by {grown:0} MB over 300 steps");
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    [Fact]
    public void Fused_engine_on_a_large_vector_keeps_memory_flat()
    {
        // 80 000 coordinates: the state (120 floats each, 38 MB) is above glibc's largest mmap threshold, so each
        // step's fresh state comes from the heap only because FusedRule splits it into chunks; it must be reused, not grown.
        var task = TaskRegistry.Create("convex:dim=80000");
        var rule = OptimizerRegistry.Create("hyperadam:checkpoint=pretrained", BuildContext.Cpu with { Backend = Backend.Engine });
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);
        try
        {
            Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 40, Runs = 1, TestMetrics = false });
            double rss = ResidentMegabytes();
            Evaluator.Evaluate(task, rule, new EvalSettings { Steps = 200, Runs = 1, TestMetrics = false });
            double grown = ResidentMegabytes() - rss;
            Assert.True(grown < 64, $"resident memory grew by {grown:0} MB over 200 steps");
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    private static double ResidentMegabytes()
    {
        using var p = Process.GetCurrentProcess();
        return p.WorkingSet64 / 1e6;
    }
}
