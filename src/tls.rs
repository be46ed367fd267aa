//! PEM loading shared by config validation, the listeners, the upstream CA lists and the simulated
//! nodes. Every failure says which file and what is wrong with it, never panics.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Reads every certificate of a PEM file; an empty or unreadable file, or a certificate that does
/// not parse as X.509, is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for (i, cert) in iter.enumerate() {
        let cert = cert.map_err(|e| format!("{}: certificate #{}: {e}", path.display(), i + 1))?;
        x509_parser::parse_x509_certificate(&cert).map_err(|e| {
            format!(
                "{}: certificate #{} is not valid X.509: {e}",
                path.display(),
                i + 1
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable private key: {e}", path.display()))
}

/// The crypto provider used everywhere in the process (rustls with *ring*).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration (TLS 1.2 and 1.3 only) for a certificate chain and key, checking that
/// the key matches the certificate.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Loads a listener's certificate chain and key, checking that they belong together, into a
/// resolver for Pingora's TLS settings (which would panic on a bad file).
pub fn cert_resolver_from_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::sign::SingleCertAndKey>, String> {
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let certified = rustls::sign::CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "{} with {}: not a usable certificate and key pair: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(certified.into()))
}
