using L2O.Checkpoints;
using L2O.Learned;
using L2O.Optimizers;
using L2O.Cli;
using L2O.Data;
using Xunit;

namespace L2O.Tests;

/// <summary>Runs the l2o command in-process and captures what it writes to standard error.</summary>
internal static class CliRunner
{
    public static (int Code, string Err) Run(string[] args)
    {
        var oldErr = Console.Error;
        var err = new StringWriter();
        Console.SetError(err);
        try
        {
            return (CliApp.Run(args), err.ToString());
        }
        finally
        {
            Console.SetError(oldErr);
        }
    }
}

/// <summary>The l2o command run in-process: exit codes, files and one-line errors.</summary>
public class CliTests
{
    private static (int Code, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void Reproduce_plan_times_the_work_and_creates_nothing()
    {
        using var dir = new TempDir();
        string folder = dir.File("repro");
        var (code, err) = Run("reproduce", "time", "--plan", "--quick", "--threads", "1", "--out", folder);
        Assert.True(code == 0, err);
        Assert.False(Directory.Exists(folder));
    }

    [Fact]
    public void Eval_writes_json_csv_and_png()
    {
        using var dir = new TempDir();
        var (code, err) = Run("eval", "-t", "rosenbrock", "-o", "adam:lr=0.05", "-o", "mng", "--steps", "5", "--runs", "2", "--trajectory", "--out", dir.Path);
        Assert.True(code == 0, err);
        foreach (var f in new[] { "report.json", "curves.csv", "runs.csv", "loss.png", "trajectory.png" })
            Assert.True(File.Exists(dir.File(f)), f);
    }

    [Fact]
    public void Unknown_optimizer_is_one_line_with_the_valid_names_and_exit_1()
    {
        var (code, err) = Run("eval", "-t", "rosenbrock", "-o", "adamw", "--runs", "1", "--steps", "1");
        Assert.Equal(1, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("error: unknown optimizer 'adamw'; valid: sgd", err);
    }

    [Fact]
    public void Corrupt_idx_file_is_one_line_and_exit_1()
    {
        using var dir = new TempDir();
        string bad = dir.File("train-images-idx3-ubyte");
        File.WriteAllBytes(bad, Idx.Encode([3, 28, 28], new byte[100]));
        var (code, err) = Run("data", "check", bad);
        Assert.Equal(1, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(bad, err);
        Assert.Contains("truncated", err);
    }

    [Fact]
    public void Eval_on_a_corrupt_data_dir_names_the_file()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("train-images-idx3-ubyte"), [1, 2, 3, 4, 5]);
        File.WriteAllBytes(dir.File("train-labels-idx1-ubyte"), Idx.Encode([1], [1]));
        File.WriteAllBytes(dir.File("t10k-images-idx3-ubyte"), Idx.Encode([1, 28, 28], new byte[784]));
        File.WriteAllBytes(dir.File("t10k-labels-idx1-ubyte"), Idx.Encode([1], [1]));
        var (code, err) = Run("eval", "-t", "mlp:dataset=fashion-mnist", "-o", "sgd", "--data-dir", dir.Path, "--runs", "1", "--steps", "1");
        Assert.Equal(1, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("train-images-idx3-ubyte", err);
    }

    [Fact]
    public void Bad_option_value_and_missing_required_option_fail()
    {
        var (code, err) = Run("eval", "-t", "rosenbrock", "-o", "adam:lr=-3");
        Assert.Equal(1, code);
        Assert.Contains("'lr' must be", err);
        Assert.NotEqual(0, Run("eval", "-o", "adam").Code);
        Assert.NotEqual(0, Run("eval", "-t", "rosenbrock", "-o", "sgd", "--device", "tpu").Code);
    }

    [Fact]
    public void List_and_help_succeed()
    {
        Assert.Equal(0, Run("list").Code);
        Assert.Equal(0, Run("eval", "--help").Code);
        Assert.Equal(0, Run("data", "list").Code);
    }

    [Fact]
    public void List_of_a_method_prints_its_definition_and_refuses_other_names()
    {
        Assert.All(LearnedRegistry.Methods, m => Assert.Equal(0, Run("list", m.Name).Code));
        var (code, err) = Run("list", "adam");
        Assert.Equal(1, code);
        Assert.Contains("'adam' is hand-designed", err);
        (code, err) = Run("list", "adamw");
        Assert.Equal(1, code);
        Assert.Contains("unknown optimizer 'adamw'", err);
    }
}

public class CliLearnedTests
{
    private static (int Code, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void Meta_train_resume_reports_only_best_checkpoints_that_exist()
    {
        // Regression: a resumed run whose best-train/best-validation files were removed (e.g. a snapshot that kept only
        // last.safetensors) crashed in the summary; the remembered best scores have no file to point to.
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        var (code, err) = Run("meta-train", "-o", "rnnprop:hidden=4", "-n", "2", "--out", run, "-t", "quadratic", "--steps", "10", "--unroll", "5",
            "--validate-every", "2", "--checkpoint-every", "1", "--validation-runs", "2", "--backend", "reference");
        Assert.True(code == 0, err);
        File.Delete(Path.Combine(run, "best-train.safetensors"));
        File.Delete(Path.Combine(run, "best-validation.safetensors"));
        var (code2, err2) = Run("meta-train", "--resume", run, "-n", "3", "--backend", "reference");
        Assert.True(code2 == 0, err2);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "log.csv")).Length);
        Assert.True(new FileInfo(Path.Combine(run, "training.png")).Length > 0);

        string png = Path.Combine(dir.Path, "curves.png");
        var (curves, curvesErr) = Run("curves", run, run, "--out", png);
        Assert.True(curves == 0, curvesErr);
        Assert.True(new FileInfo(png).Length > 0);
        var (bad, badErr) = Run("curves", dir.Path);
        Assert.Equal(1, bad);
        Assert.Contains("no log.csv", badErr);
    }

