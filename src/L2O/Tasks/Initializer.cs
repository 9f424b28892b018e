using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;
using L2O.Runtime;

namespace L2O.Tasks;

/// <summary>
/// How initial parameters are drawn: <c>normal:STD</c> (mean 0) or <c>uniform:LO:HI</c>.
/// The papers draw every optimizee parameter, biases included, from N(0, 0.1) with 0.1 the
/// standard deviation (as TensorFlow's stddev argument), which is the default.
/// </summary>
public sealed record Initializer(string Kind, double A, double B)
{
    public static Initializer Normal(double std) => new("normal", std, 0);
    public static Initializer Uniform(double lo, double hi) => new("uniform", lo, hi);

    /// <summary>Draws a vector of <paramref name="n"/> values on the CPU with <paramref name="generator"/>.</summary>
    public Tensor Sample(long n, Generator generator, ScalarType dtype) => Kind switch
    {
        "normal" => randn([n], dtype: dtype, generator: generator).Times(A),
        _ => rand([n], dtype: dtype, generator: generator).Times(B - A).Plus(A),
    };

    public static Initializer Parse(string text)
    {
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        var inv = CultureInfo.InvariantCulture;
        try
        {
            switch (parts[0].ToLowerInvariant())
            {
                case "normal" when parts.Length == 2:
                    double std = double.Parse(parts[1], inv);
                    if (!(std >= 0)) break;
                    return Normal(std);
                case "uniform" when parts.Length == 3:
                    double lo = double.Parse(parts[1], inv), hi = double.Parse(parts[2], inv);
                    if (!(hi > lo)) break;
                    return Uniform(lo, hi);
            }
        }
        catch (FormatException) { }
        throw new L2OException($"initializer '{text}' is not valid; use normal:STD (STD >= 0) or uniform:LO:HI (HI > LO)");
    }

    public override string ToString() => Kind == "normal"
        ? $"normal:{A.ToString("R", CultureInfo.InvariantCulture)}"
        : $"uniform:{A.ToString("R", CultureInfo.InvariantCulture)}:{B.ToString("R", CultureInfo.InvariantCulture)}";
}
