namespace L2O.Specs;

/// <summary>Case-insensitive lookup by name or alias, with an error that lists the valid names.</summary>
public static class NameLookup
{
    public static T Find<T>(IEnumerable<T> items, string name, Func<T, string> nameOf, Func<T, IEnumerable<string>> aliasesOf, string kind)
    {
        string key = name.Trim().ToLowerInvariant();
        var list = items.ToList();
        foreach (var item in list)
            if (nameOf(item) == key || aliasesOf(item).Contains(key)) return item;
        throw new L2OException($"unknown {kind} '{name}'; valid: {string.Join(", ", list.Select(nameOf))}");
    }
}
