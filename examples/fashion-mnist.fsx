// The C# example in a few lines of F#: pretrained HyperAdam on a small CNN under StepLR, saved and resumed.
//   dotnet fsi examples/fashion-mnist.fsx   (after `dotnet pack -o artifacts/packages`, see .ci/packages;
//   examples/nuget.config names that folder as a package source)
#r "nuget: L2O.NET, 0.1.0"
#r "nuget: libtorch-cpu-linux-x64, 2.10.0"

// F# scripts get no module initializer from the package: register L2O's loader fix before touching torch.
L2O.Runtime.L2ORuntime.Initialize()
open TorchSharp

let data = try L2O.Data.DatasetCatalog.Load "fashion-mnist" with :? L2O.L2OException -> L2O.Data.DatasetCatalog.Load "mnist"
torch.manual_seed 1L |> ignore
let model =
    torch.nn.Sequential(torch.nn.Conv2d(1L, 8L, 3L), torch.nn.ReLU(), torch.nn.MaxPool2d(2L), torch.nn.Conv2d(8L, 16L, 3L), torch.nn.ReLU(), torch.nn.MaxPool2d(2L),
                  torch.nn.Flatten(), torch.nn.Linear(400L, 10L))
let opt = L2O.Optim.HyperAdam(model.parameters())
let schedule = torch.optim.lr_scheduler.StepLR(opt, 50, 0.5)
let train from until =
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
train 0 50
let file = System.IO.Path.GetTempFileName()
opt.save_state_dict file                 // moments, LSTM state, step count and learning rates
opt.load_state_dict file                 // (into a fresh optimizer after a restart: it continues bitwise)
train 50 100
System.IO.File.Delete file
