using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace L2O.Cluster;

/// <summary>
/// TLS for a cluster (<c>--tls-cert FILE</c>): every silo and learner presents the same certificate
/// (a PKCS#12 file with its private key) and accepts only peers that present it too, so the file is
/// the cluster's shared credential: traffic is encrypted, and a process without it cannot join or
/// send work. Self-signed certificates are fine (the peer is pinned by thumbprint, not by a CA).
/// </summary>
public static class ClusterTls
{
    /// <summary>Loads the certificate and checks it has a private key.</summary>
    /// <param name="password">The file's password; null: none, or the L2O_TLS_PASSWORD environment variable when set.</param>
    /// <exception cref="L2OException">The file is missing or unreadable, the password is wrong, or there is no private key.</exception>
    public static X509Certificate2 Load(string path, string? password = null)
    {
        if (!File.Exists(path)) throw new L2OException($"--tls-cert '{path}' does not exist");
        password ??= Environment.GetEnvironmentVariable("L2O_TLS_PASSWORD");
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(path, password);
        }
        catch (CryptographicException e)
        {
            throw new L2OException($"--tls-cert '{path}': not a readable PKCS#12 (.pfx) file, or a wrong password (L2O_TLS_PASSWORD) ({e.Message.ReplaceLineEndings(" ")})");
        }
        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new L2OException($"--tls-cert '{path}' holds no private key: export the certificate with its key (PKCS#12)");
        }
        return certificate;
    }

    /// <summary>Both sides present <paramref name="certificate"/> and require the peer's to be the same one.</summary>
    internal static void Configure(TlsOptions options, X509Certificate2 certificate)
    {
        options.LocalCertificate = certificate;
        options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        string thumbprint = certificate.Thumbprint;
        // Chain errors are expected for a self-signed shared certificate; identity is the pinned thumbprint.
        options.RemoteCertificateValidation = (remote, _, _) =>
            remote is not null && string.Equals(remote.Thumbprint, thumbprint, StringComparison.OrdinalIgnoreCase);
    }
}
