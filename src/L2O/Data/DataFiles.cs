namespace L2O.Data;

/// <summary>File access that reports failures as <see cref="DataFormatException"/> naming the file.</summary>
internal static class DataFiles
{
    public static byte[] ReadAllBytes(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, $"cannot be read: {e.Message}");
        }
    }
}
