//! Reading a JSON-RPC message once, without a tree: the fields are borrowed spans of the message's
//! own text (`serde_json`'s [`RawValue`]), so a field can be replaced in the bytes ([`splice`])
//! and everything else passes on as the sender wrote it, keys in its order.
//!
//! A whole message is checked as JSON by serde_json (the grammar the nodes accept); what the
//! gateway does not use is skipped, never stored.

use super::key::{same_key, Key};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// The top-level fields of a JSON-RPC object the gateway uses, each the raw text of the last key
/// that names it ([`Key`]), as the node's decoder keeps it. A `method` of `null` is skipped, as
/// Go's decoder leaves a string field alone on `null`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Message<'a> {
    pub method: Option<&'a RawValue>,
    pub id: Option<&'a RawValue>,
    pub params: Option<&'a RawValue>,
    pub result: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
}

/// A message as read: one object, a batch (each element's text), or other JSON.
#[derive(Debug)]
pub enum Shape<'a> {
    Object(Message<'a>),
    Array(Vec<&'a RawValue>),
    Other,
}

impl<'a> Message<'a> {
    /// Reads a whole message (it must be one JSON value, nothing after it).
    pub fn read(text: &'a str) -> serde_json::Result<Shape<'a>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let shape = match text.trim_start().as_bytes().first() {
            Some(b'{') => Shape::Object(de.deserialize_map(MessageVisitor)?),
            Some(b'[') => Shape::Array(Vec::<&RawValue>::deserialize(&mut de)?),
            _ => {
                IgnoredAny::deserialize(&mut de)?;
                Shape::Other
            }
        };
        de.end()?;
        Ok(shape)
    }

    /// One element of a batch: `None` when it is not an object.
    pub fn element(raw: &'a RawValue) -> Option<Message<'a>> {
        match Message::read(raw.get()) {
            Ok(Shape::Object(message)) => Some(message),
            _ => None,
        }
    }

    /// The method's name: `None` without one, `Some(None)` when it is not a string.
    pub fn method_name(&self) -> Option<Option<Cow<'a, str>>> {
        self.method.map(string)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut message = Message::default();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<&RawValue>()?;
            let field = match key {
                Key::Method if value.get() == "null" => continue,
                Key::Method => &mut message.method,
                Key::Id => &mut message.id,
                Key::Params => &mut message.params,
                Key::Result => &mut message.result,
                Key::Error => &mut message.error,
                Key::Other => continue,
            };
            *field = Some(value);
        }
        Ok(message)
    }
}

/// Any JSON object's top-level entries, each value as its raw text, in the order written.
#[derive(Debug, Default)]
pub struct Object<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// `None` when `text` is not one JSON object.
    pub fn read(text: &'a str) -> Option<Object<'a>> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let object = de.deserialize_map(ObjectVisitor).ok()?;
        de.end().ok()?;
        Some(object)
    }

    /// The value of the last key that names `name` ([`same_key`]).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(key, _)| same_key(key, name))
            .map(|(_, value)| *value)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Text>()? {
            entries.push((key.0, map.next_value::<&RawValue>()?));
        }
        Ok(Object { entries })
    }
}

/// A JSON string, borrowed unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A raw value as a string (unescaped); `None` when it is not a string.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Text>(raw.get()).ok().map(|t| t.0)
}

/// A raw value as an array of raw elements; `None` when it is not an array.
pub fn array(raw: &RawValue) -> Option<Vec<&RawValue>> {
    serde_json::from_str(raw.get()).ok()
}

/// A string as JSON text (quoted, escaped).
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Where `inner` (a value borrowed from `outer`) lies in `outer`, in bytes.
pub fn span(outer: &str, inner: &RawValue) -> Option<Range<usize>> {
    let (outer_at, inner_at) = (outer.as_ptr() as usize, inner.get().as_ptr() as usize);
    let start = inner_at.checked_sub(outer_at)?;
    let end = start.checked_add(inner.get().len())?;
    (end <= outer.len()).then_some(start..end)
}

/// `outer` with each span replaced by its bytes (spans of values borrowed from `outer`; ones that
/// are not, or that overlap an earlier one, are left out).
pub fn splice(outer: &str, edits: &[(&RawValue, &[u8])]) -> Vec<u8> {
    let mut edits: Vec<(Range<usize>, &[u8])> = edits
        .iter()
        .filter_map(|(value, bytes)| Some((span(outer, value)?, *bytes)))
        .collect();
    edits.sort_by_key(|(range, _)| range.start);
    let grow: usize = edits.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(outer.len() + grow);
    let mut at = 0;
    for (range, bytes) in edits {
        if range.start < at {
            continue;
        }
        out.extend_from_slice(&outer.as_bytes()[at..range.start]);
        out.extend_from_slice(bytes);
        at = range.end;
    }
    out.extend_from_slice(&outer.as_bytes()[at..]);
    out
}

