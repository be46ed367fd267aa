//! The certificate and key an import is given for the listener that replaces haproxy's TLS
//! pass-through.

/// Certificate and key for the TLS listener that replaces haproxy's TLS pass-through.
#[derive(Debug, Default, Clone)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}
