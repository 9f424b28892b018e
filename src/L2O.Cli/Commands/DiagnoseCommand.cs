using System.CommandLine;
using L2O.Evaluation;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Specs;
using L2O.Tasks;
using Spectre.Console;
using TorchSharp;

namespace L2O.Cli.Commands;

/// <summary><c>l2o diagnose</c>: what a learned rule computes inside, step by step, on several tasks.</summary>
internal static class DiagnoseCommand
{
    private static readonly string[] Plotted = ["beta", "gamma", "rho_sum", "update", "g_hat", "state", "m_norm"];

    public static Command Create()
    {
        var tasks = new Option<string[]>("--task", "-t") { Description = "tasks to compare, repeatable", Required = true, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = true };
        var optimizers = new Option<string[]>("--optimizer", "-o") { Description = "optimizers, repeatable; learned ones report their intermediates (reference implementation)", Required = true, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = true };
        var steps = Cli.StepsOption();
        var runs = Cli.RunsOption(3);
        var seed = Cli.SeedOption();
        var outDir = Cli.OutOption();
        var dataDir = Cli.DataDirOption();
        var threads = Cli.ThreadsOption();
        var cmd = new Command("diagnose", "Record a rule's intermediates (HyperAdam: decay rates β, γ, weights ρ, inputs) and its update per step; writes diagnose.csv and one plot per quantity")
        {
            tasks, optimizers, steps, runs, seed, outDir, dataDir, threads,
        };
        Cli.Examples[cmd] = "  l2o diagnose -t mlp -t mlp:layers=5 -t cnn1 -o hyperadam:checkpoint=pretrained -o adam:lr=0.0283 --runs 3";
        cmd.SetAction(p =>
        {
            Cli.ApplyThreads(p.GetValue(threads));
            var settings = new EvalSettings { Steps = p.GetValue(steps), Runs = p.GetValue(runs), Seed = p.GetValue(seed), TestMetrics = false };
            settings.Validate();
            using var run = Cli.OpenOutput(p.GetValue(outDir), "diagnose", force: true);
            string folder = run.Path;
            var context = new TaskContext(torch.CPU, torch.ScalarType.Float32, p.GetValue(dataDir));
            var rows = new List<DiagnosticRow>();
            foreach (var taskSpec in p.GetValue(tasks)!)
            {
                var task = TaskRegistry.Create(taskSpec, context);
                foreach (var spec in p.GetValue(optimizers)!)
                {
                    AnsiConsole.MarkupLine($"[grey]{Markup.Escape(task.Name)}: {Markup.Escape(spec)}[/]");
                    var (rule, learned) = Build(spec);
                    using (learned)
                    {
                        Action<Action<string, torch.Tensor>?>? attach = learned is null ? null : probe => learned.Probe = probe;
                        rows.AddRange(Diagnostics.Run(task, rule, spec, settings, attach, Cli.Cancellation.Token));
                    }
                }
            }
            Diagnostics.WriteCsv(rows, Path.Combine(folder, "diagnose.csv"));
            foreach (var q in Plotted)
            {
                var series = rows.Where(r => r.Quantity == q).GroupBy(r => (r.Task, r.Optimizer))
                    .Select(g => ($"{g.Key.Task} · {g.Key.Optimizer}", g.Select(r => (double)r.Step).ToArray(), g.Select(r => q is "update" or "g_hat" or "m_norm" ? r.Rms : r.Mean).ToArray()))
                    .ToList();
                if (series.Count == 0) continue;
                bool rms = q is "update" or "g_hat" or "m_norm";
                Plots.Lines($"{q}: {(rms ? "rms over coordinates" : "mean over coordinates and candidates")}", "step", q, series, Path.Combine(folder, $"{q}.png"), logScale: rms);
            }
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(Path.Combine(folder, "diagnose.csv"))} and plots");
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>The reference rule, and the learned optimizer behind it (to attach the probe) when there is one.</summary>
    private static (IUpdateRule Rule, LearnedOptimizer? Learned) Build(string specText)
    {
        var spec = Spec.Parse(specText);
        var info = OptimizerRegistry.Find(spec.Name);
        if (!info.Learned) return (OptimizerRegistry.Create(spec), null);
        var method = LearnedRegistry.Find(spec.Name);
        var learned = LearnedRegistry.Build(method, OptionsBinder.Bind(method.OptionsType, method.Name, spec.Arguments), BuildContext.Cpu);
        return (learned.Rule, learned);
    }
}
