using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using L2O.Data;
using L2O.Learned;
using L2O.Runtime;
using L2O.Training;
using Xunit;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>Native helpers the reliability tests need: FIFOs and signals.</summary>
internal static partial class Posix
{
    public const int SigInt = 2;
    public const int SigTerm = 15;

    /// <summary>Whether this process ignores <paramref name="signal"/> (the SigIgn mask of /proc/self/status; false off Linux).</summary>
    public static bool Ignores(int signal)
    {
        if (!OperatingSystem.IsLinux()) return false;
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) >> (signal - 1) & 1) == 1;
    }

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkFifo(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "kill")]
    public static partial int Kill(int pid, int signal);

    public static string Fifo(string path)
    {
        if (MkFifo(path, 0x180) != 0) throw new InvalidOperationException($"mkfifo {path} failed");
        return path;
    }
}

/// <summary>Builders of bad files: each is a valid file with one thing wrong.</summary>
internal static class BadFiles
{
    /// <summary>A small valid checkpoint (RNNprop, hidden 2), optionally with extra metadata.</summary>
    public static string Checkpoint(string path, IReadOnlyDictionary<string, string>? metadata = null, bool nan = false)
    {
        using var learned = LearnedRegistry.Create("rnnprop:hidden=2");
        if (nan)
            using (no_grad())
                learned.Parameters[0].Parameter.view(-1)[0] = double.NaN;
        learned.Save(path, metadata);
        return path;
    }

    /// <summary>Rewrites the JSON header of a safetensors file (data section unchanged).</summary>
    public static string EditHeader(string path, Action<JsonObject> edit)
    {
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, n))!.AsObject();
        edit(header);
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
        File.WriteAllBytes(path, [.. len, .. json, .. bytes.AsSpan(8 + n)]);
        return path;
    }

    public static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    /// <summary>A gzip IDX labels file whose header declares 10 labels, followed by 64 MB of zeros (about 64 KB compressed).</summary>
    public static string GzipBomb(string path)
    {
        using var fs = File.Create(path);
        using var gz = new GZipStream(fs, CompressionLevel.Fastest);
        gz.Write(Idx.Encode([10], new byte[10]));
        var zeros = new byte[1 << 20];
        for (int i = 0; i < 64; i++) gz.Write(zeros);
        return path;
    }
}

/// <summary>
/// Bad input of every kind (specification, data, checkpoint, folder, option combination) through the
/// l2o command: each must give exactly one line on stderr, starting "error: ", with the expected
/// words, and its exit code.
/// </summary>
public class BadInputTests
{
    /// <summary>A bad input: how to build it in a fresh folder, the words the error must contain, and the exit code.</summary>
    private sealed record Case(Func<TempDir, string[]> Args, Func<TempDir, string> Expected, int Code = 1);

    private static readonly string[] Quick = ["--runs", "1", "--steps", "1"];

