using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using L2O.Data;
using L2O.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace L2O.Checkpoints;

/// <summary>
/// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
/// an 8-byte little-endian header length, a JSON header mapping each tensor name to its dtype,
/// shape and byte range, an optional <c>__metadata__</c> object of strings, then the raw
/// little-endian data. L2O writes float32 (and float64 when asked); it reads F32 and F64.
/// </summary>
public static class SafeTensors
{
    /// <summary>Contents of a file: tensors (CPU, in file order) and string metadata.</summary>
    public sealed record Contents(IReadOnlyList<(string Name, Tensor Tensor)> Tensors, IReadOnlyDictionary<string, string> Metadata)
    {
        public Tensor this[string name] => Tensors.FirstOrDefault(t => t.Name == name).Tensor
            ?? throw new L2OException($"tensor '{name}' is missing from the checkpoint");
    }

    /// <summary>Writes atomically (temporary file, then rename).</summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string> metadata, bool float64 = false)
    {
        var header = new JsonObject();
        if (metadata.Count > 0)
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            header["__metadata__"] = meta;
        }
        var blobs = new List<byte[]>();
        long offset = 0;
        var names = new HashSet<string>();
        foreach (var (name, t) in tensors)
        {
            if (!names.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
            using var scope = NewDisposeScope();
            var cpu = t.detach().to(float64 ? ScalarType.Float64 : ScalarType.Float32).cpu().contiguous();
            byte[] bytes = float64 ? ToBytes(cpu.data<double>().ToArray()) : ToBytes(cpu.data<float>().ToArray());
            header[name] = new JsonObject
            {
                ["dtype"] = float64 ? "F64" : "F32",
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)JsonValue.Create(d)).ToArray<JsonNode?>()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes.Length)),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;   // the format allows trailing spaces; 8-byte alignment of the data
        AtomicFile.Write(path, s =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            s.Write(len);
            s.Write(json);
            for (int i = json.Length; i < padded; i++) s.WriteByte((byte)' ');
            foreach (var b in blobs) s.Write(b);
        });
    }

    public static Contents Load(string path) => Parse(DataFiles.ReadAllBytes(path), path);

    public static Contents Parse(byte[] bytes, string name)
    {
        if (bytes.Length < 8) throw new DataFormatException(name, "is not a safetensors file (shorter than its 8-byte header length)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength == 0 || headerLength > (ulong)(bytes.Length - 8))
            throw new DataFormatException(name, $"is not a safetensors file or is truncated (header length {headerLength}, file {bytes.Length} bytes)");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))?.AsObject()
                     ?? throw new DataFormatException(name, "has an empty header");
        }
        catch (JsonException e)
        {
            throw new DataFormatException(name, $"has a header that is not valid JSON ({e.Message})");
        }
        long dataStart = 8 + (long)headerLength;
        long dataLength = bytes.Length - dataStart;
        var metadata = new Dictionary<string, string>();
        var tensors = new List<(string, Tensor)>();
        foreach (var (key, node) in header)
        {
            if (key == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) metadata[k] = v?.GetValue<string>() ?? "";
                continue;
            }
            try
            {
                var o = node!.AsObject();
                string dtype = o["dtype"]!.GetValue<string>();
                long[] shape = o["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
                var offs = o["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
                int size = dtype switch { "F32" => 4, "F64" => 8, _ => throw new DataFormatException(name, $"tensor '{key}' has dtype {dtype}; only F32 and F64 are supported") };
                long count = shape.Aggregate(1L, (a, b) => a * b);
                if (offs.Length != 2 || offs[0] < 0 || offs[1] > dataLength || offs[1] - offs[0] != count * size)
                    throw new DataFormatException(name, $"tensor '{key}' has byte range [{string.Join(", ", offs)}] that does not match shape [{string.Join(", ", shape)}] of {dtype} within {dataLength} data bytes");
                var span = bytes.AsSpan((int)(dataStart + offs[0]), (int)(offs[1] - offs[0]));
                Tensor t = dtype == "F32" ? tensor(FromBytes<float>(span), shape) : tensor(FromBytes<double>(span), shape);
                tensors.Add((key, t));
            }
            catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException)
            {
                throw new DataFormatException(name, $"tensor '{key}' has a malformed header entry");
            }
        }
        return new Contents(tensors, metadata);
    }

    private static byte[] ToBytes<T>(T[] values) where T : unmanaged
    {
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        return bytes;
    }

    private static T[] FromBytes<T>(ReadOnlySpan<byte> bytes) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes).ToArray();
}
