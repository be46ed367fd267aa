//! What reading an haproxy file yields: the whole file as read ([`Parsed`]), its frontends and
//! backends, and the `defaults` each section starts from. The reading itself is in `mod.rs`,
//! `frontend.rs` and `backend.rs`; this file only holds what they fill in.

use super::value::haproxy_ms;
use std::collections::BTreeMap;

/// A `defaults` section: what the sections after it start from.
#[derive(Debug, Default, Clone)]
pub(in crate::import) struct Defaults {
    pub(super) http: bool,
    pub(in crate::import) timeouts: BTreeMap<String, u64>,
    pub(super) retries: Option<u32>,
    pub(super) balance: Option<String>,
    pub(super) checks: Checks,
    pub(super) maxconn: Option<usize>,
}

/// The whole haproxy file as read, with what was noted along the way.
#[derive(Debug, Default)]
pub(in crate::import) struct Parsed {
    pub(in crate::import) frontends: Vec<Frontend>,
    pub(in crate::import) backends: Vec<Backend>,
    /// The last `defaults` section (what a section without its own settings falls back to).
    pub(in crate::import) defaults: Defaults,
    pub(in crate::import) maxconn: Option<usize>,
    /// Some section set `timeout client`.
    pub(in crate::import) client_timeout: bool,
    /// How haproxy's settings were carried over, for the header comment.
    pub(in crate::import) carried: Vec<String>,
    /// What has no equivalent in ssv-ha.
    pub(in crate::import) notes: Vec<String>,
}

/// An haproxy `frontend` (or the front half of a `listen`): where clients come in and which
/// backend each one goes to.
#[derive(Debug, Default)]
pub(in crate::import) struct Frontend {
    pub(in crate::import) name: String,
    /// The first `bind` address (`*` and an empty host mean every address).
    pub(in crate::import) address: Option<String>,
    pub(in crate::import) port: Option<u16>,
    /// A `bind ... ssl`: haproxy terminated TLS here with its own certificate.
    pub(in crate::import) bind_ssl: bool,
    /// The frontend routes TLS by its SNI name (`req.ssl_sni` ACLs, `req_ssl_hello_type`).
    pub(in crate::import) sni: bool,
    /// An unconditional `use_backend` (it wins over `default_backend`).
    pub(in crate::import) always: Option<String>,
    pub(in crate::import) maxconn: Option<usize>,
    /// `mode http` (its own, or the `defaults` before it).
    pub(in crate::import) http: bool,
    /// `tcp-request inspect-delay`: how long a ClientHello may take.
    pub(in crate::import) inspect_ms: Option<u64>,
    /// Serves haproxy's Prometheus exporter: becomes the admin listener.
    pub(in crate::import) prometheus: bool,
    /// ACL name -> the host names it matches (`None`: an ACL on something else than the name).
    pub(in crate::import) acls: BTreeMap<String, Option<Vec<String>>>,
    pub(in crate::import) uses: Vec<Use>,
    pub(in crate::import) default_backend: Option<String>,
}

/// A `use_backend` rule, its condition read as the host names that select it.
#[derive(Debug)]
pub(in crate::import) struct Use {
    pub(in crate::import) backend: String,
    pub(in crate::import) line: usize,
    /// Alternatives (`||`); each a list of terms that must all hold.
    pub(in crate::import) condition: Vec<Vec<Term>>,
}

/// One term of a `use_backend` condition.
#[derive(Debug)]
pub(in crate::import) enum Term {
    Acl(String),
    /// `{ req.ssl_sni -i a b }`: an anonymous ACL, already read.
    Inline(Option<Vec<String>>, String),
}

/// Health-check parameters of a server line or `default-server`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(in crate::import) struct Checks {
    pub(in crate::import) inter_ms: Option<u64>,
    pub(in crate::import) rise: Option<u32>,
    pub(in crate::import) fall: Option<u32>,
}

impl Checks {
    /// Reads `inter`, `rise` and `fall` from a line's words; one missing or unreadable stays
    /// unset (the gateway's default applies).
    pub(super) fn read(words: &[&str]) -> Checks {
        let value = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1]);
        Checks {
            inter_ms: value("inter").and_then(haproxy_ms),
            rise: value("rise").and_then(|v| v.parse().ok()),
            fall: value("fall").and_then(|v| v.parse().ok()),
        }
    }

    /// `self` with what `over` sets (a server line over `default-server`).
    pub(in crate::import) fn or(self, over: Checks) -> Checks {
        Checks {
            inter_ms: over.inter_ms.or(self.inter_ms),
            rise: over.rise.or(self.rise),
            fall: over.fall.or(self.fall),
        }
    }
}

/// An haproxy `backend` (or the back half of a `listen`): the servers traffic goes to.
#[derive(Debug, Default)]
pub(in crate::import) struct Backend {
    pub(in crate::import) name: String,
    pub(in crate::import) balance: Option<String>,
    pub(in crate::import) check_command: Option<String>,
    pub(in crate::import) default_checks: Checks,
    pub(in crate::import) servers: Vec<Server>,
    /// `timeout NAME` in ms: the `defaults` before it, then its own.
    pub(in crate::import) timeouts: BTreeMap<String, u64>,
    pub(in crate::import) retries: Option<u32>,
}

/// A `server` line of a backend.
#[derive(Debug, Clone)]
pub(in crate::import) struct Server {
    pub(in crate::import) name: String,
    pub(in crate::import) host: String,
    pub(in crate::import) port: u16,
    pub(in crate::import) backup: bool,
    /// `ssl` on the server line: haproxy spoke TLS to it.
    pub(in crate::import) ssl: bool,
    pub(in crate::import) checks: Checks,
}