    private static readonly Dictionary<string, Case> Cases = new()
    {
        // Specifications.
        ["unknown optimizer"] = new(_ => ["eval", "-t", "rosenbrock", "-o", "adamw", .. Quick], _ => "unknown optimizer 'adamw'; valid: sgd"),
        ["unknown task"] = new(_ => ["eval", "-t", "resnet", "-o", "sgd", .. Quick], _ => "unknown task 'resnet'"),
        ["option out of range"] = new(_ => ["eval", "-t", "rosenbrock", "-o", "adam:lr=-3", .. Quick], _ => "'lr' must be"),
        ["unknown option key"] = new(_ => ["eval", "-t", "rosenbrock", "-o", "adam:rate=3", .. Quick], _ => "rate"),
        ["malformed spec"] = new(_ => ["eval", "-t", "rosenbrock", "-o", "adam:lr", .. Quick], _ => "lr"),
        // Data.
        ["empty data dir"] = new(d => ["eval", "-t", "mlp", "-o", "sgd", "--data-dir", d.Path, .. Quick], d => $"not found in --data-dir {d.Path}"),
        ["missing data dir"] = new(d => ["eval", "-t", "mlp", "-o", "sgd", "--data-dir", d.File("nowhere"), .. Quick], _ => "does not exist"),
        ["gzip bomb"] = new(d => ["data", "check", BadFiles.GzipBomb(d.File("bomb-labels-idx1-ubyte.gz"))], _ => "more than 1 MiB after the 10 values"),
        ["huge declared size"] = new(d => ["data", "check", Write(d.File("huge-images-idx3-ubyte"), Idx.Encode([1 << 20, 1 << 10, 1 << 10], []))], _ => "more than the 1024 MiB"),
        ["label out of range"] = new(d => ["data", "check", Write(d.File("x-labels-idx1-ubyte"), Idx.Encode([3], [1, 200, 3]))], _ => "label 200 at index 1 is outside 0..9"),
        ["fifo as data file"] = new(d => ["data", "check", Posix.Fifo(d.File("train-images-idx3-ubyte"))], _ => "is a FIFO, not a regular file"),
        // Checkpoints.
        ["nan checkpoint"] = new(d => Eval(BadFiles.Checkpoint(d.File("nan.safetensors"), nan: true)), _ => "non-finite value"),
        ["trailing bytes"] = new(d => Eval(Append(BadFiles.Checkpoint(d.File("t.safetensors")), [1, 2, 3])), _ => "3 bytes after its last tensor"),
        ["overlapping tensors"] = new(d => Eval(BadFiles.EditHeader(BadFiles.Checkpoint(d.File("o.safetensors")), Overlap)), _ => "overlapping"),
        ["wrong format"] = new(d => Eval(BadFiles.Checkpoint(d.File("f.safetensors"), new Dictionary<string, string> { ["format"] = "pytorch" })), _ => "metadata 'format' is 'pytorch'"),
        ["fifo checkpoint"] = new(d => Eval(Posix.Fifo(d.File("fifo.safetensors"))), _ => "is a FIFO, not a regular file"),
        ["directory checkpoint"] = new(d => Eval(d.Path), _ => "is a directory"),
        ["not a checkpoint"] = new(d => Eval(Write(d.File("x.safetensors"), Encoding.UTF8.GetBytes("hello, world"))), _ => "not a safetensors file"),
        // Deriving a checkpoint (l2o checkpoint FILE --set KEY=VALUE --out COPY).
        ["derive set without out"] = new(d => ["checkpoint", BadFiles.Checkpoint(d.File("c.safetensors")), "--set", "hidden=3"], _ => "checkpoint: --set and --out go together"),
        ["derive onto the source"] = new(d => ["checkpoint", BadFiles.Checkpoint(d.File("c.safetensors")), "--set", "hidden=3", "--out", d.File("c.safetensors")], _ => "--out must differ from the source file"),
        ["derive not key=value"] = new(d => ["checkpoint", BadFiles.Checkpoint(d.File("c.safetensors")), "--set", "hidden", "--out", d.File("o.safetensors")], _ => "--set 'hidden' is not KEY=VALUE"),
        ["derive changes the shapes"] = new(d => ["checkpoint", BadFiles.Checkpoint(d.File("c.safetensors")), "--set", "hidden=3", "--out", d.File("o.safetensors")], _ => "hidden=3 changes rnnprop's meta-parameters"),
        // Options that cannot apply.
        ["trajectory over the limit"] = new(_ => ["eval", "-t", "mlp", "-o", "sgd", "--trajectory", .. Quick], _ => "--trajectory records at most 5000 parameters"),
        ["checkpoint without a learned optimizer"] = new(d => ["eval", "-t", "rosenbrock", "-o", "adam", "--checkpoint", "x.safetensors", .. Quick], _ => "--checkpoint x.safetensors applies to learned optimizers"),
        ["no-convex without tricks"] = new(d => ["meta-train", "-o", "rnnprop", "-t", "quadratic", "--tricks", "false", "--no-convex", "-n", "1", "--out", d.File("r")], _ => "--no-convex drops one of the tricks, but they are off (--tricks false)"),
        ["final meta rate above the rate"] = new(d => ["meta-train", "-o", "rnnprop", "-t", "quadratic", "--meta-lr", "0.001", "--meta-lr-final", "0.01", "-n", "1", "--out", d.File("r")], _ => "must not exceed --meta-lr"),
        ["validation steps zero"] = new(d => ["meta-train", "-o", "rnnprop", "-t", "quadratic", "--validation-steps", "0", "-n", "1", "--out", d.File("r")], _ => "validation steps must be >= 1 (got 0)"),
        ["nothing to resume"] = new(d => ["meta-train", "--resume", d.Path], _ => "nothing to resume"),
        // bench --cluster.
        ["bench silos without cluster"] = new(_ => ["bench", "--silos", "2"], _ => "--silos is for --cluster; add --cluster or leave it out"),
        ["bench cluster two optimizers"] = new(_ => ["bench", "--cluster", "-o", "rnnprop", "-o", "hyperadam"], _ => "bench --cluster times one learned optimizer; give one -o (got 2)"),
        ["bench cluster silos zero"] = new(_ => ["bench", "--cluster", "--silos", "0"], _ => "--silos takes counts in 1..256"),
        ["bench cluster with eval task"] = new(_ => ["bench", "--cluster", "--eval-task", "cnn2"], _ => "--eval-task is for the engine benchmark; leave it out with --cluster"),
        ["bench block rows not a multiple of 4"] = new(_ => ["bench", "--block-rows", "6"], _ => "--block-rows takes a multiple of 4 in 4..4096, or 0 for each layout's default (got 6)"),
        ["bench block rows too large"] = new(_ => ["bench", "--block-rows", "8192"], _ => "--block-rows takes a multiple of 4 in 4..4096, or 0 for each layout's default (got 8192)"),
        ["bench cluster with block rows"] = new(_ => ["bench", "--cluster", "--block-rows", "256"], _ => "--block-rows is for the engine benchmark; leave it out with --cluster"),
        ["bench forward outputs unknown"] = new(_ => ["bench", "--forward-outputs", "store"], _ => "unknown --forward-outputs 'store'; valid: recompute, keep"),
        ["bench cluster with forward outputs"] = new(_ => ["bench", "--cluster", "--forward-outputs", "keep"], _ => "--forward-outputs is for the engine benchmark; leave it out with --cluster"),
        ["bench optimizee gradient unknown"] = new(_ => ["bench", "--optimizee-gradient", "fast"], _ => "unknown --optimizee-gradient 'fast'; valid: direct, autograd"),
        ["bench cluster with optimizee gradient"] = new(_ => ["bench", "--cluster", "--optimizee-gradient", "autograd"], _ => "--optimizee-gradient is for the engine benchmark; leave it out with --cluster"),
        // Output folders.
        ["folder with another run"] = new(d => ["eval", "-t", "rosenbrock", "-o", "sgd", "--out", WithReport(d), .. Quick], d => $"{d.Path} already holds the outputs of another run (report.json); choose another --out or pass --force"),
        ["output is a file"] = new(d => ["eval", "-t", "rosenbrock", "-o", "sgd", "--out", Write(d.File("file"), [1]), .. Quick], d => $"cannot write {d.File("file")}"),
    };

