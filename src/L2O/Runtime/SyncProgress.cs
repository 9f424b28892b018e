namespace L2O.Runtime;

/// <summary>IProgress that reports on the calling thread (System.Progress posts to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
