using L2O.Checkpoints;

namespace L2O.Learned;

/// <summary>
/// Meta-trained checkpoints that ship inside the library (the repository's <c>pretrained/</c>
/// folder, see its README for how each was trained). Select one with <c>checkpoint=pretrained</c>,
/// e.g. <c>hyperadam:checkpoint=pretrained</c>.
/// </summary>
public static class Pretrained
{
    public const string Keyword = "pretrained";

    /// <summary>Methods with a shipped checkpoint.</summary>
    public static IReadOnlyList<string> Methods { get; } = ["hyperadam", "rnnprop", "dmoptimizer"];

    /// <summary>Specifications the demo evaluates next to the baselines.</summary>
    public static IEnumerable<string> DemoSpecs() => Methods.Select(m => $"{m}:checkpoint={Keyword}");

    /// <summary>
    /// A checkpoint shipped under the repository's <c>pretrained/</c> folder, by its relative path (e.g.
    /// <c>pretrained/ablations/hyperadam-j5.safetensors</c>), from the copy embedded in the library; null
    /// when no such checkpoint ships. <see cref="LearnedRegistry.Load"/> reads a file at that path first,
    /// so a checkpoint retrained into <c>pretrained/</c> is used before the library is rebuilt.
    /// </summary>
    public static SafeTensors.Contents? TryLoadShipped(string path)
    {
        string relative = path.Replace('\\', '/');
        if (relative.StartsWith("./", StringComparison.Ordinal)) relative = relative[2..];
        if (!relative.StartsWith(Keyword + "/", StringComparison.Ordinal) || relative.Contains("..", StringComparison.Ordinal)) return null;
        return ReadEmbedded(relative);
    }

    /// <summary>The shipped checkpoint of <paramref name="method"/>.</summary>
    public static SafeTensors.Contents Load(string method)
    {
        if (!Methods.Contains(method))
            throw new L2OException($"no pretrained checkpoint for {method}; available: {string.Join(", ", Methods)}");
        return ReadEmbedded($"{Keyword}/{method}.safetensors")
               ?? throw new L2OException($"pretrained checkpoint of {method} is missing from L2O.dll (build problem)");
    }

    /// <summary>The embedded copy of the file at <paramref name="relative"/> (e.g. <c>pretrained/rnnprop.safetensors</c>), or null.</summary>
    private static SafeTensors.Contents? ReadEmbedded(string relative)
    {
        using var stream = typeof(Pretrained).Assembly.GetManifestResourceStream("L2O." + relative.Replace('/', '.'));
        if (stream is null) return null;
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return SafeTensors.Parse(ms.ToArray(), relative);
    }
}
