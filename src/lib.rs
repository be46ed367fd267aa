//! ssv-ha: a highly available gateway for Ethereum execution and consensus nodes, on Pingora.
//!
//! The data's path through the crate: [`config`] (file -> validated model) -> [`upstream`]
//! (backends, pools, selection) and [`health`] (probes, verdicts, hysteresis) -> [`proxy`] (the
//! `ProxyHttp`) -> [`admin`] (metrics, status). [`server`] assembles them; [`sim`] holds the
//! simulated nodes that the tests, the demo and the benchmarks share.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod health;
pub mod import;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod sim;
pub mod tls;
pub mod upstream;
