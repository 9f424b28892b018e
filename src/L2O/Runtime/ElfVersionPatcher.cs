using System.Buffers.Binary;
using System.Text;

namespace L2O.Runtime;

/// <summary>
/// Marks selected symbol-version requirements of an ELF64 shared library as weak
/// (<c>VER_FLG_WEAK</c> in <c>.gnu.version_r</c>), so that the dynamic loader accepts the library
/// on a system whose dependency lacks those versions.
/// </summary>
/// <remarks>
/// Why: the prebuilt <c>libLibTorchSharp.so</c> of TorchSharp 0.107 records a need for
/// <c>GLIBCXX_3.4.32</c> from libstdc++, but the only symbol behind that version
/// (<c>std::ios_base_library_init()</c>) is referenced and never called. Debian 12 ships
/// libstdc++ up to 3.4.30, so the unmodified library fails to load there. A weak version need is
/// reported by glibc only in verbose mode and does not stop the load. The patch changes two bytes
/// per entry and nothing else; it is applied to a copy, never to the original file.
/// </remarks>
public static class ElfVersionPatcher
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>One version requirement found in <c>.gnu.version_r</c>.</summary>
    public sealed record VersionNeed(string File, string Version, ushort Flags)
    {
        public bool IsWeak => (Flags & VerFlgWeak) != 0;
    }

    /// <summary>Lists every version requirement of an ELF64 little-endian image.</summary>
    public static IReadOnlyList<VersionNeed> ReadVersionNeeds(ReadOnlySpan<byte> image, string fileNameForErrors = "ELF image")
    {
        var needs = new List<VersionNeed>();
        foreach (var (file, version, flagsOffset) in Walk(image, fileNameForErrors))
            needs.Add(new VersionNeed(file, version, BinaryPrimitives.ReadUInt16LittleEndian(image[flagsOffset..])));
        return needs;
    }

    /// <summary>
    /// Sets <c>VER_FLG_WEAK</c> on every requirement whose version name is in <paramref name="versions"/>.
    /// Returns how many entries were changed (entries already weak are not counted).
    /// </summary>
    public static int MarkWeak(Span<byte> image, IReadOnlySet<string> versions, string fileNameForErrors = "ELF image")
    {
        int changed = 0;
        foreach (var (_, version, off) in Walk(image, fileNameForErrors))
        {
            if (!versions.Contains(version)) continue;
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(image[off..]);
            if ((flags & VerFlgWeak) != 0) continue;
            BinaryPrimitives.WriteUInt16LittleEndian(image[off..], (ushort)(flags | VerFlgWeak));
            changed++;
        }
        return changed;
    }

    /// <summary>Every (needed file, version name, offset of vna_flags) in the image.</summary>
    private static List<(string File, string Version, int FlagsOffset)> Walk(ReadOnlySpan<byte> image, string name)
    {
        var found = new List<(string, string, int)>();
        if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
            throw new InvalidDataException($"{name}: not an ELF file (bad magic).");
        if (image[4] != 2 || image[5] != 1)
            throw new InvalidDataException($"{name}: only 64-bit little-endian ELF is supported.");

        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(image[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(image[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(image[0x3C..]);
        if (shoff == 0 || shnum == 0 || shentsize < 64 || shoff + (ulong)(shnum * shentsize) > (ulong)image.Length)
            throw new InvalidDataException($"{name}: section header table is missing or truncated.");

        for (int s = 0; s < shnum; s++)
        {
            var sh = image.Slice(checked((int)shoff + s * shentsize), 64);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed) continue;

            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[24..]);
            long size = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[32..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[40..]);
            int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[44..]);
            if (link >= shnum || offset < 0 || offset + size > image.Length)
                throw new InvalidDataException($"{name}: .gnu.version_r section is out of bounds.");
            var strSh = image.Slice(checked((int)shoff + link * shentsize), 64);
            long strOff = (long)BinaryPrimitives.ReadUInt64LittleEndian(strSh[24..]);
            long strSize = (long)BinaryPrimitives.ReadUInt64LittleEndian(strSh[32..]);
            if (strOff < 0 || strOff + strSize > image.Length)
                throw new InvalidDataException($"{name}: string table of .gnu.version_r is out of bounds.");
            var strtab = image.Slice((int)strOff, (int)strSize);

            long need = offset;
            for (int i = 0; i < count; i++)
            {
                CheckRange(image, need, 16, name);
                var vn = image.Slice((int)need, 16);
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(vn[2..]);
                string file = ReadString(strtab, BinaryPrimitives.ReadUInt32LittleEndian(vn[4..]), name);
                long aux = need + BinaryPrimitives.ReadUInt32LittleEndian(vn[8..]);
                for (int j = 0; j < cnt; j++)
                {
                    CheckRange(image, aux, 16, name);
                    var va = image.Slice((int)aux, 16);
                    string version = ReadString(strtab, BinaryPrimitives.ReadUInt32LittleEndian(va[8..]), name);
                    found.Add((file, version, (int)aux + 4));
                    uint nextAux = BinaryPrimitives.ReadUInt32LittleEndian(va[12..]);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(vn[12..]);
                if (next == 0) break;
                need += next;
            }
        }
        return found;
    }

    private static void CheckRange(ReadOnlySpan<byte> image, long offset, int length, string name)
    {
        if (offset < 0 || offset + length > image.Length)
            throw new InvalidDataException($"{name}: version requirement entry at offset {offset} is out of bounds.");
    }

    private static string ReadString(ReadOnlySpan<byte> strtab, uint offset, string name)
    {
        if (offset >= strtab.Length) throw new InvalidDataException($"{name}: string offset {offset} is out of bounds.");
        var rest = strtab[(int)offset..];
        int end = rest.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? rest : rest[..end]);
    }
}
