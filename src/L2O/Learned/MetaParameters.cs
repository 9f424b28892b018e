using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Learned;

/// <summary>
/// One meta-parameter of a learned method, as its definition declares it: the checkpoint name
/// (PyTorch layout), the shape for given options, and how it starts. A method's list of these is the
/// single source of its checkpoint names and shapes: the reference registers exactly this list (drawn
/// in this order from one seeded generator), checkpoints are checked against it, the fused cells read
/// and write exactly these names (a test), and <c>l2o list METHOD</c> prints it.
/// </summary>
public sealed record MetaParameter(string Name, long[] Shape, MetaInitializer Init)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}] {Init.Describe()}";
}

/// <summary>
/// How a meta-parameter starts. Every draw is float64 on the CPU from the method's seeded generator, so
/// an initialisation is the same on every device; the order of the schema is the order of the draws.
/// </summary>
public abstract record MetaInitializer
{
    /// <summary>A short formula for listings, e.g. <c>U(±0.38)</c>.</summary>
    public abstract string Describe();

    internal abstract Tensor Draw(long[] shape, Generator g);

    /// <summary>All zeros (biases).</summary>
    public static MetaInitializer Zeros { get; } = new ZerosInit();

    /// <summary>Glorot (Xavier) uniform over the weight's own fans: U(−a, a), a = √(6 / (fan_in + fan_out)) for shape (out, in) (TensorFlow's default kernel initialiser).</summary>
    public static MetaInitializer GlorotUniform { get; } = new GlorotInit(null, null);

    /// <summary>
    /// Glorot uniform with given fans: TensorFlow's LSTM keeps [W_ih | W_hh] as one (in + H, 4H) kernel,
    /// so each half is drawn with a = √(6 / (in + H + 4H)).
    /// </summary>
    public static MetaInitializer GlorotUniformOver(long fanIn, long fanOut) => new GlorotInit(fanIn, fanOut);

    /// <summary>N(0, σ²) truncated at ±2σ by redrawing (TensorFlow's truncated_normal).</summary>
    public static MetaInitializer TruncatedNormal(double std) => new TruncatedNormalInit(std);

    /// <summary>N(0, σ²).</summary>
    public static MetaInitializer Normal(double std) => new NormalInit(std);

    /// <summary>An LSTM bias of 4H (gates i, f, g, o) with the forget quarter at <paramref name="forget"/> and the rest 0.</summary>
    public static MetaInitializer LstmBias(double forget) => new LstmBiasInit(forget);

    /// <summary>(1 + N(0, σ²)) / n for a vector of n: weights that start at the plain average.</summary>
    public static MetaInitializer NearAverage(double std) => new NearAverageInit(std);

    private sealed record ZerosInit : MetaInitializer
    {
        public override string Describe() => "0";
        internal override Tensor Draw(long[] shape, Generator g) => zeros(shape, dtype: ScalarType.Float64);
    }

    private sealed record GlorotInit(long? FanIn, long? FanOut) : MetaInitializer
    {
        private double Bound(long[] shape) => Math.Sqrt(6.0 / ((FanIn ?? shape[1]) + (FanOut ?? shape[0])));
        public override string Describe() => FanIn is null ? "Glorot-uniform" : $"U(±{Math.Sqrt(6.0 / (FanIn.Value + FanOut!.Value)):0.###}) (Glorot over the joined kernel)";
        internal override Tensor Draw(long[] shape, Generator g)
        {
            if (shape.Length != 2) throw new InvalidOperationException("Glorot initialisation needs a (out, in) shape");
            double a = Bound(shape);
            return rand(shape, dtype: ScalarType.Float64, generator: g).Times(2 * a).Minus(a);
        }
    }

