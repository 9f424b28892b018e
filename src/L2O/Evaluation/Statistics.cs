namespace L2O.Evaluation;

/// <summary>Mean, sample standard deviation and median of a set of values.</summary>
public sealed record Summary(double Mean, double Std, double Median, int Count)
{
    public static readonly Summary Empty = new(double.NaN, double.NaN, double.NaN, 0);

    public static Summary Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return Empty;
        double mean = values.Average();
        double std = values.Count > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1)) : 0;
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        return new Summary(mean, std, median, n);
    }
}
