using System.Globalization;

namespace L2O.Specs;

/// <summary>
/// A parsed component specification such as <c>adam:lr=0.01,beta1=0.9</c> or <c>mlp:activation=relu</c>:
/// a name, then optional <c>key=value</c> pairs after a colon, separated by commas.
/// </summary>
public sealed record Spec(string Name, IReadOnlyDictionary<string, string> Arguments)
{
    public static Spec Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new L2OException("empty specification; expected NAME or NAME:key=value,...");
        text = text.Trim();
        int colon = text.IndexOf(':');
        string name = (colon < 0 ? text : text[..colon]).Trim().ToLowerInvariant();
        if (name.Length == 0) throw new L2OException($"'{text}': missing name before ':'");
        var args = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (colon >= 0)
        {
            foreach (var part in text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                int eq = part.IndexOf('=');
                if (eq <= 0) throw new L2OException($"'{text}': '{part}' is not key=value");
                string key = part[..eq].Trim().ToLowerInvariant();
                if (!args.TryAdd(key, part[(eq + 1)..].Trim())) throw new L2OException($"'{text}': '{key}' is given twice");
            }
        }
        return new Spec(name, args);
    }

    /// <summary>Canonical text form; round-trips through <see cref="Parse"/>.</summary>
    public override string ToString() =>
        Arguments.Count == 0 ? Name : $"{Name}:{string.Join(",", Arguments.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"))}";

    /// <summary>Four significant digits, for display names (e.g. lr=0.7071).</summary>
    public static string Short(double value) => value.ToString("G4", CultureInfo.InvariantCulture);

    internal static string Format(object? value) => value switch
    {
        null => "",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        Enum e => OptionsBinder.EnumName(e),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
