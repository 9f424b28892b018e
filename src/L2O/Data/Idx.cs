using System.Buffers.Binary;
using System.IO.Compression;
using L2O.Runtime;

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

    /// <summary>
    /// Largest data section read (1 GiB, 40 times the largest IDX file L2O knows): a header that declares
    /// more is refused before anything is allocated, so a gzip bomb fails at once.
    /// </summary>
    public const long MaxDataBytes = 1L << 30;

    private static Stream OpenFile(string path) => DataFiles.OpenRegular(path);

    /// <summary>
    /// Streams the header, then exactly the bytes it declares, then checks that nothing follows: memory
    /// is bounded by the declared size (at most <see cref="MaxDataBytes"/>) whatever the file inflates to.
    /// </summary>
    private static (int[] Dims, byte[] Data) Read(Stream stream, string name, int expectedDims)
    {
        if (!stream.CanSeek)
        {
            // Peeking at the gzip magic needs a seekable stream; a pipe-like source is buffered, with the same bound.
            var buffered = new MemoryStream();
            CopyAtMost(stream, buffered, MaxDataBytes + 1, name);
            buffered.Position = 0;
            stream = buffered;
        }
        long start = stream.Position;
        var magic = new byte[2];
        bool gzip = ReadFully(stream, magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        stream.Position = start;
        try
        {
            using var input = gzip ? new GZipStream(stream, CompressionMode.Decompress, leaveOpen: true) : null;
            var (dims, data) = ReadIdx(input ?? stream, name, expectedDims, gzip);
            if (gzip) CheckGzipTrailer(stream, start, 4 + 4L * dims.Length + data.Length, name);
            return (dims, data);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(name, $"is not valid gzip ({e.Message})");
        }
        catch (Exception e) when (e is EndOfStreamException)
        {
            throw new DataFormatException(name, "is a truncated gzip stream");
        }
        catch (Exception e) when (FileErrors.IsFileError(e))
        {
            throw new DataFormatException(name, $"cannot be read: {FileErrors.Cause(e)}");
        }
    }

    private static (int[] Dims, byte[] Data) ReadIdx(Stream input, string name, int expectedDims, bool gzip)
    {
        string what = gzip ? "truncated (the gzip stream ends" : "truncated (the file ends";
        var head = new byte[4];
        int got = ReadFully(input, head);
        if (got < 4) throw new DataFormatException(name, $"is truncated: {got} bytes, shorter than the 4-byte IDX magic{(gzip ? " (gzip)" : "")}");
        if (head[0] != 0 || head[1] != 0)
            throw new DataFormatException(name, $"has wrong magic 0x{head[0]:X2}{head[1]:X2}{head[2]:X2}{head[3]:X2}: IDX files start with two zero bytes");
        if (head[2] != UnsignedByte)
            throw new DataFormatException(name, $"has element type 0x{head[2]:X2}; only unsigned bytes (0x08) are supported");
        int nd = head[3];
        if (nd != expectedDims)
            throw new DataFormatException(name, $"has {nd} dimensions where {expectedDims} were expected ({(expectedDims == 3 ? "images" : "labels")} file; magic 0x{0x800 + nd:X8})");
        var sizes = new byte[4 * nd];
        got = ReadFully(input, sizes);
        if (got < sizes.Length) throw new DataFormatException(name, $"is {what} inside its header: {4 + got} of {4 + sizes.Length} bytes)");

        var dims = new int[nd];
        for (int i = 0; i < nd; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(sizes.AsSpan(4 * i));
            if (dims[i] <= 0) throw new DataFormatException(name, $"declares dimension {i} of size {dims[i]}");
        }
        double declared = dims.Aggregate(1.0, (a, d) => a * d);   // in double: three sizes below 2^31 can overflow a long
        if (declared > MaxDataBytes)
            throw new DataFormatException(name, $"declares {string.Join("x", dims)} = {declared.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)} values, more than the {MaxDataBytes >> 20} MiB L2O reads from one IDX file");
        long expected = (long)declared;
        var data = ReadUpTo(input, expected, out long read);
        if (read < expected)
            throw new DataFormatException(name, $"is {what} after {read} bytes: its header declares {string.Join("x", dims)} = {expected} values)");
        long extra = CountRemaining(input, limit: 1 << 20);
        if (extra > 0)
            throw new DataFormatException(name, $"has {(extra > 1 << 20 ? "more than 1 MiB" : $"{extra} bytes")} after the {expected} values its header declares");
        return (dims, data);
    }

    /// <summary>GZipStream stops quietly at a cut-off stream; the trailer's ISIZE (length mod 2^32) catches that.</summary>
    private static void CheckGzipTrailer(Stream raw, long start, long decompressed, string name)
    {
        long length = raw.Length - start;
        if (length < 18) throw new DataFormatException(name, $"is a truncated gzip stream ({length} bytes)");
        var trailer = new byte[4];
        raw.Position = raw.Length - 4;
        ReadFully(raw, trailer);
        uint declared = BinaryPrimitives.ReadUInt32LittleEndian(trailer);
        if (declared != (uint)decompressed)
            throw new DataFormatException(name, $"is a truncated or corrupt gzip stream ({decompressed} bytes decompressed, trailer says {declared})");
    }

    /// <summary>
    /// Reads up to <paramref name="count"/> bytes into a buffer that grows with what actually arrives, so a
    /// header that lies about a short file costs no more memory than the file.
    /// </summary>
    private static byte[] ReadUpTo(Stream s, long count, out long read)
    {
        var buffer = new byte[Math.Min(count, 1 << 20)];
        read = 0;
        while (true)
        {
            int n = s.Read(buffer, (int)read, buffer.Length - (int)read);
            if (n == 0) return buffer;
            read += n;
            if (read == buffer.Length)
            {
                if (read == count) return buffer;
                Array.Resize(ref buffer, (int)Math.Min(count, 2L * buffer.Length));
            }
        }
    }

    private static int ReadFully(Stream s, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>Bytes left in <paramref name="s"/>, counting no further than just past <paramref name="limit"/>.</summary>
    private static long CountRemaining(Stream s, int limit)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        int n;
        while (total <= limit && (n = s.Read(buffer)) > 0) total += n;
        return total;
    }

    private static void CopyAtMost(Stream from, Stream to, long limit, string name)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        int n;
        while ((n = from.Read(buffer)) > 0)
        {
            total += n;
            if (total > limit) throw new DataFormatException(name, $"is larger than the {limit >> 20} MiB L2O reads from one IDX file");
            to.Write(buffer, 0, n);
        }
    }
}

/// <summary>A data file that is missing, corrupt, truncated or inconsistent; the message names the file.</summary>
public sealed class DataFormatException(string file, string problem) : L2OException($"{file}: {problem}")
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
