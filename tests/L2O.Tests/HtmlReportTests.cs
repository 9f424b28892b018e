using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using L2O.Cli;
using Xunit;

namespace L2O.Tests;

/// <summary>Headless Chromium (Debian's <c>chromium</c>; <c>.ci/run</c> installs it), or null.</summary>
internal static class Browser
{
    public static string? Path { get; } = new[] { Environment.GetEnvironmentVariable("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome" }
        .FirstOrDefault(p => !string.IsNullOrEmpty(p) && File.Exists(p));

    /// <summary>Runs the browser headless on <paramref name="page"/> with <paramref name="args"/>; returns (stdout, stderr).</summary>
    public static (string Out, string Err) Run(string page, params string[] args)
    {
        using var profile = new TempDir();
        var psi = new ProcessStartInfo(Path!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", $"--user-data-dir={profile.Path}", "--enable-logging=stderr", "--v=0" }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(new Uri(page).AbsoluteUri);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("chromium did not finish in 120 s"); }
        return (output, err.Result);
    }
}

/// <summary>A fact that is skipped, saying why, where no Chromium is installed.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Browser.Path is null) Skip = "chromium is not installed (apt-get install -y chromium; .ci/run installs it): the HTML report was not checked in a browser";
    }
}

public class HtmlReportTests
{
    /// <summary>A demo folder (1 run) and a meta-training folder (the shipped HyperAdam's log).</summary>
    private static (string Demo, string Meta) Folders(TempDir dir)
    {
        string demo = dir.File("demo"), meta = dir.File("hyperadam");
        var (code, err) = CliRunner.Run(["demo", "--runs", "1", "--out", demo]);
        Assert.True(code == 0, err);
        Directory.CreateDirectory(meta);
        File.Copy(DocSnippetTests.RepositoryFile("pretrained/logs/hyperadam.csv"), System.IO.Path.Combine(meta, "log.csv"));
        return (demo, meta);
    }

    [Fact]
    public void A_folder_that_is_not_a_run_is_a_clear_error()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<L2OException>(() => HtmlReport.Render([dir.Path]));
        Assert.Contains("neither report.json", e.Message);
    }

    [ChromiumFact]
    public void The_report_of_a_demo_and_a_meta_training_renders_in_chromium_with_the_runs_numbers()
    {
        using var dir = new TempDir();
        var (demo, meta) = Folders(dir);
        string page = dir.File("report.html");
        var (code, err) = CliRunner.Run(["report", demo, meta, "--out", page]);
        Assert.True(code == 0, err);

        var (dom, log) = Browser.Run(page, "--dump-dom");
        Assert.Contains("data-rendered=\"2\"", dom);                  // both plots drawn
        Assert.DoesNotContain("data-errors", dom);                    // no script error
        Assert.DoesNotContain(log.Split('\n'), l => l.Contains(":CONSOLE(", StringComparison.Ordinal) && l.Contains("ERROR", StringComparison.Ordinal));
        Assert.Equal(2, dom.Split("<svg").Length - 1);

        // The tables hold the run's numbers, as report.json has them (the CLI's 4-decimal format).
        using var json = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(demo, "report.json")));
        foreach (var r in json.RootElement.GetProperty("results").EnumerateArray())
        {
            var final = r.GetProperty("final_loss");
            string F(string k) => final.GetProperty(k).GetDouble().ToString("0.0000", CultureInfo.InvariantCulture);
            Assert.Contains($"<td>{System.Net.WebUtility.HtmlEncode(r.GetProperty("optimizer").GetString()!)}</td><td>{F("mean")} ± {F("std")}</td><td>{F("median")}</td>", dom);
        }
        string last = File.ReadLines(System.IO.Path.Combine(meta, "log.csv")).Last().Split(',')[0];
        Assert.Contains($"<td>{last}</td>", dom);   // meta-training: the last iteration in the log

        // The screenshot stays as an artefact of the test run.
        string shots = DocSnippetTests.RepositoryFile("TestResults/html-report");
        Directory.CreateDirectory(shots);
        string png = System.IO.Path.Combine(shots, "report.png");
        File.Delete(png);
        Browser.Run(page, "--window-size=1400,1000", $"--screenshot={png}");
        Assert.True(File.Exists(png) && new FileInfo(png).Length > 10_000, "no screenshot written");
        File.Copy(page, System.IO.Path.Combine(shots, "report.html"), overwrite: true);
    }
}
