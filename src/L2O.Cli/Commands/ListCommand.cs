using System.CommandLine;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using Spectre.Console;

namespace L2O.Cli.Commands;

internal static class ListCommand
{
    public static Command Create()
    {
        var what = new Argument<string>("what") { Description = "tasks or optimizers", DefaultValueFactory = _ => "all" };
        what.AcceptOnlyFromAmong("tasks", "optimizers", "all");
        var c = new Command("list", "List tasks and optimizers with their options and defaults") { what };
        Cli.Examples[c] = "  l2o list tasks\n  l2o list optimizers";
        c.SetAction(p =>
        {
            string w = p.GetValue(what)!;
            if (w is "tasks" or "all")
                Print("Tasks", TaskRegistry.All.Select(t => (t.Name, t.Aliases, t.Description, OptionsBinder.Describe(t.OptionsType))));
            if (w is "optimizers" or "all")
            {
                Print("Optimizers", OptimizerRegistry.All.Select(o => (o.Name, o.Aliases, o.Description, OptionsBinder.Describe(o.OptionsType))));
            }
            AnsiConsole.MarkupLine("[grey]Give options as NAME:key=value,key=value, e.g. adam:lr=0.01 or mlp:activation=relu,layers=3.[/]");
            return Cli.Ok;
        });
        return c;
    }

    private static void Print(string title, IEnumerable<(string Name, string[] Aliases, string Description, IReadOnlyList<OptionInfo> Options)> items)
    {
        var table = new Table().RoundedBorder().Title($"[bold]{title}[/]").AddColumn("name").AddColumn("description").AddColumn("options (default)");
        foreach (var (name, aliases, description, options) in items)
        {
            string n = aliases.Length == 0 ? name : $"{name}\n[grey]{Markup.Escape(string.Join(", ", aliases))}[/]";
            string opts = string.Join("\n", options.Select(o => $"{o.Key}={Markup.Escape(o.Default.Length == 0 ? "none" : o.Default)} [grey]{Markup.Escape(o.Description)}[/]"));
            table.AddRow(n, Markup.Escape(description), opts);
        }
        AnsiConsole.Write(table);
    }
}