/// A log object with `"removed":true`: the value of its (last) `removed` key replaced, or the
/// key put first when it has none; every other byte as it was. `None` when it is not an object.
pub fn set_removed(log: &str) -> Option<Vec<u8>> {
    let object = Object::read(log)?;
    if let Some(removed) = object.get("removed") {
        return Some(splice(log, &[(removed, b"true")]));
    }
    let open = log.find('{')? + 1;
    let mut out = Vec::with_capacity(log.len() + 16);
    out.extend_from_slice(&log.as_bytes()[..open]);
    out.extend_from_slice(br#""removed":true"#);
    if !object.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(&log.as_bytes()[open..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Message<'_> {
        match Message::read(text).unwrap() {
            Shape::Object(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_are_spans_of_the_message_and_the_last_key_in_any_case_wins() {
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","ID":[2, 3],"params":[]}"#;
        let m = object(text);
        assert_eq!(m.id.unwrap().get(), "[2, 3]");
        assert_eq!(&text[span(text, m.id.unwrap()).unwrap()], "[2, 3]");
        assert_eq!(m.method_name().unwrap().unwrap(), "eth_chainId");
        assert_eq!(m.params.unwrap().get(), "[]");
        assert!(m.result.is_none() && m.error.is_none());
        // A later method key of another case is the one the node runs.
        let m = object(r#"{"method":"eth_chainId","Method":"eth_subscribe"}"#);
        assert_eq!(m.method_name().unwrap().unwrap(), "eth_subscribe");
        // A null method leaves the earlier one, as Go's decoder does with a string field.
        let m = object(r#"{"method":"eth_subscribe","METHOD":null}"#);
        assert_eq!(m.method_name().unwrap().unwrap(), "eth_subscribe");
        // Escapes in keys and names are what they spell.
        let m = object(r#"{"\u006dethod":"eth_\u0073ubscribe","\u0131d":7}"#);
        assert_eq!(m.method_name().unwrap().unwrap(), "eth_subscribe");
        assert_eq!(m.id.unwrap().get(), "7");
        let m = object(r#"{"method":5}"#);
        assert_eq!(m.method_name(), Some(None));
        assert!(object("{}").method_name().is_none());
    }

    #[test]
    fn shapes_and_bad_json() {
        assert!(matches!(Message::read(" [1, {}] "), Ok(Shape::Array(v)) if v.len() == 2));
        assert!(matches!(Message::read("5"), Ok(Shape::Other)));
        for bad in ["", "{", r#"{"id":1} {}"#, "[1,]", r#"{"a":"\x"}"#] {
            assert!(Message::read(bad).is_err(), "{bad}");
        }
        let element: &RawValue = serde_json::from_str(r#"{"id":"x"}"#).unwrap();
        assert_eq!(
            Message::element(element).unwrap().id.unwrap().get(),
            r#""x""#
        );
        let element: &RawValue = serde_json::from_str("[1]").unwrap();
        assert!(Message::element(element).is_none());
    }

    #[test]
    fn splicing_replaces_the_spans_and_keeps_every_other_byte() {
        let text = r#"{ "id" : "client" , "x":{"id":9}, "method":"m"}"#;
        let m = object(text);
        let out = splice(
            text,
            &[(m.method.unwrap(), b"\"n\""), (m.id.unwrap(), b"17")],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "id" : 17 , "x":{"id":9}, "method":"n"}"#
        );
        // A value from elsewhere is not spliced.
        let other: &RawValue = serde_json::from_str("1").unwrap();
        assert_eq!(splice(text, &[(other, b"2")]), text.as_bytes());
    }

    #[test]
    fn objects_give_any_key_and_strings_are_unescaped() {
        let text = r#"{"subscription":"0xa","Subscription":"0x\u0062","result":{"n":1}}"#;
        let o = Object::read(text).unwrap();
        assert_eq!(string(o.get("subscription").unwrap()).unwrap(), "0xb");
        assert_eq!(o.get("result").unwrap().get(), r#"{"n":1}"#);
        assert!(o.get("missing").is_none());
        assert!(Object::read("[1]").is_none() && Object::read("{").is_none());
        assert!(string(o.get("result").unwrap()).is_none());
        assert_eq!(json_string("a\"b"), r#""a\"b""#);
        let params: &RawValue = serde_json::from_str(r#"["0x1", 2]"#).unwrap();
        assert_eq!(array(params).unwrap()[1].get(), "2");
    }

    #[test]
    fn removed_is_set_in_the_bytes() {
        let log = r#"{"address":"0x1","removed":false,"logIndex":"0x0"}"#;
        assert_eq!(
            set_removed(log).unwrap(),
            br#"{"address":"0x1","removed":true,"logIndex":"0x0"}"#
        );
        assert_eq!(
            set_removed(r#" {"a":1}"#).unwrap(),
            br#" {"removed":true,"a":1}"#
        );
        assert_eq!(set_removed("{}").unwrap(), br#"{"removed":true}"#);
        assert!(set_removed("[]").is_none());
    }
}