    public static TheoryData<string> Names() => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public void Bad_input_is_one_line_naming_the_problem_with_its_exit_code(string name)
    {
        using var dir = new TempDir();
        var c = Cases[name];
        var (code, err) = CliRunner.Run(c.Args(dir));
        Assert.True(code == c.Code, $"{name}: exit {code}, stderr: {err}");
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("error: ", err);
        Assert.Contains(c.Expected(dir), err);
    }

    [Fact]
    public void A_folder_locked_by_another_writer_names_the_holder()
    {
        using var dir = new TempDir();
        using (RunFolder.Acquire(dir.Path, "l2o test holder"))
        {
            var (code, err) = CliRunner.Run(["eval", "-t", "rosenbrock", "-o", "sgd", "--out", dir.Path, .. Quick]);
            Assert.Equal(1, code);
            Assert.Single(err.Trim().Split('\n'));
            Assert.Contains($"{dir.Path} is in use by another l2o process (PID {Environment.ProcessId}: l2o test holder)", err);
        }
        // Released: the folder is free again, and --force replaces the earlier outputs.
        Assert.Equal(0, CliRunner.Run(["eval", "-t", "rosenbrock", "-o", "sgd", "--out", dir.Path, .. Quick]).Code);
        Assert.Equal(1, CliRunner.Run(["eval", "-t", "rosenbrock", "-o", "sgd", "--out", dir.Path, .. Quick]).Code);
        Assert.Equal(0, CliRunner.Run(["eval", "-t", "rosenbrock", "-o", "sgd", "--out", dir.Path, "--force", .. Quick]).Code);
    }