    [Fact]
    public void Meta_train_resume_and_evaluate_the_checkpoint()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        var common = new[] { "-t", "quadratic", "--steps", "10", "--unroll", "5", "--validate-every", "2", "--checkpoint-every", "2", "--validation-runs", "2" };
        var (code, err) = Run(["meta-train", "-o", "rnnprop:hidden=4", "-n", "2", "--out", run, .. common]);
        Assert.True(code == 0, err);
        // Resumed on the other backend (the first two iterations ran on the fused engine).
        var (code2, err2) = Run("meta-train", "--resume", run, "-n", "4", "--backend", "reference");
        Assert.True(code2 == 0, err2);
        Assert.Equal(5, File.ReadAllLines(Path.Combine(run, "log.csv")).Length);   // header + 4 iterations
        var (again, errAgain) = Run(["meta-train", "-o", "rnnprop:hidden=4", "-n", "2", "--out", run, .. common]);
        Assert.Equal(1, again);
        Assert.Contains("--resume", errAgain);

        string ckpt = Path.Combine(run, "best-validation.safetensors");
        Assert.Equal(0, Run("checkpoint", ckpt).Code);
        var (evalCode, evalErr) = Run("eval", "-t", "quadratic", "-o", "adam:lr=0.1", "-o", "rnnprop", "--checkpoint", ckpt, "--runs", "2", "--steps", "10", "--out", Path.Combine(dir.Path, "eval"));
        Assert.True(evalCode == 0, evalErr);
        string json = File.ReadAllText(Path.Combine(dir.Path, "eval", "report.json"));
        Assert.Contains("rnnprop(best-validation)", json);
    }

    [Fact]
    public void Checkpoint_reads_a_shipped_file_by_its_path_under_pretrained_from_any_folder()
    {
        // The library embeds pretrained/*.safetensors; the test's working folder has no pretrained/ of its own.
        Assert.False(File.Exists("pretrained/hyperadam-mix.safetensors"));
        var (code, err) = Run("checkpoint", "pretrained/hyperadam-mix.safetensors");
        Assert.True(code == 0, err);
        var (missing, missingErr) = Run("checkpoint", "pretrained/nothing.safetensors");
        Assert.Equal(1, missing);
        Assert.Contains("does not exist (the shipped ones: pretrained/hyperadam.safetensors, pretrained/hyperadam-mix.safetensors", missingErr);
        // A keyword that one method ships resolves without the method; 'pretrained' names three and asks for the path.
        var (byKeyword, byKeywordErr) = Run("checkpoint", "pretrained-mix");
        Assert.True(byKeyword == 0, byKeywordErr);
        var (ambiguous, ambiguousErr) = Run("checkpoint", "pretrained");
        Assert.Equal(1, ambiguous);
        Assert.Contains("'pretrained' names a shipped checkpoint of hyperadam, rnnprop, dmoptimizer; give its path, e.g. pretrained/hyperadam.safetensors", ambiguousErr);

        // The shipped pretrained-mix carries field-clip=10 (set after training); a further derived copy keeps it and both sets.
        using var dir = new TempDir();
        string copy = dir.File("mix-floor.safetensors");
        var (derive, deriveErr) = Run("checkpoint", "pretrained/hyperadam-mix.safetensors", "--set", "gamma-min=0.99", "--out", copy);
        Assert.True(derive == 0, deriveErr);
        using var derived = LearnedRegistry.Load(copy);
        var o = Assert.IsType<HyperAdamOptions>(derived.Options);
        Assert.Equal(10, o.FieldClip);
        Assert.Equal(0.99, o.GammaMin);
        var contents = SafeTensors.Load(copy);
        foreach (var (_, t) in contents.Tensors) t.Dispose();
        Assert.Equal("field-clip=10,gamma-min=0.99", contents.Metadata["derived_set"]);
        Assert.Equal("pretrained/training/hyperadam-rms-mix/best-validation.safetensors", contents.Metadata["derived_from"]);
    }

    [Fact]
    public void Checkpoint_set_writes_a_copy_with_the_option_changed_and_the_same_meta_parameters()
    {
        using var dir = new TempDir();
        string source = dir.File("h.safetensors"), copy = dir.File("h-floor.safetensors");
        using (var h = LearnedRegistry.Create("hyperadam:j=3,input-norm=rms,coupled=true,init-seed=4"))
            h.Save(source, new Dictionary<string, string> { ["iteration"] = "17" });
        var (code, err) = Run("checkpoint", source, "--set", "gamma-min=0.99", "--out", copy);
        Assert.True(code == 0, err);
        using var original = LearnedRegistry.Load(source);
        using var derived = LearnedRegistry.Load(copy);
        var o = Assert.IsType<HyperAdamOptions>(derived.Options);
        Assert.Equal(0.99, o.GammaMin);
        Assert.True(o.CoupledDecays);
        Assert.Equal(3, o.Candidates);
        foreach (var (a, b) in original.Parameters.Zip(derived.Parameters))
        {
            Assert.Equal(a.Name, b.Name);
            Assert.True(a.Parameter.allclose(b.Parameter, rtol: 0, atol: 0), a.Name);
        }
        var contents = SafeTensors.Load(copy);
        foreach (var (_, t) in contents.Tensors) t.Dispose();
        var meta = contents.Metadata;
        Assert.Equal("17", meta["iteration"]);   // training metadata kept
        Assert.Equal(source, meta["derived_from"]);
        Assert.Equal("gamma-min=0.99", meta["derived_set"]);
        // The copy's own value is what it holds; asking for another is a conflict, as with any checkpoint option.
        var e = Assert.Throws<L2OException>(() => OptimizerRegistry.Create($"hyperadam:checkpoint={copy},gamma-min=0.9"));
        Assert.Contains("conflicts with the checkpoint's 'gamma-min=0.99'", e.Message);
    }

    [Fact]
    public void Meta_train_with_a_meta_batch_on_workers_resumes_with_other_workers_and_keeps_the_batch()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        var common = new[] { "-t", "quadratic", "--steps", "8", "--unroll", "4", "--validate-every", "2", "--validation-runs", "2" };
        var (code, err) = Run(["meta-train", "-o", "rnnprop:hidden=4", "-n", "2", "--out", run, "--meta-batch", "2", "--workers", "2", .. common]);
        Assert.True(code == 0, err);
        var (changed, changedErr) = Run("meta-train", "--resume", run, "-n", "3", "--meta-batch", "3");
        Assert.Equal(1, changed);
        Assert.Contains("--meta-batch cannot change on resume (the run has 2)", changedErr);
        Assert.Contains("--workers", changedErr);   // listed among what may change
        var (resumed, resumedErr) = Run("meta-train", "--resume", run, "-n", "3", "--workers", "1", "--meta-batch", "2");
        Assert.True(resumed == 0, resumedErr);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "log.csv")).Length);

        var (zero, zeroErr) = Run(["meta-train", "-o", "rnnprop:hidden=4", "-n", "1", "--out", Path.Combine(dir.Path, "zero"), "--meta-batch", "0", .. common]);
        Assert.Equal(1, zero);
        Assert.Equal("error: meta-batch must be >= 1 (got 0)", zeroErr.Trim());
        var (many, manyErr) = Run(["meta-train", "-o", "rnnprop:hidden=4", "-n", "1", "--out", Path.Combine(dir.Path, "many"), "--meta-batch", "2", "--workers", "3", .. common]);
        Assert.Equal(1, many);
        Assert.Single(manyErr.Trim().Split('\n'));
        Assert.Contains("workers (3) must not exceed meta-batch (2)", manyErr);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "zero")));   // refused before the folder is made
    }

    [Fact]
    public void Backend_option_is_validated()
    {
        var (code, err) = Run("eval", "-t", "quadratic", "-o", "hyperadam", "--backend", "gpu", "--runs", "1", "--steps", "2");
        Assert.Equal(1, code);
        Assert.Contains("unknown backend 'gpu'; valid: auto, engine, reference", err);
        var (code2, err2) = Run("eval", "-t", "quadratic", "-o", "hyperadam", "--backend", "engine", "--device", "cuda", "--runs", "1", "--steps", "2");
        Assert.Equal(1, code2);
        Assert.Single(err2.Trim().Split('\n'));
    }

    [Fact]
    public void Meta_train_rejects_hand_designed_optimizers_and_bad_enums()
    {
        var (code, err) = Run("meta-train", "-o", "adam", "-n", "1");
        Assert.Equal(1, code);
        Assert.Contains("unknown learned optimizer 'adam'", err);
        var (code2, err2) = Run("meta-train", "-o", "rnnprop", "--meta-loss", "median", "-n", "1");
        Assert.Equal(1, code2);
        Assert.Contains("mean, last, mean-log", err2);
    }
}
