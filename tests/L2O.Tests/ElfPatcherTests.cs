using L2O.Runtime;
using Xunit;

namespace L2O.Tests;

public class ElfPatcherTests
{
    private static string? ShippedBridge()
    {
        string p = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return File.Exists(p) ? p : null;
    }

    [Fact]
    public void Shipped_bridge_needs_GLIBCXX_3_4_32_and_patching_weakens_only_that_need()
    {
        var path = ShippedBridge();
        if (path is null) return; // not a linux-x64 build: nothing to patch
        byte[] image = File.ReadAllBytes(path);
        var before = ElfVersionPatcher.ReadVersionNeeds(image);
        var target = before.Single(n => n.Version == "GLIBCXX_3.4.32");
        Assert.Equal("libstdc++.so.6", target.File);
        Assert.False(target.IsWeak);

        byte[] copy = (byte[])image.Clone();
        int changed = ElfVersionPatcher.MarkWeak(copy, new HashSet<string> { "GLIBCXX_3.4.32" });
        Assert.Equal(1, changed);
        var after = ElfVersionPatcher.ReadVersionNeeds(copy);
        Assert.Equal(before.Count, after.Count);
        for (int i = 0; i < before.Count; i++)
        {
            bool isTarget = before[i].Version == "GLIBCXX_3.4.32";
            Assert.Equal(isTarget, after[i].IsWeak && !before[i].IsWeak);
        }
        // Exactly one byte differs (the low byte of vna_flags).
        Assert.Equal(1, image.Zip(copy).Count(p => p.First != p.Second));
        // Idempotent.
        Assert.Equal(0, ElfVersionPatcher.MarkWeak(copy, new HashSet<string> { "GLIBCXX_3.4.32" }));
    }

    [Fact]
    public void Non_ELF_input_is_rejected_with_a_clear_message()
    {
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.ReadVersionNeeds(new byte[100], "junk.so"));
        Assert.Contains("junk.so", e.Message);
        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void Truncated_ELF_is_rejected()
    {
        var path = ShippedBridge();
        if (path is null) return;
        byte[] head = File.ReadAllBytes(path).AsSpan(0, 4096).ToArray();
        Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.ReadVersionNeeds(head, "head.so"));
    }
}
