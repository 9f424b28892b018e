using L2O.Engine;
using L2O.Learned;
using L2O.Specs;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace L2O.Tests;

/// <summary>The library's layering and the engine's coverage of each method's options.</summary>
public class ArchitectureTests
{
    /// <summary>
    /// The namespaces of src/L2O from the bottom up; each may use only those before it. Root-namespace
    /// files (the composition root <c>Catalog</c>, the drop-in <c>Optim</c>, <c>L2OException</c>) sit
    /// outside the layers.
    /// </summary>
    private static readonly string[] Layers =
        ["Runtime", "Specs", "Data", "Checkpoints", "Tasks", "Optimizers", "Learned", "Engine", "Evaluation", "Training", "Performance", "Reproduction"];

    [Fact]
    public void Every_folder_of_the_library_is_a_layer()
    {
        var root = DocSnippetTests.RepositoryFile("src/L2O");
        var folders = Directory.GetDirectories(root).Select(Path.GetFileName)
            .Where(d => Directory.GetFiles(Path.Combine(root, d!), "*.cs").Length > 0 && d is not ("bin" or "obj" or "build"));
        Assert.Empty(folders.Except(Layers));
    }

    [Fact]
    public void Namespaces_depend_only_on_the_layers_below_them()
    {
        var root = DocSnippetTests.RepositoryFile("src/L2O");
        var violations = new List<string>();
        for (int i = 0; i < Layers.Length; i++)
        {
            var allowed = Layers.Take(i + 1).ToHashSet();
            foreach (var file in Directory.GetFiles(Path.Combine(root, Layers[i]), "*.cs"))
                foreach (var used in NamespacesUsed(File.ReadAllText(file)).Where(n => !allowed.Contains(n)))
                    violations.Add($"{Layers[i]}/{Path.GetFileName(file)} uses {used}");
        }
        Assert.True(violations.Count == 0, string.Join("\n", violations.Distinct()));
    }

    /// <summary>Vector intrinsics (System.Runtime.Intrinsics, System.Numerics.Vector&lt;T&gt;) belong to the engine: the layers below it (the reference rules among them) stay plain TorchSharp and C#.</summary>
    [Fact]
    public void Only_the_engine_and_the_layers_above_it_use_vector_intrinsics()
    {
        var root = DocSnippetTests.RepositoryFile("src/L2O");
        var below = Layers.TakeWhile(l => l != "Engine");
        var violations = below.SelectMany(l => Directory.GetFiles(Path.Combine(root, l), "*.cs"))
            .Where(f => UsesIntrinsics(File.ReadAllText(f))).Select(f => Path.GetRelativePath(root, f));
        Assert.Empty(violations);
        Assert.True(UsesIntrinsics("class C { bool M() => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated; }"));
        Assert.False(UsesIntrinsics("// Vector512 in a comment\nclass C { string s = \"Intrinsics\"; }"));
    }

    private static readonly HashSet<string> IntrinsicNames = ["Intrinsics", "Vector", "Vector128", "Vector256", "Vector512"];   // Vector: System.Numerics.Vector<T>

    private static bool UsesIntrinsics(string code) =>
        CSharpSyntaxTree.ParseText(code).GetRoot().DescendantTokens().Any(t => t.IsKind(SyntaxKind.IdentifierToken) && IntrinsicNames.Contains(t.ValueText));

    [Fact]
    public void The_scan_sees_usings_and_qualified_names_but_not_comments_strings_or_members()
    {
        const string code = """
            using L2O.Engine;
            // Training.Thing in a comment
            class C { void M() { var s = "Evaluation.X"; var d = x.Data.Count; Learned.LearnedRegistry.Find("a"); L2O.Tasks.Foo(); } }
            """;
        Assert.Equal(["Engine", "Learned", "Tasks"], NamespacesUsed(code).Order());
    }

    /// <summary>Layer names a file refers to: <c>using L2O.X</c>, <c>L2O.X.…</c>, or a leading <c>X.</c> qualifier; comments and strings are skipped.</summary>
    private static HashSet<string> NamespacesUsed(string code)
    {
        var tokens = CSharpSyntaxTree.ParseText(code).GetRoot().DescendantTokens()
            .Where(t => !t.IsKind(SyntaxKind.StringLiteralToken) && !t.IsKind(SyntaxKind.InterpolatedStringTextToken)).ToList();
        var used = new HashSet<string>();
        for (int k = 0; k + 1 < tokens.Count; k++)
        {
            var t = tokens[k];
            if (!t.IsKind(SyntaxKind.IdentifierToken) || !Layers.Contains(t.ValueText) || !tokens[k + 1].IsKind(SyntaxKind.DotToken) && !tokens[k + 1].IsKind(SyntaxKind.SemicolonToken)) continue;
            bool afterL2O = k >= 2 && tokens[k - 1].IsKind(SyntaxKind.DotToken) && tokens[k - 2].ValueText == "L2O";
            bool leading = k == 0 || !tokens[k - 1].IsKind(SyntaxKind.DotToken);
            if (afterL2O || leading && tokens[k + 1].IsKind(SyntaxKind.DotToken)) used.Add(t.ValueText);
        }
        return used;
    }

    [Fact]
    public void Every_option_of_a_fused_method_is_read_by_its_fused_cell()
    {
        // An option the cell does not read would make the engine silently run another rule than the reference.
        Assert.NotEmpty(FusedCells.All);
        foreach (var cell in FusedCells.All)
        {
            var method = LearnedRegistry.Find(cell.Method);
            var options = OptionsBinder.Describe(method.OptionsType).Select(o => o.Key).Where(k => k is not ("checkpoint" or "init-seed")).ToHashSet();
            Assert.True(options.SetEquals(cell.Options),
                $"{cell.Method}: options [{string.Join(", ", options.Order())}], fused cell reads [{string.Join(", ", cell.Options.Order())}]");
        }
    }

    [Fact]
    public void The_engine_covers_exactly_the_methods_it_registers()
    {
        foreach (var method in LearnedRegistry.Methods)
        {
            using var learned = LearnedRegistry.Create(method.Name);
            var reason = Backends.Unsupported(learned, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(FusedCells.Find(method.Name) is null, reason is not null);
        }
    }
}