    [Fact]
    public void Resume_says_what_may_change_and_refuses_the_rest_with_the_saved_value()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        string[] common = ["-t", "quadratic", "--steps", "6", "--unroll", "3", "--validate-every", "2", "--validation-runs", "1", "--meta-lr", "0.001"];
        var (code, err) = CliRunner.Run(["meta-train", "-o", "rnnprop:hidden=3", "-n", "2", "--out", run, .. common]);
        Assert.True(code == 0, err);

        (string[] Args, string Expected)[] refused =
        [
            (["-n", "2"], $"{run} is already at iteration 2 (finished its 2 iterations); give -n above 2 to continue it"),
            (["-n", "1"], "give -n above 2"),
            (["-n", "4", "--meta-lr", "0.01"], "--meta-lr cannot change on resume (the run has 0.001); what may change: -n, --meta-lr-final, --validate-every, --checkpoint-every, --workers, --threads"),
            (["-n", "4", "-o", "hyperadam"], "--optimizer cannot change on resume (the run has rnnprop)"),
            (["-n", "4", "--steps", "20"], "--steps cannot change on resume (the run has 6)"),
            (["-n", "4", "--seed", "3"], "--seed cannot change on resume (the run has 0)"),
            (["-n", "4", "--validation-steps", "9"], "--validation-steps cannot change on resume (the run has none)"),
            (["-n", "4", "--out", dir.File("elsewhere")], $"--resume continues in {run}; leave --out out"),
        ];
        foreach (var (args, expected) in refused)
        {
            var (c, e) = CliRunner.Run(["meta-train", "--resume", run, .. args]);
            Assert.True(c == 1, $"{string.Join(' ', args)}: exit {c}: {e}");
            Assert.Single(e.Trim().Split('\n'));
            Assert.Contains(expected, e);
        }
        // Unchanged values and the options that may change are accepted.
        var (ok, okErr) = CliRunner.Run(["meta-train", "--resume", run, "-n", "3", "--steps", "6", "-o", "rnnprop", "--validate-every", "1", "--meta-lr-final", "0.0005"]);
        Assert.True(ok == 0, okErr);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, MetaTrainer.LogFile)).Length);
    }

    private static string[] Eval(string checkpoint) => ["eval", "-t", "quadratic", "-o", "rnnprop", "--checkpoint", checkpoint, "--runs", "1", "--steps", "1"];

    private static string Write(string path, byte[] bytes)
    {
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string Append(string path, byte[] bytes)
    {
        using var fs = new FileStream(path, FileMode.Append);
        fs.Write(bytes);
        return path;
    }

    private static string WithReport(TempDir d)
    {
        File.WriteAllText(d.File("report.json"), "{}");
        return d.Path;
    }

    /// <summary>Points the second tensor at the first one's bytes.</summary>
    private static void Overlap(JsonObject header)
    {
        var tensors = header.Where(kv => kv.Key != "__metadata__").Select(kv => kv.Value!.AsObject()).ToList();
        var first = tensors.OrderBy(t => (long)t["data_offsets"]![0]!).First();
        var second = tensors.First(t => !ReferenceEquals(t, first) && (long)t["data_offsets"]![1]! - (long)t["data_offsets"]![0]! <= (long)first["data_offsets"]![1]!);
        long length = (long)second["data_offsets"]![1]! - (long)second["data_offsets"]![0]!;
        second["data_offsets"] = new JsonArray(0, length);
    }
}
