// The C# example in a few lines of F#: pretrained HyperAdam on a small CNN under StepLR, saved and resumed.
//   dotnet fsi examples/fashion-mnist.fsx   (after `dotnet pack -o artifacts/packages`, see .ci/packages;
//   examples/nuget.config names that folder as a package source)
#r "nuget: L2O.NET, 0.1.0"
#r "nuget: libtorch-cpu-linux-x64, 2.10.0"

// F# scripts get no module initializer from the package: register L2O's loader fix before touching torch.
L2O.Runtime.L2ORuntime.Initialize()
open TorchSharp

let data = try L2O.Data.DatasetCatalog.Load "fashion-mnist" with :? L2O.L2OException -> L2O.Data.DatasetCatalog.Load "mnist"
let cnn () =
    torch.manual_seed 1L |> ignore
    torch.nn.Sequential(torch.nn.Conv2d(1L, 8L, 3L), torch.nn.ReLU(), torch.nn.MaxPool2d(2L), torch.nn.Conv2d(8L, 16L, 3L), torch.nn.ReLU(), torch.nn.MaxPool2d(2L),
                        torch.nn.Flatten(), torch.nn.Linear(400L, 10L))
let train (model: torch.nn.Module<torch.Tensor, torch.Tensor>) (opt: L2O.Optimizers.RuleOptimizer) (schedule: torch.optim.lr_scheduler.LRScheduler) from until =
    for k in from .. until - 1 do
        use scope = torch.NewDisposeScope()
        use g = new torch.Generator(uint64 (1000 + k))
        let idx = torch.randint(int64 data.Train.Count, [| 128L |], generator = g)
        opt.zero_grad()
        let loss = torch.nn.functional.cross_entropy(model.forward(data.Train.Images.index_select(0L, idx)), data.Train.Labels.index_select(0L, idx))
        loss.backward()
        opt.step() |> ignore
        schedule.step()
        if k % 20 = 0 then printfn "step %d: loss %.4f, lr %g" k (loss.ToDouble()) (Seq.head opt.ParamGroups).LearningRate

// 50 steps, then save the weights and the optimizer (moments, LSTM state, step count, learning rates).
let model = cnn ()
let opt = L2O.Optim.HyperAdam(model.parameters(), checkpoint = "pretrained-mix")   // the mixture checkpoint (trains CNNs); lr = 1: the learned step as meta-trained
train model opt (torch.optim.lr_scheduler.StepLR(opt, 50, 0.5)) 0 50
let dir = System.IO.Directory.CreateTempSubdirectory("l2o-fsx").FullName
model.save(System.IO.Path.Combine(dir, "model.bin")) |> ignore
opt.save_state_dict(System.IO.Path.Combine(dir, "optimizer.bin"))

// A fresh model and optimizer continue bitwise where the first stopped.
let resumed = cnn ()
resumed.load(System.IO.Path.Combine(dir, "model.bin")) |> ignore
let opt2 = L2O.Optim.HyperAdam(resumed.parameters(), checkpoint = "pretrained-mix")
let schedule2 = torch.optim.lr_scheduler.StepLR(opt2, 50, 0.5)
for _ in 1 .. 50 do schedule2.step()
opt2.load_state_dict(System.IO.Path.Combine(dir, "optimizer.bin"))
train resumed opt2 schedule2 50 100
System.IO.Directory.Delete(dir, true)
