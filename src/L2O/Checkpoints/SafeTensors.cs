using System.Buffers.Binary;
using System.Runtime.InteropServices;
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

    /// <summary>Largest checkpoint read (1 GiB; L2O's are kilobytes to megabytes).</summary>
    public const long MaxFileBytes = 1L << 30;

    /// <summary>Largest JSON header accepted (the reference implementation's limit, 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Reads and validates a checkpoint; only a regular file of at most <see cref="MaxFileBytes"/> is read.</summary>
    public static Contents Load(string path) => Parse(DataFiles.ReadAllBytes(path, MaxFileBytes), path);

    /// <summary>
    /// Parses and validates a whole file: the header is a JSON object of tensor entries and string
    /// metadata, names are unique, the byte ranges tile the data section exactly (contiguous, no
    /// overlap, no gap, nothing after the last tensor), and every value is finite. Any violation is a
    /// <see cref="DataFormatException"/>; nothing is allocated beyond the file's own size.
    /// </summary>
    public static Contents Parse(byte[] bytes, string name)
    {
        if (bytes.Length < 8) throw new DataFormatException(name, "is not a safetensors file (shorter than its 8-byte header length)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength == 0 || headerLength > (ulong)(bytes.Length - 8))
            throw new DataFormatException(name, $"is not a safetensors file or is truncated (header length {headerLength}, file {bytes.Length} bytes)");
        if (headerLength > MaxHeaderBytes)
            throw new DataFormatException(name, $"has a {headerLength}-byte header, more than the {MaxHeaderBytes} accepted");
        long dataStart = 8 + (long)headerLength;
        long dataLength = bytes.Length - dataStart;
        if (!System.Text.Unicode.Utf8.IsValid(bytes.AsSpan(8, (int)headerLength)))
            throw new DataFormatException(name, "has a header that is not valid UTF-8");

        var metadata = new Dictionary<string, string>();
        var entries = new List<Entry>();
        try
        {
            using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new DataFormatException(name, "has a header that is not a JSON object");
            var names = new HashSet<string>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name)) throw new DataFormatException(name, $"names '{property.Name}' twice in its header");
                if (property.Name == "__metadata__") ReadMetadata(property.Value, metadata, name);
                else entries.Add(ReadEntry(property, dataLength, name));
            }
        }
        catch (JsonException e)
        {
            throw new DataFormatException(name, $"has a header that is not valid JSON ({e.Message.ReplaceLineEndings(" ")})");
        }

        // The format's rule: the byte ranges tile the data section, so no tensor overlaps another and no byte is unaccounted for.
        long at = 0;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin != at)
                throw new DataFormatException(name, e.Begin < at
                    ? $"tensor '{e.Name}' has byte range [{e.Begin}, {e.End}] overlapping the tensor before it"
                    : $"has {e.Begin - at} unused data bytes before tensor '{e.Name}' (byte ranges must be contiguous)");
            at = e.End;
        }
        if (at != dataLength) throw new DataFormatException(name, $"has {dataLength - at} bytes after its last tensor (truncated write or appended data)");

        foreach (var e in entries) CheckFinite(bytes.AsSpan((int)(dataStart + e.Begin), (int)(e.End - e.Begin)), e, name);
        var tensors = entries.Select(e =>
        {
            var span = bytes.AsSpan((int)(dataStart + e.Begin), (int)(e.End - e.Begin));
            return (e.Name, e.DType == "F32" ? tensor(FromBytes<float>(span), e.Shape) : tensor(FromBytes<double>(span), e.Shape));
        }).ToList();
        return new Contents(tensors, metadata);
    }

    /// <summary>A tensor's header entry: dtype, shape and byte range [Begin, End) within the data section.</summary>
    private sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    private static void ReadMetadata(JsonElement node, Dictionary<string, string> metadata, string name)
    {
        if (node.ValueKind != JsonValueKind.Object) throw new DataFormatException(name, "has __metadata__ that is not an object of strings");
        foreach (var p in node.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw new DataFormatException(name, $"has metadata '{p.Name}' that is not a string");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!)) throw new DataFormatException(name, $"names metadata '{p.Name}' twice");
        }
    }

    private static Entry ReadEntry(JsonProperty property, long dataLength, string name)
    {
        string key = property.Name;
        DataFormatException Malformed(string what) => new(name, $"tensor '{key}' has a malformed header entry ({what})");
        var o = property.Value;
        if (o.ValueKind != JsonValueKind.Object) throw Malformed("not an object");
        if (!o.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Malformed("no dtype");
        string dtype = dt.GetString()!;
        int size = dtype switch { "F32" => 4, "F64" => 8, _ => throw new DataFormatException(name, $"tensor '{key}' has dtype {dtype}; only F32 and F64 are supported") };
        if (!o.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Malformed("no shape");
        var shape = new long[sh.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out shape[i]) || shape[i] < 0) throw Malformed("shape is not a list of sizes");
            // Bounded by the data it must fit in, so the product cannot overflow.
            count = shape[i] == 0 || count == 0 ? 0 : count > dataLength / shape[i] ? dataLength + 1 : count * shape[i];
            i++;
        }
        if (!o.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2) throw Malformed("data_offsets is not [begin, end]");
        var range = new long[2];
        i = 0;
        foreach (var x in off.EnumerateArray())
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out range[i++])) throw Malformed("data_offsets is not [begin, end]");
        long begin = range[0], end = range[1];
        if (begin < 0 || end < begin || end > dataLength || count > dataLength || end - begin != count * size)
            throw new DataFormatException(name, $"tensor '{key}' has byte range [{begin}, {end}] that does not match shape [{string.Join(", ", shape)}] of {dtype} within {dataLength} data bytes");
        return new Entry(key, dtype, shape, begin, end);
    }

    /// <summary>A NaN or infinite meta-parameter would load as a usable optimizer that only produces NaN.</summary>
    private static void CheckFinite(ReadOnlySpan<byte> data, Entry e, string name)
    {
        int bad = e.DType == "F32" ? IndexOfNonFinite(MemoryMarshal.Cast<byte, float>(data)) : IndexOfNonFinite(MemoryMarshal.Cast<byte, double>(data));
        if (bad >= 0) throw new DataFormatException(name, $"tensor '{e.Name}' holds a non-finite value (NaN or infinity) at element {bad}");
    }

    private static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++) if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private static int IndexOfNonFinite(ReadOnlySpan<double> values)
    {
        for (int i = 0; i < values.Length; i++) if (!double.IsFinite(values[i])) return i;
        return -1;
    }

    private static byte[] ToBytes<T>(T[] values) where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        return bytes;
    }

    private static T[] FromBytes<T>(ReadOnlySpan<byte> bytes) where T : unmanaged => MemoryMarshal.Cast<byte, T>(bytes).ToArray();
}
