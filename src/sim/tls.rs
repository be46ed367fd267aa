//! A throw-away certificate authority for tests and the demo: made at run time, never stored.

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, signed by a [`TestCa`].
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate as PEM into `dir` and returns its path.
    pub fn write_cert(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, self.cert_pem())?;
        Ok(path)
    }

    /// A server certificate for the given names (DNS names or IP literals).
    pub fn leaf(&self, names: &[&str]) -> Result<Leaf, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

impl Leaf {
    /// The certificate, DER-encoded (what a TLS client sees as the server's certificate).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }

    /// A TLS server configuration serving this certificate over HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        crate::tls::server_config(vec![self.cert_der.clone()], key, &[b"http/1.1"]).map(Arc::new)
    }
}
