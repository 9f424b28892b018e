namespace L2O.Runtime;

/// <summary>Folders L2O.NET owns on this machine.</summary>
public static class L2OPaths
{
    /// <summary>
    /// Cache folder for derived files (patched native libraries). <c>L2O_CACHE_DIR</c> overrides it;
    /// otherwise <c>$XDG_CACHE_HOME/l2o</c> or <c>~/.cache/l2o</c>, falling back to the temp folder.
    /// </summary>
    public static string CacheDirectory
    {
        get
        {
            string? explicitDir = Environment.GetEnvironmentVariable("L2O_CACHE_DIR");
            if (!string.IsNullOrWhiteSpace(explicitDir)) return explicitDir;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            string dir = !string.IsNullOrWhiteSpace(xdg) ? Path.Combine(xdg, "l2o")
                : !string.IsNullOrWhiteSpace(home) ? Path.Combine(home, ".cache", "l2o")
                : Path.Combine(Path.GetTempPath(), "l2o");
            return dir;
        }
    }
}
