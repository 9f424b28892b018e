using System.Buffers.Binary;
using System.IO.Compression;

namespace L2O.Data;

/// <summary>
/// Reader for the IDX format of MNIST and Fashion-MNIST (big-endian header: two zero bytes, a type
/// code, the number of dimensions, then one 32-bit size per dimension, then the data). Files may be
/// gzip-compressed or raw; the gzip magic decides. Every malformed file raises an
/// <see cref="DataFormatException"/> that names the file and the problem.
/// </summary>
public static class Idx
{
    private const byte UnsignedByte = 0x08;

    /// <summary>Images as bytes in row-major order, with their count and size.</summary>
    public sealed record Images(int Count, int Rows, int Columns, byte[] Pixels);

    public static Images ReadImages(string path)
    {
        using var s = OpenFile(path);
        return ReadImages(s, path);
    }

    public static byte[] ReadLabels(string path)
    {
        using var s = OpenFile(path);
        return ReadLabels(s, path);
    }

    public static Images ReadImages(Stream stream, string name)
    {
        var (dims, data) = Read(stream, name, expectedDims: 3);
        return new Images(dims[0], dims[1], dims[2], data);
    }

    public static byte[] ReadLabels(Stream stream, string name) => Read(stream, name, expectedDims: 1).Data;

    /// <summary>Writes a raw (uncompressed) IDX file of unsigned bytes; used by tests and tools.</summary>
    public static byte[] Encode(ReadOnlySpan<int> dims, ReadOnlySpan<byte> data)
    {
        var buf = new byte[4 + 4 * dims.Length + data.Length];
        buf[2] = UnsignedByte;
        buf[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(buf.AsSpan(4 + 4 * dims.Length));
        return buf;
    }

    private static Stream OpenFile(string path)
    {
        try
        {
            return File.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, $"cannot be opened: {e.Message}");
        }
    }

    private static (int[] Dims, byte[] Data) Read(Stream stream, string name, int expectedDims)
    {
        byte[] bytes;
        try
        {
            bytes = ReadAll(stream, name);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(name, $"is not valid gzip ({e.Message})");
        }

        if (bytes.Length < 4) throw new DataFormatException(name, $"is truncated: {bytes.Length} bytes, shorter than the 4-byte IDX magic");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new DataFormatException(name, $"has wrong magic 0x{bytes[0]:X2}{bytes[1]:X2}{bytes[2]:X2}{bytes[3]:X2}: IDX files start with two zero bytes");
        if (bytes[2] != UnsignedByte)
            throw new DataFormatException(name, $"has element type 0x{bytes[2]:X2}; only unsigned bytes (0x08) are supported");
        int nd = bytes[3];
        if (nd != expectedDims)
            throw new DataFormatException(name, $"has {nd} dimensions where {expectedDims} were expected ({(expectedDims == 3 ? "images" : "labels")} file; magic 0x{0x800 + nd:X8})");
        int header = 4 + 4 * nd;
        if (bytes.Length < header) throw new DataFormatException(name, $"is truncated inside its header ({bytes.Length} of {header} bytes)");

        var dims = new int[nd];
        long expected = 1;
        for (int i = 0; i < nd; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (dims[i] <= 0) throw new DataFormatException(name, $"declares dimension {i} of size {dims[i]}");
            expected *= dims[i];
        }
        long actual = bytes.Length - header;
        if (actual < expected)
            throw new DataFormatException(name, $"is truncated: header declares {string.Join("x", dims)} = {expected} values but only {actual} bytes follow");
        if (actual > expected)
            throw new DataFormatException(name, $"has {actual - expected} bytes after the {expected} values its header declares");
        return (dims, bytes.AsSpan(header).ToArray());
    }

    private static byte[] ReadAll(Stream stream, string name)
    {
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        var raw = ms.ToArray();
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var outMs = new MemoryStream();
            try
            {
                gz.CopyTo(outMs);
            }
            catch (EndOfStreamException)
            {
                throw new DataFormatException(name, "is a truncated gzip stream");
            }
            // GZipStream stops quietly at a cut-off stream; the trailer's ISIZE (length mod 2^32) catches that.
            if (raw.Length < 18) throw new DataFormatException(name, $"is a truncated gzip stream ({raw.Length} bytes)");
            uint declared = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(raw.Length - 4));
            if (declared != (uint)outMs.Length)
                throw new DataFormatException(name, $"is a truncated or corrupt gzip stream ({outMs.Length} bytes decompressed, trailer says {declared})");
            return outMs.ToArray();
        }
        return raw;
    }
}

/// <summary>A data file that is missing, corrupt, truncated or inconsistent; the message names the file.</summary>
public sealed class DataFormatException(string file, string problem) : L2OException($"{file}: {problem}")
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
