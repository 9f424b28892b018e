using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Tasks;

/// <summary>
/// A deterministic objective over ℝⁿ given as a closure, with optional per-instance random
/// constants (drawn from the instance's constants generator) and a known minimum where one exists.
/// </summary>
public sealed class FunctionTask : ITask
{
    /// <summary>Builds the loss of one instance from its random constants.</summary>
    public delegate Func<Tensor, Tensor> InstanceFactory(Generator constants, ScalarType dtype, Device device, List<Tensor> owned);

    private readonly InstanceFactory _factory;
    private readonly Initializer _initializer;
    private readonly ScalarType _dtype;

    public FunctionTask(string name, int dimension, Initializer initializer, InstanceFactory factory, Device device, ScalarType dtype,
        double? knownMinimum = null, double[]? knownMinimizer = null)
    {
        Name = name; Dimension = dimension; Device = device;
        _initializer = initializer; _factory = factory; _dtype = dtype;
        KnownMinimum = knownMinimum; KnownMinimizer = knownMinimizer;
    }

    public string Name { get; }
    public int Dimension { get; }
    public Device Device { get; }

    /// <summary>The global minimum value, where known (0 for sum of squares and Rosenbrock).</summary>
    public double? KnownMinimum { get; }

    /// <summary>The global minimiser, where it is the same for every instance (Rosenbrock: (a, a²)).</summary>
    public double[]? KnownMinimizer { get; }

    public IOptimizee Sample(long seed)
    {
        using var initGen = new Generator((ulong)Seeds.Derive(seed, Seeds.InitStream));
        using var constGen = new Generator((ulong)Seeds.Derive(seed, Seeds.ConstantsStream));
        using var scope = NewDisposeScope();
        var owned = new List<Tensor>();
        var loss = _factory(constGen, _dtype, Device, owned);
        foreach (var t in owned) t.DetachFromDisposeScope();   // owned by the instance
        var w0 = _initializer.Sample(Dimension, initGen, _dtype).to(Device).detach().clone().DetachFromDisposeScope();
        return new Instance(Dimension, w0, loss, owned);
    }

    private sealed class Instance(int dimension, Tensor w0, Func<Tensor, Tensor> loss, List<Tensor> owned) : IOptimizee
    {
        public int Dimension => dimension;
        public Tensor InitialParameters { get; } = w0;
        public Batch NextBatch() => Batch.None;
        public Tensor Loss(Tensor parameters, Batch batch) => loss(parameters);

        public void Dispose()
        {
            InitialParameters.Dispose();
            foreach (var t in owned) t.Dispose();
        }
    }

    /// <summary>Σᵢ xᵢ² (thesis §2.3.1); minimum 0 at the origin.</summary>
    public static InstanceFactory SumOfSquares() => (_, _, _, _) => x => x.Squared().sum();

    /// <summary>(a − x)² + b (y − x²)² (thesis §2.3.2, Rosenbrock 1960); minimum 0 at (a, a²).</summary>
    /// <remarks>The thesis prints b(y − x)²; the classic function it cites, used here, has b(y − x²)².</remarks>
    public static InstanceFactory Rosenbrock(double a, double b) => (_, _, _, _) => w =>
    {
        var x = w.select(0, 0);
        var y = w.select(0, 1);
        return x.neg().Plus(a).Squared().Plus((y - x.Squared()).Squared().Times(b));
    };

    /// <summary>
    /// ‖W x − y‖² with W ∈ ℝ^{n×n}, y ∈ ℝⁿ drawn from N(0, 1) per instance (the quadratic family of
    /// Andrychowicz et al. 2016, §3.1).
    /// </summary>
    public static InstanceFactory Quadratic(int n) => (g, dtype, device, owned) =>
    {
        var w = randn([n, n], dtype: dtype, generator: g).to(device);
        var y = randn([n], dtype: dtype, generator: g).to(device);
        owned.Add(w); owned.Add(y);
        return x => (w.matmul(x) - y).Squared().sum();
    };

    /// <summary>
    /// The convex function of "Combination with Convex Functions" (RNNprop §4.2, eq. 4):
    /// h(z) = (1/n) Σ (zᵢ − aᵢ)², a ~ U[−1, 1]ⁿ per instance. With <paramref name="clip"/>, each term
    /// is clipped to [0, clip] as in the HyperAdam authors' code.
    /// </summary>
    public static InstanceFactory Convex(int n, double? clip) => (g, dtype, device, owned) =>
    {
        var a = rand([n], dtype: dtype, generator: g).Times(2).Minus(1).to(device);
        owned.Add(a);
        return z => clip is double c ? (z - a).Squared().Clamp(0, c).mean() : (z - a).Squared().mean();
    };
}
