using System.CommandLine;
using L2O.Cli.Commands;
using L2O.Runtime;
using Spectre.Console;

namespace L2O.Cli;

/// <summary>The <c>l2o</c> command tree; <see cref="Run"/> is the whole program (tests call it in-process).</summary>
public static class CliApp
{
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("l2o: learned optimizers (HyperAdam, RNNprop, DMoptimizer, Multiscale Adam, ...) on TorchSharp.\n" +
                                   "Run 'l2o demo' for a one-minute tour on the embedded MNIST digits.");
        root.HelpName = "l2o";   // usage lines name the installed command, not the assembly (L2O.Cli)
        root.Add(EvalCommand.Create());
        root.Add(SweepCommand.Create());
        root.Add(DataCommand.Create());
        root.Add(ListCommand.Create());
        root.Add(DemoCommand.Create());
        root.Add(InfoCommand.Create());
        root.Add(BenchCommand.Create());
        root.Add(DiagnoseCommand.Create());
        root.Add(ReproduceCommand.Create());
        root.Add(ReportCommand.Create());
        root.Add(CurvesCommand.Create());
        root.Add(ClusterCommand.Create());
        foreach (var c in LearnedCommands.Create()) root.Add(c);
        return root;
    }

    public static int Run(string[] args)
    {
        L2ORuntime.Initialize();
        // Piped output (CI logs, files) gets wide lines instead of Spectre's 80-column default.
        if (Console.IsOutputRedirected && AnsiConsole.Profile.Width < 160) AnsiConsole.Profile.Width = 160;
        return Cli.Invoke(BuildRoot(), args);
    }
}