    private sealed record TruncatedNormalInit(double Std) : MetaInitializer
    {
        public override string Describe() => $"N(0, {Std:0.###}²) truncated at ±2σ";
        internal override Tensor Draw(long[] shape, Generator g)
        {
            using var scope = NewDisposeScope();
            var x = randn(shape, dtype: ScalarType.Float64, generator: g);
            for (int i = 0; i < 100; i++)
            {
                var outside = x.abs().GreaterThan(2);
                if (!outside.any().item<bool>()) break;
                x = where(outside, randn(shape, dtype: ScalarType.Float64, generator: g), x);
            }
            return x.Times(Std).MoveToOuterDisposeScope();
        }
    }

    private sealed record NormalInit(double Std) : MetaInitializer
    {
        public override string Describe() => $"N(0, {Std:0.###}²)";
        internal override Tensor Draw(long[] shape, Generator g) => randn(shape, dtype: ScalarType.Float64, generator: g).Times(Std);
    }

    private sealed record LstmBiasInit(double Forget) : MetaInitializer
    {
        public override string Describe() => $"0, forget gate {Forget:0.###}";
        internal override Tensor Draw(long[] shape, Generator g)
        {
            if (shape.Length != 1 || shape[0] % 4 != 0) throw new InvalidOperationException("an LSTM bias has shape (4H)");
            var b = zeros(shape, dtype: ScalarType.Float64);
            long h = shape[0] / 4;
            b.narrow(0, h, h).Fill(Forget);
            return b;
        }
    }

    private sealed record NearAverageInit(double Std) : MetaInitializer
    {
        public override string Describe() => $"(1 + N(0, {Std:0.###}²)) / n";
        internal override Tensor Draw(long[] shape, Generator g)
        {
            if (shape.Length != 1) throw new InvalidOperationException("average weights are a vector");
            using var scope = NewDisposeScope();
            return randn(shape, dtype: ScalarType.Float64, generator: g).Times(Std).Plus(1).Over(shape[0]).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>
/// Schema pieces shared by several methods, and the one place that spells a layer's tensor names: both the reference
/// (registering through <see cref="Linear"/> and <see cref="Lstm"/>, reading through the name functions) and the fused
/// cells (reading and writing through the name functions) take them from here and the method's layer prefixes.
/// </summary>
public static class MetaSchema
{
    /// <summary>The checkpoint name of the weight (out, in) of linear layer <paramref name="layer"/>.</summary>
    public static string Weight(string layer) => $"{layer}.weight";
    /// <summary>The checkpoint name of the bias of linear or LSTM layer <paramref name="layer"/>.</summary>
    public static string Bias(string layer) => $"{layer}.bias";
    /// <summary>The checkpoint name of the input-to-gates weight (4H, in) of LSTM layer <paramref name="layer"/>.</summary>
    public static string InputWeight(string layer) => $"{layer}.weight_ih";
    /// <summary>The checkpoint name of the hidden-to-gates weight (4H, H) of LSTM layer <paramref name="layer"/>.</summary>
    public static string HiddenWeight(string layer) => $"{layer}.weight_hh";

    /// <summary>
    /// One coordinatewise LSTM layer <paramref name="layer"/>: weight_ih (4H, in), weight_hh (4H, H)
    /// Glorot-uniform over TensorFlow's joined kernel, and one bias (4H) = PyTorch's b_ih + b_hh with forget bias +1.
    /// </summary>
    public static IEnumerable<MetaParameter> Lstm(string layer, int input, int hidden)
    {
        var init = MetaInitializer.GlorotUniformOver(input + hidden, 4L * hidden);
        yield return new(InputWeight(layer), [4L * hidden, input], init);
        yield return new(HiddenWeight(layer), [4L * hidden, hidden], init);
        yield return new(Bias(layer), [4L * hidden], MetaInitializer.LstmBias(1.0));
    }

    /// <summary>Linear layer <paramref name="layer"/>: its weight (out, in) and its bias (out).</summary>
    public static IEnumerable<MetaParameter> Linear(string layer, long output, long input, MetaInitializer weight)
    {
        yield return new(Weight(layer), [output, input], weight);
        yield return new(Bias(layer), [output], MetaInitializer.Zeros);
    }
}
