using System.Runtime.CompilerServices;
using L2O.Runtime;
using L2O.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Tests;

internal static class TestSetup
{
    // Tests may call TorchSharp before any L2O type; the loader fix must be in place first.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Test assembly start-up.")]
    [ModuleInitializer]
    internal static void Init() => L2ORuntime.Initialize();
}

/// <summary>A temporary folder removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() { Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "l2o-test-" + Guid.NewGuid().ToString("N")); Directory.CreateDirectory(Path); }
    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}

internal static class Numeric
{
    /// <summary>
    /// Largest relative error between autograd's directional derivative ⟨∇f(w), d⟩ and the central
    /// difference (f(w+hd) − f(w−hd)) / 2h over a few random unit directions d (float64).
    /// </summary>
    public static double DirectionalGradientError(Func<Tensor, Tensor> f, Tensor w, int directions = 3, double h = 1e-6, long seed = 7)
    {
        using var scope = NewDisposeScope();
        var x = w.detach().to(ScalarType.Float64).requires_grad_(true);
        var loss = f(x);
        var grad = torch.autograd.grad([loss], [x])[0];
        double worst = 0;
        using var gen = new Generator((ulong)seed);
        for (int i = 0; i < directions; i++)
        {
            var d = randn(x.shape, dtype: ScalarType.Float64, generator: gen);
            d = d / d.norm();
            double analytic = (grad * d).sum().ToDouble();
            double plus, minus;
            using (no_grad())
            {
                plus = f(x.detach() + d * h).ToDouble();
                minus = f(x.detach() - d * h).ToDouble();
            }
            double numeric = (plus - minus) / (2 * h);
            double err = Math.Abs(analytic - numeric) / Math.Max(1e-8, Math.Max(Math.Abs(analytic), Math.Abs(numeric)));
            worst = Math.Max(worst, err);
        }
        return worst;
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        return d.ToDouble();
    }
}

/// <summary>Float64 CPU contexts for exact comparisons.</summary>
internal static class Contexts
{
    public static TaskContext Double => new(CPU, ScalarType.Float64);
    public static L2O.Optimizers.BuildContext DoubleBuild => new(CPU, ScalarType.Float64);
}
