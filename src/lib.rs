//! ssv-ha: a highly available gateway for Ethereum execution and consensus nodes, on Pingora.
//!
//! Layers, each importing only those before it: [`config`] (file -> validated model) <
//! [`jsonrpc`] (reading a JSON-RPC message once, the key rule the nodes use) <
//! [`health`] (probes, verdicts, hysteresis, and the Pingora `HealthCheck` implementors) <
//! [`upstream`] (backends, pools, selection, the monitor that drives the checks) < [`limits`]
//! (what a listener may hold) < [`passthrough`] (the L4 TLS listener) and [`session`]
//! (long-lived sessions: the WebSocket frame relay, and what a session needs of the HTTP path
//! that opened it) < [`proxy`] (the `ProxyHttp`). [`metrics`] and [`tls`] are leaves below all.
//! [`admin`] serves status and metrics; [`server`] assembles everything at start-up and on
//! reload; [`sim`] holds the simulated nodes that the tests, the demo and the benchmarks share.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod health;
pub mod import;
pub mod jsonrpc;
pub mod limits;
pub mod metrics;
pub mod passthrough;
pub mod proxy;
pub mod server;
pub mod session;
pub mod sim;
pub mod tls;
pub mod upstream;
