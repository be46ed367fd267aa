//! How an object key names a field: the way the nodes read it, so that the gateway never takes a
//! different field for the `method` or the `id` than the node does.
//!
//! Go's JSON decoder (geth, Erigon, and the other Go nodes) matches a key to a field without
//! regard to case: since Go 1.21 it compares the two with every character folded to the smallest
//! of its simple case-folding orbit (ASCII letters to upper case). For the gateway's field names
//! (all ASCII) that means ASCII letters in any case, plus the three characters outside ASCII that
//! fold to an ASCII letter: `ı` (dotless i, U+0131) is `I`, `ſ` (long s, U+017F) is `S` and `K`
//! (the Kelvin sign, U+212A) is `K`, so `"ıd"` is the id, `"paramſ"` the params and
//! `"bloc\u212aHash"` a log's `blockHash`.
//! Keys are compared after JSON unescaping (serde_json hands them over decoded). When a key comes
//! twice (in any case) the decoder stores each in turn: the last one wins.

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// Whether the object key `key` names the field `name` (an ASCII name) for Go's decoder.
pub fn same_key(key: &str, name: &str) -> bool {
    let mut key = key.chars();
    for wanted in name.bytes() {
        let Some(c) = key.next() else {
            return false;
        };
        let upper = match c {
            'ı' => b'I',
            'ſ' => b'S',
            '\u{212A}' => b'K',
            c if c.is_ascii() => c.to_ascii_uppercase() as u8,
            _ => return false,
        };
        if upper != wanted.to_ascii_uppercase() {
            return false;
        }
    }
    key.next().is_none()
}

/// A top-level key of a JSON-RPC message, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Method,
    Id,
    Params,
    Result,
    Error,
    Other,
}

impl Key {
    /// The field an object key names ([`same_key`]).
    pub fn of(key: &str) -> Key {
        // Every name below is at least two characters; most keys are short.
        [
            ("method", Key::Method),
            ("id", Key::Id),
            ("params", Key::Params),
            ("result", Key::Result),
            ("error", Key::Error),
        ]
        .into_iter()
        .find(|(name, _)| same_key(key, name))
        .map_or(Key::Other, |(_, k)| k)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(Key::of(key))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_gos_decoder_matches_them() {
        for (key, field) in [
            ("method", Key::Method),
            ("METHOD", Key::Method),
            ("Method", Key::Method),
            ("id", Key::Id),
            ("ID", Key::Id),
            ("iD", Key::Id),
            // Their upper case is an ASCII letter.
            ("ıd", Key::Id),
            ("paramſ", Key::Params),
            ("reſult", Key::Result),
            ("ERROR", Key::Error),
        ] {
            assert_eq!(Key::of(key), field, "{key}");
        }
        for other in ["ids", "i", "", "methods", "İd", "id\u{0}", "jsonrpc", "íd"] {
            assert_eq!(Key::of(other), Key::Other, "{other}");
        }
        assert!(same_key("SubſcriptIon", "subscription"));
        assert!(same_key("blocknumber", "blockNumber"));
        assert!(!same_key("blockNumbe", "blockNumber"));
        // The Kelvin sign folds to K; the Angstrom sign to å, no ASCII letter.
        assert!(same_key("\u{212A}", "k"));
        assert!(!same_key("\u{212B}", "a"));
    }

    /// Go's decoder folds each character to the smallest of its case-folding orbit
    /// (`encoding/json/fold.go`, `foldRune`): the Kelvin sign's orbit is K, k and itself, so
    /// `"toBloc\u212a"` is `toBlock` to a node (the answer cache reads that key).
    #[test]
    fn the_kelvin_sign_is_a_k_as_go_folds_it() {
        assert!(same_key("toBloc\u{212A}", "toBlock"));
        assert!(same_key("bloc\u{212A}Hash", "blockHash"));
        let filter = crate::jsonrpc::Object::read(
            r#"{"fromBlock":"0x1","toBlock":"0x2","toBloc\u212a":"latest"}"#,
        )
        .unwrap();
        assert_eq!(filter.get("toBlock").unwrap().get(), r#""latest""#);
    }

    #[test]
    fn escaped_keys_are_what_they_spell() {
        let key: Key = serde_json::from_str(r#""\u0069\u0044""#).unwrap();
        assert_eq!(key, Key::Id);
        let key: Key = serde_json::from_str(r#""\u0131d""#).unwrap();
        assert_eq!(key, Key::Id);
    }
}
