using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using L2O.Benchmarks;

// dotnet run -c Release --project benchmarks/L2O.Benchmarks -- --filter '*'
//   UpdateRuleBenchmarks: one update of each rule on the base MLP's 15 910 parameters (no grad);
//   MetaIterationBenchmarks: one meta-iteration (100 steps as 5 unrolls of 20) per learned optimizer,
//   with glibc malloc tuning on and off (separate processes: mallopt is process-wide).
L2O.Runtime.L2ORuntime.Initialize();
var config = DefaultConfig.Instance.WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromTypes([typeof(UpdateRuleBenchmarks), typeof(MetaIterationBenchmarks)]).Run(args, config);
