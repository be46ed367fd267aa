//! `ssv-ha import-haproxy`: turns an haproxy configuration of the original SSV HA setup's shape into
//! an equivalent ssv-ha configuration, with a comment wherever something could not be carried over.
//!
//! Understood: `defaults` timeouts and `retries`; frontends' `bind`, SNI or Host `acl`s, `use_backend`
//! and `default_backend`; backends' `balance`, `external-check command` (`check-ecsync.sh` means an
//! execution pool, `check-ccsync.sh` a consensus pool), `inter`, and `server NAME ADDR [backup]`. Two
//! execution backends with the same server names (one reached by HTTPS, one by WSS, as the original
//! setup had) become one pool whose backends have a `url` and a `ws_url`: one health verdict per node.
//!
//! Three steps, one file each: `parse` reads the haproxy file into its sections and directives,
//! `rules` decides what each becomes in ssv-ha's model (and what is refused or noted, and why),
//! `render` writes the YAML.

mod duration;
mod error;
mod parse;
mod render;
mod rules;
mod tls_files;

pub use error::ImportError;
pub use tls_files::TlsFiles;

/// Converts haproxy configuration text into ssv-ha YAML.
pub fn import(text: &str, tls: Option<&TlsFiles>) -> Result<String, ImportError> {
    let parsed = parse::parse(text)?;
    let plan = rules::plan(&parsed, tls.is_some())?;
    Ok(render::render(&plan, tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Imports `text` and validates the result; returns the YAML and the config.
    pub(super) fn imported(
        text: &str,
        tls: Option<&TlsFiles>,
    ) -> (String, crate::config::model::Config) {
        let yaml = import(text, tls).unwrap_or_else(|e| panic!("{e}"));
        let config =
            crate::config::parse(&yaml, Path::new(".")).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
        (yaml, config)
    }

    #[test]
    fn nothing_to_import_is_an_error() {
        assert!(import("global\n    maxconn 10\n", None).is_err());
        let err = import("backend b\n    server a\n", None).unwrap_err();
        assert!(matches!(err, ImportError::Unusable(_)), "{err:?}");
    }
}
