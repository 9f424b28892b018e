using L2O.Cli;

return CliApp.Run(args);
