using L2O.Checkpoints;
using L2O.Data;

namespace L2O.Learned;

/// <summary>
/// Meta-trained checkpoints that ship inside the library (the repository's <c>pretrained/</c>
/// folder, see its README for how each was trained). Select the main one with
/// <c>checkpoint=pretrained</c> (<c>pretrained/METHOD.safetensors</c>), a named variant with
/// <c>checkpoint=pretrained-NAME</c> (<c>pretrained/METHOD-NAME.safetensors</c>), e.g.
/// <c>hyperadam:checkpoint=pretrained-mix</c>.
/// </summary>
public static class Pretrained
{
    public const string Keyword = "pretrained";

    /// <summary>Methods with a shipped checkpoint.</summary>
    public static IReadOnlyList<string> Methods { get; } = ["hyperadam", "rnnprop", "dmoptimizer"];

    /// <summary>Specifications the demo evaluates next to the baselines.</summary>
    public static IEnumerable<string> DemoSpecs() => Methods.Select(m => $"{m}:checkpoint={Keyword}");

    /// <summary>True for <c>pretrained</c> and <c>pretrained-NAME</c>, the checkpoint values that name a shipped file.</summary>
    public static bool IsKeyword(string checkpoint) =>
        checkpoint == Keyword || (checkpoint.StartsWith(Keyword + "-", StringComparison.Ordinal) && checkpoint.Length > Keyword.Length + 1
                                  && checkpoint.AsSpan(Keyword.Length + 1).IndexOfAny("/\\.") < 0);

