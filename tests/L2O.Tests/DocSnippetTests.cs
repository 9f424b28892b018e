using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace L2O.Tests;

/// <summary>Every C# snippet of the user-facing docs compiles against the library (top-level programs).</summary>
public partial class DocSnippetTests
{
    public static TheoryData<string, int> Snippets()
    {
        var data = new TheoryData<string, int>();
        foreach (var doc in new[] { "README.md", "docs/optimizers.md" })
            for (int i = 0; i < Blocks(doc).Count; i++) data.Add(doc, i);
        return data;
    }

    [Theory]
    [MemberData(nameof(Snippets))]
    public void Snippet_compiles(string doc, int index)
    {
        string code = Blocks(doc)[index];
        var compilation = CSharpCompilation.Create($"snippet{index}",
            [CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest))],
            References(),
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var sink = new MemoryStream();
        var result = compilation.Emit(sink);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        Assert.True(result.Success, $"{doc} snippet {index}:\n{string.Join("\n", errors)}\n---\n{code}");
    }

    [Fact]
    public void The_optimizer_docs_have_snippets() => Assert.True(Blocks("docs/optimizers.md").Count >= 4);

    internal static string RepositoryFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "L2O.slnx"))) return Path.Combine(dir.FullName, relative);
        throw new FileNotFoundException("repository root (L2O.slnx) not found above the test folder");
    }

    [GeneratedRegex("```csharp\\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    private static List<string> Blocks(string doc) =>
        CSharpBlock().Matches(File.ReadAllText(RepositoryFile(doc))).Select(m => m.Groups["code"].Value).ToList();

    private static List<MetadataReference> References()
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Append(typeof(L2O.Optim).Assembly.Location)
            .Append(typeof(TorchSharp.torch).Assembly.Location);
        return paths.Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToList();
    }
}
