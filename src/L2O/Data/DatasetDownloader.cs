using System.Formats.Tar;
using System.IO.Compression;
using L2O.Runtime;

namespace L2O.Data;

/// <summary>Where a dataset can be fetched from on a machine with internet access.</summary>
/// <param name="BaseUrl">Folder URL holding <paramref name="Files"/>.</param>
/// <param name="Archive">True when the single file is a .tar.gz to unpack (CIFAR-10).</param>
public sealed record DatasetSource(string Name, string BaseUrl, string[] Files, bool Archive);

/// <summary>
/// Downloads datasets into L2O's data folder (or any folder), atomically: each file is written to a
/// temporary name and renamed only after it downloaded completely and parsed as valid data.
/// </summary>
public static class DatasetDownloader
{
    public static IReadOnlyDictionary<string, DatasetSource> Sources { get; } = new Dictionary<string, DatasetSource>
    {
        [DatasetCatalog.Mnist] = new(DatasetCatalog.Mnist, "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], false),
        [DatasetCatalog.FashionMnist] = new(DatasetCatalog.FashionMnist, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], false),
        [DatasetCatalog.Cifar10] = new(DatasetCatalog.Cifar10, "https://www.cs.toronto.edu/~kriz/", ["cifar-10-binary.tar.gz"], true),
    };

    /// <summary>Progress: file name, bytes so far, total bytes when the server says.</summary>
    public readonly record struct DownloadProgress(string File, long Bytes, long? Total);

    /// <summary>
    /// Downloads <paramref name="name"/> into <c>targetRoot/name/</c> and returns that folder.
    /// </summary>
    /// <param name="baseUrl">Overrides the source's folder URL (mirrors, tests on a loopback server).</param>
    public static async Task<string> DownloadAsync(string name, string? targetRoot = null, string? baseUrl = null, HttpClient? client = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancel = default)
    {
        string key = name.Trim().ToLowerInvariant();
        if (!Sources.TryGetValue(key, out var source))
            throw new L2OException($"no download source for dataset '{name}'; valid: {string.Join(", ", Sources.Keys)}");
        string root = targetRoot ?? DatasetCatalog.DefaultDataDirectory;
        string folder = Path.Combine(root, key);
        Directory.CreateDirectory(folder);
        string baseAddress = (baseUrl ?? source.BaseUrl).TrimEnd('/') + "/";
        bool ownClient = client is null;
        client ??= new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
        try
        {
            foreach (var file in source.Files)
            {
                string tmp = Path.Combine(folder, $".{file}.{Guid.NewGuid():N}.part");
                try
                {
                    await FetchAsync(client, baseAddress + file, tmp, file, progress, cancel);
                    if (source.Archive)
                    {
                        ExtractCifar(tmp, folder, baseAddress + file);
                    }
                    else
                    {
                        Validate(tmp, file, baseAddress + file);
                        File.Move(tmp, Path.Combine(folder, file), overwrite: true);
                    }
                }
                finally
                {
                    if (File.Exists(tmp)) File.Delete(tmp);
                }
            }
        }
        finally
        {
            if (ownClient) client.Dispose();
        }
        return folder;
    }

    private static async Task FetchAsync(HttpClient client, string url, string target, string file, IProgress<DownloadProgress>? progress, CancellationToken cancel)
    {
        try
        {
            using var response = await client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancel);
            if (!response.IsSuccessStatusCode)
                throw new L2OException($"download of {url} failed: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            long? total = response.Content.Headers.ContentLength;
            await using var input = await response.Content.ReadAsStreamAsync(cancel);
            await using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write);
            var buffer = new byte[1 << 16];
            long done = 0;
            int read;
            while ((read = await input.ReadAsync(buffer, cancel)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, read), cancel);
                done += read;
                progress?.Report(new DownloadProgress(file, done, total));
            }
            if (total is long expected && done != expected)
                throw new L2OException($"download of {url} ended after {done} of {expected} bytes");
        }
        catch (HttpRequestException e)
        {
            throw new L2OException($"download of {url} failed: {e.Message}");
        }
        catch (TaskCanceledException e) when (!cancel.IsCancellationRequested)
        {
            throw new L2OException($"download of {url} timed out: {e.Message}");
        }
    }

    private static void Validate(string path, string file, string url)
    {
        try
        {
            if (file.Contains("images")) Idx.ReadImages(path);
            else Idx.ReadLabels(path);
        }
        catch (DataFormatException e)
        {
            throw new DataFormatException(url, e.Problem);
        }
    }

    private static void ExtractCifar(string archive, string folder, string url)
    {
        var wanted = Cifar10.TrainFiles.Append(Cifar10.TestFile).ToHashSet();
        var found = new HashSet<string>();
        try
        {
            using var fs = File.OpenRead(archive);
            using var gz = new GZipStream(fs, CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } entry)
            {
                string fileName = Path.GetFileName(entry.Name);
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || !wanted.Contains(fileName) || entry.DataStream is null) continue;
                using var ms = new MemoryStream();
                entry.DataStream.CopyTo(ms);
                Cifar10.Parse(ms.GetBuffer().AsSpan(0, (int)ms.Length), $"{url}!{entry.Name}");
                AtomicFile.WriteAllBytes(Path.Combine(folder, fileName), ms.GetBuffer().AsSpan(0, (int)ms.Length));
                found.Add(fileName);
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new DataFormatException(url, $"is not a valid .tar.gz archive ({e.Message})");
        }
        var missing = wanted.Except(found).ToList();
        if (missing.Count > 0) throw new DataFormatException(url, $"lacks {string.Join(", ", missing)}");
    }
}
