//! Reading an haproxy file into what its sections say: frontends (binds, ACLs, `use_backend`
//! rules), backends (servers, checks, timeouts) and the `defaults` each section starts from. What
//! a directive means for ssv-ha is decided in [`super::rules`]; here a directive is only read, or
//! noted when ssv-ha has nothing it could become. A frontend's directives are read in
//! `frontend.rs`, a backend's in `backend.rs`.

mod backend;
mod frontend;
mod parsed;
mod value;

pub(super) use parsed::{Backend, Checks, Frontend, Parsed, Server, Term, Use};

use super::error::ImportError;
use backend::backend;
use frontend::frontend;
use parsed::Defaults;
use value::{number, time};

/// Words that start a section wherever they stand on the line (haproxy does not care about
/// indentation).
const SECTIONS: [&str; 16] = [
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "crt-store",
    "traces",
    "log-forward",
];

/// The section the lines being read belong to.
enum Section {
    Other,
    Global,
    Defaults,
    Frontend(usize),
    Backend(usize),
    /// A `listen` section: its frontend and its backend.
    Listen(usize, usize),
}

/// Reads haproxy configuration text, line by line: a section word opens a section, any other
/// line is a directive of the section it stands in.
pub(super) fn parse(text: &str) -> Result<Parsed, ImportError> {
    let mut p = Parsed::default();
    let mut section = Section::Other;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"'))
            .filter(|w| !w.is_empty())
            .collect();
        let Some(&keyword) = words.first() else {
            continue;
        };
        if SECTIONS.contains(&keyword) {
            section = open_section(&mut p, keyword, &words, line_no)?;
        } else {
            directive(&mut p, &section, &words, line_no)?;
        }
    }
    Ok(p)
}

/// Starts the section `keyword` opens; a frontend or backend starts from the `defaults` before it.
fn open_section(
    p: &mut Parsed,
    keyword: &str,
    words: &[&str],
    line: usize,
) -> Result<Section, ImportError> {
    Ok(match keyword {
        "global" => Section::Global,
        "defaults" => {
            // A new `defaults` section starts from haproxy's defaults.
            p.defaults = Defaults::default();
            Section::Defaults
        }
        "frontend" | "listen" | "backend" => {
            let name = words.get(1).ok_or_else(|| ImportError::Syntax {
                line,
                message: format!("a {keyword} needs a name"),
            })?;
            proxy_section(p, keyword, name)
        }
        "resolvers" => {
            p.carried.push(format!(
                "resolvers {}: backend names are resolved again before every health check, by the system's resolver",
                words.get(1).unwrap_or(&"")
            ));
            Section::Other
        }
        other => {
            p.notes.push(format!("section `{other}` has no equivalent"));
            Section::Other
        }
    })
}

/// Adds the frontend, backend or both (`listen`) a section named `name` declares.
fn proxy_section(p: &mut Parsed, keyword: &str, name: &str) -> Section {
    let new_backend = |p: &Parsed| Backend {
        name: name.to_string(),
        timeouts: p.defaults.timeouts.clone(),
        retries: p.defaults.retries,
        balance: p.defaults.balance.clone(),
        default_checks: p.defaults.checks,
        ..Backend::default()
    };
    let new_frontend = |p: &Parsed| Frontend {
        name: name.to_string(),
        http: p.defaults.http,
        maxconn: p.defaults.maxconn,
        ..Frontend::default()
    };
    match keyword {
        "backend" => {
            p.backends.push(new_backend(p));
            Section::Backend(p.backends.len() - 1)
        }
        "frontend" => {
            p.frontends.push(new_frontend(p));
            Section::Frontend(p.frontends.len() - 1)
        }
        _ => {
            // A frontend and a backend in one: it routes to itself by default.
            p.backends.push(new_backend(p));
            let mut frontend = new_frontend(p);
            frontend.default_backend = Some(name.to_string());
            p.frontends.push(frontend);
            Section::Listen(p.frontends.len() - 1, p.backends.len() - 1)
        }
    }
}

/// Reads one directive line of `section`; in a `listen` section, the backend's directives go to
/// its backend, the rest to its frontend.
fn directive(
    p: &mut Parsed,
    section: &Section,
    words: &[&str],
    line: usize,
) -> Result<(), ImportError> {
    match *section {
        Section::Global => global(p, words, line),
        Section::Defaults => defaults(p, words, line),
        Section::Frontend(f) => frontend(p, f, words, line),
        Section::Backend(b) => backend(p, b, words, line),
        Section::Listen(f, b) => match words[0] {
            "server" | "default-server" | "balance" | "external-check" | "retries" => {
                backend(p, b, words, line)
            }
            "timeout" if words.get(1) != Some(&"client") => backend(p, b, words, line),
            "option" if words.get(1) == Some(&"external-check") => Ok(()),
            _ => frontend(p, f, words, line),
        },
        Section::Other => Ok(()),
    }
}

