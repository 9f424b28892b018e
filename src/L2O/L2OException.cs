namespace L2O;

/// <summary>
/// An error caused by input or environment (bad option, corrupt file, missing dataset) rather than a
/// bug. Its message is written for the user; the CLI prints it on one line and exits non-zero.
/// </summary>
public class L2OException : Exception
{
    public L2OException(string message) : base(message) { }
    public L2OException(string message, Exception inner) : base(message, inner) { }
}
