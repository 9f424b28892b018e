namespace L2O.Runtime;

/// <summary>Folders L2O.NET owns on this machine.</summary>
public static class L2OPaths
{
    /// <summary>
    /// Cache folder for derived files (patched native libraries). <c>L2O_CACHE_DIR</c> overrides it;
    /// otherwise <c>$XDG_CACHE_HOME/l2o</c> or <c>~/.cache/l2o</c>, falling back to the temp folder.
    /// </summary>
    public static string CacheDirectory => Resolve("L2O_CACHE_DIR", "XDG_CACHE_HOME", Path.Combine(".cache", "l2o"), "l2o");

    /// <summary>
    /// Data folder where <c>l2o data download</c> writes: <c>L2O_DATA_DIR</c>, else
    /// <c>$XDG_DATA_HOME/l2o/datasets</c> or <c>~/.local/share/l2o/datasets</c>.
    /// </summary>
    public static string DataDirectory => Resolve("L2O_DATA_DIR", "XDG_DATA_HOME", Path.Combine(".local", "share", "l2o", "datasets"), Path.Combine("l2o", "datasets"));

    /// <summary>The explicit variable, else the XDG base folder plus <paramref name="underXdg"/>, else home plus <paramref name="underHome"/>, else temp.</summary>
    private static string Resolve(string explicitVariable, string xdgVariable, string underHome, string underXdg)
    {
        string? explicitDir = Environment.GetEnvironmentVariable(explicitVariable);
        if (!string.IsNullOrWhiteSpace(explicitDir)) return explicitDir;
        string? xdg = Environment.GetEnvironmentVariable(xdgVariable);
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, underXdg);
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return !string.IsNullOrWhiteSpace(home) ? Path.Combine(home, underHome) : Path.Combine(Path.GetTempPath(), underXdg);
    }
}
