using System.Globalization;
using System.Reflection;
using System.Text;

namespace L2O.Specs;

/// <summary>Names a property of an options record as a specification key, with its help text.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class OptionAttribute(string key, string description) : Attribute
{
    public string Key { get; } = key;
    public string Description { get; } = description;
}

/// <summary>Options records check their own values; messages name the option and its valid range.</summary>
public interface IValidatable
{
    /// <exception cref="L2OException">A value is out of range.</exception>
    void Validate();
}

/// <summary>One documented option of an options record, with its default.</summary>
public sealed record OptionInfo(string Key, string Type, string Default, string Description);

/// <summary>
/// Binds <c>key=value</c> arguments onto an immutable options record whose properties carry
/// <see cref="OptionAttribute"/>. Defaults are the record's own initialisers (one place); unknown
/// keys and unparsable values are errors that list the valid keys or values.
/// </summary>
public static class OptionsBinder
{
    public static T Bind<T>(string owner, IReadOnlyDictionary<string, string> args) where T : new() => (T)Bind(typeof(T), owner, args);

    public static object Bind(Type type, string owner, IReadOnlyDictionary<string, string> args)
    {
        object options = Activator.CreateInstance(type)!;
        var props = Properties(type);
        var given = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, raw) in args)
        {
            var match = props.FirstOrDefault(p => string.Equals(p.Attr.Key, key, StringComparison.OrdinalIgnoreCase));
            if (match.Prop is null)
            {
                string valid = props.Count == 0 ? "it takes no options" : $"valid: {string.Join(", ", props.Select(p => p.Attr.Key))}";
                throw new L2OException($"{owner}: unknown option '{key}'; {valid}");
            }
            match.Prop.SetValue(options, Parse(match.Prop.PropertyType, raw, owner, match.Attr.Key));
            given.Add(match.Attr.Key);
        }
        if (options is IValidatable v) v.Validate();
        GivenKeys.AddOrUpdate(options, given);
        return options;
    }

    // Which keys a bound record was given, so that an option written out at its default value
    // (e.g. field-clip=0 beside a checkpoint that stores field-clip=10) can be told from one left out.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<object, HashSet<string>> GivenKeys = new();

    /// <summary>
    /// The option keys given explicitly when <paramref name="options"/> was made by <see cref="Bind(Type, string, IReadOnlyDictionary{string, string})"/>,
    /// or null for a record built in code (or copied with <c>with</c>), where only values differing from the defaults can be told apart.
    /// </summary>
    public static IReadOnlySet<string>? Given(object options) => GivenKeys.TryGetValue(options, out var keys) ? keys : null;

    /// <summary>Documented options of <paramref name="type"/> with the defaults of a new instance.</summary>
    public static IReadOnlyList<OptionInfo> Describe(Type type)
    {
        object defaults = Activator.CreateInstance(type)!;
        return Properties(type).Select(p => new OptionInfo(p.Attr.Key, TypeName(p.Prop.PropertyType),
            Spec.Format(p.Prop.GetValue(defaults)), p.Attr.Description)).ToList();
    }

    /// <summary>The key=value arguments that reproduce <paramref name="options"/> (all documented options).</summary>
    public static IReadOnlyDictionary<string, string> ToArguments(object options) =>
        Properties(options.GetType()).ToDictionary(p => p.Attr.Key, p => Spec.Format(p.Prop.GetValue(options)));

    internal static string EnumName(Enum e) => Kebab(e.ToString());

    /// <summary>Parses an enum value written in kebab-case (or its C# name), listing the valid values on failure.</summary>
    public static T ParseEnum<T>(string text, string owner, string key) where T : struct, Enum => (T)Parse(typeof(T), text, owner, key)!;

    /// <summary>Valid kebab-case names of an enum, for help texts.</summary>
    public static string EnumNames<T>() where T : struct, Enum => string.Join(", ", Enum.GetValues<T>().Select(v => EnumName(v)));

    private static List<(PropertyInfo Prop, OptionAttribute Attr)> Properties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => (Prop: p, Attr: p.GetCustomAttribute<OptionAttribute>()!))
            .Where(x => x.Attr is not null)
            .ToList();

    private static object? Parse(Type type, string raw, string owner, string key)
    {
        var inv = CultureInfo.InvariantCulture;
        var underlying = Nullable.GetUnderlyingType(type);
        if (underlying is not null)
        {
            if (raw.Length == 0 || raw.Equals("none", StringComparison.OrdinalIgnoreCase)) return null;
            type = underlying;
        }
        if (type == typeof(double) && double.TryParse(raw, NumberStyles.Float, inv, out var d)) return d;
        if (type == typeof(float) && float.TryParse(raw, NumberStyles.Float, inv, out var f)) return f;
        if (type == typeof(int) && int.TryParse(raw, NumberStyles.Integer, inv, out var i)) return i;
        if (type == typeof(long) && long.TryParse(raw, NumberStyles.Integer, inv, out var l)) return l;
        if (type == typeof(string)) return raw;
        if (type == typeof(bool))
        {
            if (raw is "1" || raw.Equals("true", StringComparison.OrdinalIgnoreCase) || raw.Equals("yes", StringComparison.OrdinalIgnoreCase)) return true;
            if (raw is "0" || raw.Equals("false", StringComparison.OrdinalIgnoreCase) || raw.Equals("no", StringComparison.OrdinalIgnoreCase)) return false;
        }
        if (type.IsEnum)
        {
            foreach (var value in Enum.GetValues(type))
                if (string.Equals(Kebab(value.ToString()!), raw, StringComparison.OrdinalIgnoreCase) || string.Equals(value.ToString(), raw, StringComparison.OrdinalIgnoreCase))
                    return value;
            throw new L2OException($"{owner}: option '{key}' = '{raw}' is not one of: {string.Join(", ", Enum.GetValues(type).Cast<Enum>().Select(EnumName))}");
        }
        throw new L2OException($"{owner}: option '{key}' = '{raw}' is not a valid {TypeName(type)}");
    }

    private static string TypeName(Type t)
    {
        var u = Nullable.GetUnderlyingType(t);
        if (u is not null) return TypeName(u) + "?";
        if (t.IsEnum) return string.Join("|", Enum.GetValues(t).Cast<Enum>().Select(EnumName));
        return t == typeof(double) || t == typeof(float) ? "number" : t == typeof(int) || t == typeof(long) ? "integer" : t == typeof(bool) ? "bool" : "text";
    }

    private static string Kebab(string pascal)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < pascal.Length; i++)
        {
            char c = pascal[i];
            if (char.IsUpper(c) && i > 0 && !char.IsUpper(pascal[i - 1])) sb.Append('-');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }
}

/// <summary>Small helpers for <see cref="IValidatable.Validate"/> implementations.</summary>
public static class Check
{
    public static void Positive(double value, string name)
    {
        if (!(value > 0) || double.IsInfinity(value)) throw new L2OException($"option '{name}' must be a finite number > 0 (got {Spec.Format(value)})");
    }

    public static void NonNegative(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value)) throw new L2OException($"option '{name}' must be a finite number >= 0 (got {Spec.Format(value)})");
    }

    /// <summary>Checks lo &lt;= value &lt;= hi (or lo &lt;= value &lt; hi when <paramref name="openHigh"/>).</summary>
    public static void InRange(double value, double lo, double hi, string name, bool openHigh = false)
    {
        bool ok = value >= lo && (openHigh ? value < hi : value <= hi);
        if (!ok) throw new L2OException($"option '{name}' must be in [{Spec.Format(lo)}, {Spec.Format(hi)}{(openHigh ? ")" : "]")} (got {Spec.Format(value)})");
    }

    public static void InRange(int value, int lo, int hi, string name)
    {
        if (value < lo || value > hi) throw new L2OException($"option '{name}' must be an integer in {lo}..{hi} (got {value})");
    }
}