    /// <summary>The shipped checkpoints of <paramref name="method"/> as <c>checkpoint=</c> values, the main one first.</summary>
    public static IReadOnlyList<string> Keywords(string method)
    {
        const string prefix = "L2O." + Keyword + ".";
        var names = typeof(Pretrained).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n.EndsWith(".safetensors", StringComparison.Ordinal))
            .Select(n => n[prefix.Length..^".safetensors".Length])
            .ToHashSet();
        var result = new List<string>();
        if (names.Contains(method)) result.Add(Keyword);
        result.AddRange(names.Where(n => n.StartsWith(method + "-", StringComparison.Ordinal)).Order(StringComparer.Ordinal)
            .Select(n => $"{Keyword}-{n[(method.Length + 1)..]}"));
        return result;
    }

    /// <summary>
    /// A checkpoint shipped under the repository's <c>pretrained/</c> folder, by its relative path (e.g.
    /// <c>pretrained/ablations/hyperadam-j5.safetensors</c>), from the copy embedded in the library; null
    /// when no such checkpoint ships. <see cref="ReadCheckpoint"/> reads a file at that path first,
    /// so a checkpoint retrained into <c>pretrained/</c> is used before the library is rebuilt.
    /// </summary>
    public static SafeTensors.Contents? TryLoadShipped(string path) =>
        ShippedBytes(path) is { } bytes ? SafeTensors.Parse(bytes, path) : null;

    /// <summary>The embedded bytes of the shipped file at the relative path <paramref name="path"/> (<c>pretrained/…</c>), or null.</summary>
    public static byte[]? ShippedBytes(string path)
    {
        string relative = path.Replace('\\', '/');
        if (relative.StartsWith("./", StringComparison.Ordinal)) relative = relative[2..];
        if (!relative.StartsWith(Keyword + "/", StringComparison.Ordinal) || relative.Contains("..", StringComparison.Ordinal)) return null;
        using var stream = typeof(Pretrained).Assembly.GetManifestResourceStream("L2O." + relative.Replace('/', '.'));
        if (stream is null) return null;
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>
    /// The bytes of the checkpoint that <paramref name="path"/> names, the one resolution every reader uses (loading,
    /// deriving, <c>l2o checkpoint</c>): <c>pretrained</c> or <c>pretrained-NAME</c> of <paramref name="method"/>; else a
    /// file on disk (so a checkpoint retrained into <c>pretrained/</c> is used before the library is rebuilt); else a
    /// file shipped under <c>pretrained/</c>, by its relative path, from the copy embedded in the library (so that path
    /// works from any folder). Without a method a keyword resolves where one method ships it (<c>pretrained-mix</c>,
    /// not <c>pretrained</c>). Throws with the reason when none is found.
    /// </summary>
    public static byte[] ReadCheckpoint(string path, string? method = null)
    {
        // The throwing cases first, each with its reason; everything else is TryReadCheckpoint's resolution.
        if (IsKeyword(path) && method is not null) return ReadShipped(method, path);
        if (IsKeyword(path) && !File.Exists(path) && Owners(path) is { Count: > 1 } owners)
            throw new L2OException($"'{path}' names a shipped checkpoint of {string.Join(", ", owners)}; give its path, e.g. {RelativePath(owners[0], path)}");
        if (Directory.Exists(path)) throw new L2OException($"checkpoint '{path}' is a directory, not a file");
        return TryReadCheckpoint(path, method) ?? throw new L2OException($"checkpoint '{path}' does not exist (the shipped ones: " +
            string.Join(", ", Methods.SelectMany(m => Keywords(m).Select(k => RelativePath(m, k)))) + ")");
    }

    /// <summary>The bytes <see cref="ReadCheckpoint"/> would return, or null where it would throw.</summary>
    public static byte[]? TryReadCheckpoint(string path, string? method = null)
    {
        if (IsKeyword(path) && method is not null) return ReadBytes(method, path);
        if (File.Exists(path)) return DataFiles.ReadAllBytes(path, SafeTensors.MaxFileBytes);
        // No method to read a keyword for (l2o checkpoint pretrained-mix): it resolves where one method ships it.
        if (IsKeyword(path) && Owners(path) is [var owner]) return ReadBytes(owner, path);
        return ShippedBytes(path);
    }

    /// <summary>The methods that ship the checkpoint <paramref name="keyword"/>.</summary>
    private static List<string> Owners(string keyword) => Methods.Where(m => Keywords(m).Contains(keyword)).ToList();

    /// <summary>The shipped checkpoint <paramref name="keyword"/> (<c>pretrained</c> or <c>pretrained-NAME</c>) of <paramref name="method"/>.</summary>
    public static SafeTensors.Contents Load(string method, string keyword = Keyword) =>
        SafeTensors.Parse(ReadShipped(method, keyword), RelativePath(method, keyword));

    private static byte[] ReadShipped(string method, string keyword)
    {
        if (!IsKeyword(keyword)) throw new L2OException($"'{keyword}' does not name a shipped checkpoint (use '{Keyword}' or '{Keyword}-NAME')");
        var available = Keywords(method);
        if (available.Count == 0)
            throw new L2OException(Methods.Contains(method)
                ? $"pretrained checkpoint of {method} is missing from L2O.dll (build problem)"
                : $"no pretrained checkpoint for {method}; available: {string.Join(", ", Methods)}");
        if (!available.Contains(keyword))
            throw new L2OException($"no shipped checkpoint '{keyword}' for {method}; available: {string.Join(", ", available)}");
        return ReadBytes(method, keyword)
               ?? throw new L2OException($"shipped checkpoint '{keyword}' of {method} could not be read from L2O.dll (build problem)");
    }

    /// <summary>Where the checkpoint <paramref name="keyword"/> of <paramref name="method"/> lies in the repository.</summary>
    public static string RelativePath(string method, string keyword = Keyword) =>
        keyword == Keyword ? $"{Keyword}/{method}.safetensors" : $"{Keyword}/{method}-{keyword[(Keyword.Length + 1)..]}.safetensors";

    /// <summary>The embedded bytes of the shipped checkpoint <paramref name="keyword"/> of <paramref name="method"/>, or null.</summary>
    public static byte[]? ReadBytes(string method, string keyword = Keyword) => ShippedBytes(RelativePath(method, keyword));
}
