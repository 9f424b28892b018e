using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using L2O.Benchmarks;

// dotnet run -c Release --project benchmarks/L2O.Benchmarks -- --filter '*'
//   UpdateRuleBenchmarks: one update of each rule on 15 910 and 54 670 parameters (no grad), learned
//   rules on the TorchSharp reference and on the fused engine;
//   MetaIterationBenchmarks: one meta-iteration (100 steps as 5 unrolls of 20) per learned optimizer
//   and backend, with glibc malloc tuning on and off (separate processes: mallopt is process-wide).
// `l2o bench` measures reference against engine in one process with peak memory (docs/performance.md).
L2O.Runtime.L2ORuntime.Initialize();
var config = DefaultConfig.Instance.WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromTypes([typeof(UpdateRuleBenchmarks), typeof(MetaIterationBenchmarks)]).Run(args, config);
