//! What the gateway knows about JSON-RPC messages, as pure functions: how an object's keys are
//! matched ([`Key`], [`same_key`]: the rule of Go's JSON decoder, which geth and Erigon use), and
//! reading a message once without building a tree ([`Message`], [`Object`]: each field a borrowed
//! span of the message's own bytes), so that the gateway can put its ids into the bytes and pass
//! the node's bytes on with only an id changed ([`splice`]).
//!
//! It sits below `proxy` and imports nothing of the crate above `config`: the method policy and
//! the seamless WebSocket session both read messages through it, so they cannot disagree on
//! which key is the `method` or the `id`.

pub mod cacheable;
mod key;
mod message;
pub mod policy;
pub mod reads;
pub mod scan;

pub use key::{same_key, Key};
pub use message::{array, json_string, set_removed, span, splice, string, Message, Object, Shape};
