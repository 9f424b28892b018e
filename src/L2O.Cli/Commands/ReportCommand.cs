using System.CommandLine;
using Spectre.Console;

namespace L2O.Cli.Commands;

internal static class ReportCommand
{
    public static Command Create()
    {
        var folders = new Argument<string[]>("folders") { Description = "run folders of eval, sweep, demo or meta-train", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "the HTML file to write", DefaultValueFactory = _ => "report.html" };
        var cmd = new Command("report", "Render run folders into one self-contained HTML page: tables, loss and meta-training curves (log/linear), command, versions and machine; several folders side by side")
        {
            folders, output,
        };
        Cli.Examples[cmd] = "  l2o report runs/demo-20261202-101500 --out demo.html\n  l2o report runs/eval-a runs/eval-b runs/hyperadam --out compare.html";
        cmd.SetAction(p =>
        {
            string path = p.GetValue(output)!;
            HtmlReport.Write(p.GetValue(folders)!, path);
            Render.Written([path]);
            return Cli.Ok;
        });
        return cmd;
    }
}