/// Reads a directive of the `global` section: only `maxconn` and the stats socket carry over.
fn global(p: &mut Parsed, words: &[&str], line: usize) -> Result<(), ImportError> {
    match words {
        ["maxconn", n, ..] => p.maxconn = Some(number(Some(n), "maxconn", line)?),
        // Built in or meaningless here: logs go to stdout, checks are not scripts, TLS is 1.2+
        // (rustls), the system's CA store is trusted.
        ["log", ..]
        | ["external-check", ..]
        | ["insecure-fork-wanted", ..]
        | ["ssl-default-server-options", ..]
        | ["ssl-default-bind-options", ..]
        | ["ca-base", ..]
        | ["daemon", ..]
        | ["pidfile", ..]
        | ["chroot", ..] => {}
        ["user", ..] | ["group", ..] => {}
        ["stats", "socket", ..] => p.carried.push(
            "stats socket: an admin listener's /status (with `expose: all`) and SIGHUP for reloads"
                .to_string(),
        ),
        _ => p
            .notes
            .push(format!("global `{}` has no equivalent", words.join(" "))),
    }
    Ok(())
}

/// Reads a directive of a `defaults` section into what the sections after it start from.
fn defaults(p: &mut Parsed, words: &[&str], line: usize) -> Result<(), ImportError> {
    match words {
        ["mode", mode, ..] => p.defaults.http = *mode == "http",
        ["timeout", which, value, ..] => {
            let ms = time(Some(value), &format!("timeout {which}"), line)?;
            // 0 is haproxy's "no timeout": ssv-ha keeps its default.
            if ms == 0 {
                p.defaults.timeouts.remove(*which);
            } else {
                p.defaults.timeouts.insert(which.to_string(), ms);
            }
        }
        ["retries", n, ..] => p.defaults.retries = Some(number(Some(n), "retries", line)?),
        ["balance", how, ..] => p.defaults.balance = Some(how.to_string()),
        ["default-server", rest @ ..] => {
            p.defaults.checks = p.defaults.checks.or(Checks::read(rest))
        }
        ["maxconn", n, ..] => p.defaults.maxconn = Some(number(Some(n), "maxconn", line)?),
        ["log", ..] | ["option", ..] => {}
        _ => p
            .notes
            .push(format!("defaults `{}` has no equivalent", words.join(" "))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::model::{ListenerMode, Policy};
    use crate::import::tests::imported;
    use crate::import::{import, TlsFiles};

    #[test]
    fn a_listen_section_and_the_defaults_before_it() {
        let text = "\
defaults
  mode http
  balance roundrobin
  default-server inter 3s rise 3 fall 4
  maxconn 500
  timeout server 0
listen api
  bind 127.0.0.1:8545
  server a 10.0.0.1:8545 check
  server b 10.0.0.2:8545 check ssl
  server old 10.0.0.3:8545 disabled
";
        let (yaml, c) = imported(text, None);
        assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:8545");
        assert_eq!(c.listeners[0].mode, ListenerMode::Http);
        assert_eq!(c.listeners[0].max_requests, 500);
        let pool = &c.pools[0];
        assert_eq!(pool.policy, Policy::RoundRobin);
        assert_eq!(
            (
                pool.health.interval.as_secs(),
                pool.health.rise,
                pool.health.fall
            ),
            (3, 3, 4)
        );
        let urls: Vec<&str> = pool.backends.iter().map(|b| b.http.url.as_str()).collect();
        assert_eq!(urls, ["http://10.0.0.1:8545/", "https://10.0.0.2:8545/"]);
        assert!(yaml.contains("server old is disabled: left out"), "{yaml}");
        assert_eq!(
            c.routes[0].host, None,
            "the listen section routes to itself"
        );
    }

    #[test]
    fn odd_but_valid_values_are_read() {
        let text = "\
frontend web
  mode http
  bind \"[::]:8443\" ssl crt /etc/haproxy/site.pem
  default_backend nodes
backend nodes
  server n \"10.0.0.1:8545\"
";
        let files = TlsFiles {
            cert: "conf/tls/example.crt".into(),
            key: "conf/tls/example.key".into(),
        };
        let yaml = import(text, Some(&files)).unwrap();
        assert!(yaml.contains("address: \"[::]:8443\""), "{yaml}");
        assert!(yaml.contains("tls: { cert: conf/tls/example.crt"), "{yaml}");
        let yaml = import(text, None).unwrap();
        assert!(
            yaml.contains("run\n    # import-haproxy with --cert"),
            "{yaml}"
        );
    }
}
