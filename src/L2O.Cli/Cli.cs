using System.CommandLine;
using System.Runtime.InteropServices;
using L2O.Evaluation;
using L2O.Optimizers;
using L2O.Runtime;
using L2O.Tasks;
using Spectre.Console;
using TorchSharp;

namespace L2O.Cli;

/// <summary>Shared plumbing of the commands: options, error handling, devices, output folders.</summary>
internal static class Cli
{
    public const int Ok = 0;
    public const int Failure = 1;
    public const int InternalError = 70;
    /// <summary>Stopped by SIGINT/SIGTERM (128 + SIGINT, the shell's convention), after saving what can be resumed.</summary>
    public const int Interrupted = 130;

    /// <summary>Usage examples printed after a command's help.</summary>
    public static readonly Dictionary<Command, string> Examples = [];

    /// <summary>
    /// Cancelled by the first Ctrl-C / SIGTERM: long commands stop at the next safe point (meta-training
    /// after the current iteration, with a checkpoint). A second signal ends the process at once.
    /// </summary>
    public static CancellationTokenSource Cancellation { get; private set; } = new();

    private static void OnSignal(PosixSignalContext context)
    {
        if (Cancellation.IsCancellationRequested) return;   // second signal: default handling ends the process
        context.Cancel = true;
        Console.Error.WriteLine("stopping at the next safe point (signal again to abort)");
        Cancellation.Cancel();
    }

    /// <summary>Parses and runs; user errors become one line on stderr and a non-zero exit code.</summary>
    public static int Invoke(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (Cancellation.IsCancellationRequested) Cancellation = new CancellationTokenSource();
        // Signals are handled here rather than by System.CommandLine, whose handler gives an action only
        // a short grace period and can race with an action that completes synchronously.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        try
        {
            int code = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
            if (parse.Action is System.CommandLine.Help.HelpAction && Examples.TryGetValue(parse.CommandResult.Command, out var examples))
                Console.WriteLine($"Examples:\n{examples}\n");
            return code;
        }
        catch (Exception e)
        {
            return Report(e);
        }
    }

    public static int Report(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } or System.Reflection.TargetInvocationException && e.InnerException is not null)
            e = e.InnerException!;
        if (e is L2OException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        if (e is OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return Interrupted;
        }
        if (Runtime.FileErrors.IsFileError(e))
        {
            // A file operation no command wrapped: still one line, with .NET's message (it names the path).
            Console.Error.WriteLine($"error: {e.Message.ReplaceLineEndings(" ")}");
            return Failure;
        }
        Console.Error.WriteLine($"internal error: {e.GetType().Name}: {e.Message}");
        if (Environment.GetEnvironmentVariable("L2O_DEBUG") == "1") Console.Error.WriteLine(e);
        else Console.Error.WriteLine("(set L2O_DEBUG=1 for the stack trace)");
        return InternalError;
    }

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda or cuda:N (CUDA needs a CUDA libtorch, see docs/gpu.md)",
        DefaultValueFactory = _ => "cpu",
    };

    public static Option<string?> DataDirOption() => new("--data-dir") { Description = "folder with dataset files (IDX or CIFAR-10 binary); default: embedded MNIST, L2O's data folder, system datasets" };
    public static Option<int> StepsOption(int value = 100) => new("--steps") { Description = "optimization steps per run", DefaultValueFactory = _ => value };
    public static Option<int> RunsOption(int value = 100) => new("--runs") { Description = "independent seeded runs", DefaultValueFactory = _ => value };
    public static Option<long> SeedOption() => new("--seed") { Description = "base seed; run r uses seed + r", DefaultValueFactory = _ => 0L };
    public static Option<string?> OutOption() => new("--out") { Description = "output folder (default: runs/<command>-<time>)" };
    public static Option<int?> ThreadsOption() => new("--threads") { Description = "CPU threads for libtorch and the fused engine (default: all cores)" };

    public static Option<string> BackendOption() => new("--backend")
    {
        Description = "what runs the learned optimizers: auto (the fused CPU engine on the CPU where it runs the method and its options, else TorchSharp), engine, or reference (TorchSharp, the specification)",
        DefaultValueFactory = _ => "auto",
    };

    public static Optimizers.Backend ParseBackend(string text) => Engine.Backends.Parse(text.Trim());

    public static torch.Device ParseDevice(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return torch.CPU;
        if (t == "cuda" || t.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!torch.cuda.is_available())
                throw new L2OException($"device '{text}' requested but CUDA is not available (this build uses libtorch-cpu; see docs/gpu.md for the GPU bundle)");
            return torch.device(t);
        }
        throw new L2OException($"unknown device '{text}'; valid: cpu, cuda, cuda:N");
    }

    public static void ApplyThreads(int? threads)
    {
        if (threads is int n)
        {
            if (n < 1) throw new L2OException($"--threads must be >= 1 (got {n})");
            torch.set_num_threads(n);
            Engine.EngineOptions.Default = Engine.EngineOptions.Default with { Threads = n };
        }
    }

    public static string OutputFolder(string? requested, string command) =>
        requested ?? Path.Combine("runs", $"{command}-{DateTime.Now:yyyyMMdd-HHmmss}");

    public static Option<bool> ForceOption() => new("--force") { Description = "write into an --out folder that already holds another run's outputs, replacing them" };

    /// <summary>
    /// Takes the output folder before any compute: locks it for this process (one writer per folder),
    /// checks that it can be written, and refuses one that holds another run's outputs unless <paramref name="force"/>.
    /// </summary>
    public static RunFolder OpenOutput(string? requested, string command, bool force)
    {
        string folder = OutputFolder(requested, command);
        var run = RunFolder.Acquire(folder, CommandLine());
        if (!force && RunFolder.ExistingOutput(folder) is string existing)
        {
            run.Dispose();
            throw new L2OException($"{folder} already holds the outputs of another run ({existing}); choose another --out or pass --force to replace them");
        }
        return run;
    }

    public static string CommandLine() => "l2o " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).Select(a => a.Contains(' ') ? $"\"{a}\"" : a));

    /// <summary>Runs <paramref name="work"/> with a progress bar per optimizer (plain lines when output is redirected).</summary>
    public static T WithProgress<T>(string title, IReadOnlyList<string> items, int stepsPerItem, Func<Func<int, IProgress<EvalProgress>>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(title)}[/]");
            return work(i => new Progress<EvalProgress>(_ => { }));
        }
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var tasks = items.Select(name => ctx.AddTask(Markup.Escape(name), maxValue: stepsPerItem)).ToArray();
                result = work(i => new SyncProgress<EvalProgress>(p => tasks[i].Value = (double)p.Run * p.Steps + p.Step));
            });
        return result;
    }

    public static IUpdateRule BuildOptimizer(string spec, BuildContext context, string? checkpoint)
    {
        var parsed = Specs.Spec.Parse(spec);
        var info = OptimizerRegistry.Find(parsed.Name);
        if (info.Learned && checkpoint is not null && !parsed.Arguments.ContainsKey("checkpoint"))
            parsed = parsed with { Arguments = new Dictionary<string, string>(parsed.Arguments) { ["checkpoint"] = checkpoint } };
        return OptimizerRegistry.Create(parsed, context);
    }
}
