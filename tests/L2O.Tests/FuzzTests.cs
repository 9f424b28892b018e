using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using L2O.Checkpoints;
using L2O.Data;
using L2O.Learned;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace L2O.Tests;

/// <summary>
/// Seeded mutation fuzzing of the IDX and safetensors readers: thousands of valid files with random
/// damage. Each must load consistently or fail with an <see cref="L2OException"/>; any other
/// exception, a slow parse, or an allocation far beyond the input's size fails the test.
/// </summary>
public class FuzzTests(ITestOutputHelper output)
{
    /// <summary>Inputs per reader (a second or two); <c>L2O_FUZZ_INPUTS</c> raises it for a deeper run.</summary>
    private static readonly int Inputs = int.TryParse(Environment.GetEnvironmentVariable("L2O_FUZZ_INPUTS"), out int n) && n > 0 ? n : 10_000;

    [Fact]
    public void Mutated_idx_files_load_or_fail_with_a_data_error()
    {
        var seeds = new List<byte[]>
        {
            Idx.Encode([3, 2, 3], Enumerable.Range(0, 18).Select(i => (byte)i).ToArray()),
            Idx.Encode([5], [0, 1, 2, 3, 4]),
            Idx.Encode([2, 28, 28], new byte[2 * 784]),
        };
        seeds.AddRange(seeds.Select(Gzip).ToList());
        var (loaded, rejected) = Fuzz(seeds, seed: 1, bytes =>
        {
            using var s = new MemoryStream(bytes);
            if (bytes.Length > 3 && (bytes[3] == 1 || (bytes[0] == 0x1f && bytes[1] == 0x8b && bytes.Length % 2 == 0)))
            {
                var labels = Idx.ReadLabels(s, "fuzz");
                Assert.NotNull(labels);
            }
            else
            {
                var images = Idx.ReadImages(s, "fuzz");
                Assert.Equal((long)images.Count * images.Rows * images.Columns, images.Pixels.Length);
            }
        });
        output.WriteLine($"IDX: {Inputs} mutated inputs, {loaded} loaded, {rejected} rejected with a data error");
    }

    [Fact]
    public void Mutated_safetensors_files_load_or_fail_with_a_data_error()
    {
        using var dir = new TempDir();
        var seeds = new List<byte[]>();
        foreach (var spec in new[] { "rnnprop:hidden=2", "hyperadam:j=2" })
        {
            using var learned = LearnedRegistry.Create(spec);
            learned.Save(dir.File("a.safetensors"));
            seeds.Add(File.ReadAllBytes(dir.File("a.safetensors")));
        }
        SafeTensors.Save(dir.File("b.safetensors"), [("x", ones(3, 2)), ("y", zeros(0))], new Dictionary<string, string> { ["k"] = "v" }, float64: true);
        seeds.Add(File.ReadAllBytes(dir.File("b.safetensors")));
        var (loaded, rejected) = Fuzz(seeds, seed: 2, bytes =>
        {
            using var scope = NewDisposeScope();
            var contents = SafeTensors.Parse(bytes, "fuzz");
            long total = 0;
            foreach (var (_, t) in contents.Tensors)
            {
                total += t.numel() * t.element_size();
                using var finite = t.isfinite().all();
                Assert.True(finite.item<bool>());
            }
            Assert.True(total <= bytes.Length);
        }, text: true);
        output.WriteLine($"safetensors: {Inputs} mutated inputs, {loaded} loaded, {rejected} rejected with a data error");
    }

    /// <summary>Runs <paramref name="parse"/> on <see cref="Inputs"/> mutations of <paramref name="seeds"/>; returns how many loaded and how many were rejected.</summary>
    private static (int Loaded, int Rejected) Fuzz(IReadOnlyList<byte[]> seeds, int seed, Action<byte[]> parse, bool text = false)
    {
        var random = new Random(seed);
        int loaded = 0, rejected = 0;
        var total = Stopwatch.StartNew();
        for (int i = 0; i < Inputs; i++)
        {
            var input = Mutate(seeds[random.Next(seeds.Count)], random, text);
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            var watch = Stopwatch.StartNew();
            try
            {
                parse(input);
                loaded++;
            }
            catch (L2OException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"input {i} (seed {seed}): {e.GetType().Name}: {e.Message}\n{Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 256)))}");
            }
            Assert.True(watch.ElapsedMilliseconds < 2000, $"input {i} (seed {seed}) took {watch.ElapsedMilliseconds} ms");
            long used = GC.GetAllocatedBytesForCurrentThread() - allocated;
            Assert.True(used < 4_000_000 + 64L * input.Length, $"input {i} (seed {seed}) allocated {used} bytes for {input.Length} input bytes");
        }
        Assert.True(total.Elapsed < TimeSpan.FromSeconds(60), $"fuzzing took {total.Elapsed}");
        return (loaded, rejected);
    }

    /// <summary>One to four random edits: byte flips, interesting values, big-endian sizes, cuts, insertions, duplications (and text edits of a JSON header).</summary>
    private static byte[] Mutate(byte[] seed, Random r, bool text)
    {
        var b = new List<byte>(seed);
        int edits = r.Next(1, 5);
        for (int e = 0; e < edits; e++)
        {
            int at = b.Count == 0 ? 0 : r.Next(b.Count);
            switch (r.Next(text ? 9 : 7))
            {
                case 0: if (b.Count > 0) b[at] ^= (byte)(1 << r.Next(8)); break;
                case 1: if (b.Count > 0) b[at] = new byte[] { 0, 1, 0x7F, 0x80, 0xFF, 0x08, 0x03 }[r.Next(7)]; break;
                case 2:
                    var size = BitConverter.GetBytes(new[] { 0, 1, -1, int.MaxValue, int.MinValue, 1 << 16, 1 << 24, 60000 }[r.Next(8)]);
                    Array.Reverse(size);   // IDX sizes are big-endian
                    for (int k = 0; k < 4 && at + k < b.Count; k++) b[at + k] = size[k];
                    break;
                case 3: b.RemoveRange(at, b.Count - at); break;                                   // truncate
                case 4: b.InsertRange(at, Enumerable.Range(0, r.Next(1, 16)).Select(_ => (byte)r.Next(256))); break;
                case 5: if (b.Count > 0) { int n = Math.Min(r.Next(1, 64), b.Count - at); b.InsertRange(at, b.GetRange(at, n)); } break;
                case 6: if (b.Count > 0) b.RemoveRange(at, Math.Min(r.Next(1, 8), b.Count - at)); break;
                case 7: ReplaceText(b, r); break;
                case 8: for (int k = 0; k < 8 && k < b.Count; k++) b[k] = (byte)r.Next(256); break;   // the header length
            }
        }
        return [.. b];
    }

    /// <summary>Replaces a digit, quote, bracket or name of the JSON header with another token.</summary>
    private static void ReplaceText(List<byte> b, Random r)
    {
        string[] tokens = ["0", "9", "-1", "1e309", "\"", "[", "]", "{", "}", ",", ":", "null", "true", "\"F16\"", "\"F64\"", "\"dtype\"", "\"__metadata__\"", "18446744073709551615", "NaN"];
        int end = Math.Min(b.Count, 8 + 4096);
        var candidates = Enumerable.Range(8, Math.Max(0, end - 8)).Where(i => "0123456789\"[]{},:".Contains((char)b[i])).ToList();
        if (candidates.Count == 0) return;
        int at = candidates[r.Next(candidates.Count)];
        b.RemoveAt(at);
        b.InsertRange(at, Encoding.UTF8.GetBytes(tokens[r.Next(tokens.Length)]));
    }

    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }
}
