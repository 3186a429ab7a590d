//! The JSON document an event is decoded from, borrowed from the message
//! body: a string without escapes is not copied, an object is the list of
//! its members. Decoding every delivery through a `serde_json::Value`
//! copied each key and string and built a tree map per object, only for
//! `decode` to read a few fields and copy them again.
//!
//! An object answers `get` as a `serde_json::Map` would, so both decode
//! the same documents the same way: a key given twice means its last
//! value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

/// A JSON value whose strings borrow from the parsed bytes where they can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Members<'a>),
}

/// An object's members in document order, repeats included.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Members<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    /// Parses `bytes` as one JSON document, with serde_json's syntax and
    /// errors.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The same document, borrowing from an already parsed `Value`.
    pub(crate) fn of_value(value: &'a Value) -> Json<'a> {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::of_value).collect()),
            Value::Object(map) => Json::Object(Members(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::of_value(v)))
                    .collect(),
            )),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Members<'a>> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    /// An integer that fits an `i64`, as `Value::as_i64` answers.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.clone().into_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// As JSON text, the way a `Value` prints (for error messages).
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_value().fmt(f)
    }
}

impl<'a> Members<'a> {
    /// The value of `key`: the last one when it is given twice.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Each key as given, in document order (a repeated one more than
    /// once).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    /// Like `Value`: a float that is not finite is `null`.
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Members(members)))
    }
}

/// A member's name, borrowed when it has no escapes (`Cow<str>`'s own
/// `Deserialize` always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way the two readings could part: repeats, escapes, numbers
    /// of every kind, nesting, and the empty containers.
    const DOCUMENTS: [&str; 8] = [
        r#"{"b": 1, "a": [true, false, null], "b": 2}"#,
        r#"{"k\u00e9y": "v\nalue", "plain": "text", "": ""}"#,
        r#"[0, -1, 18446744073709551615, -9223372036854775808, 1.5, 1e300, -0.0]"#,
        r#"{"o": {"p": {"q": [{"r": "s"}, []]}}, "e": {}}"#,
        r#""just a string""#,
        r#"12"#,
        r#"null"#,
        r#"{"z": 1, "y": 2, "x": {"z": 3, "z": 4}}"#,
    ];

    #[test]
    fn reads_every_document_as_a_value_does() {
        for text in DOCUMENTS {
            let value: Value = serde_json::from_str(text).unwrap();
            let json = Json::parse(text.as_bytes()).unwrap();
            assert_eq!(json.to_value(), value, "{text}");
            assert_eq!(Json::of_value(&value).to_value(), value, "{text}");
            assert_eq!(json.to_string(), value.to_string(), "{text}");
        }
    }

    #[test]
    fn an_object_answers_as_a_map_does() {
        let text = r#"{"b": 1, "a": 2, "b": 3, "c": null}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let json = Json::parse(text.as_bytes()).unwrap();
        let (members, map) = (json.as_object().unwrap(), value.as_object().unwrap());
        for key in ["a", "b", "c", "d"] {
            assert_eq!(
                members.get(key).map(Json::to_value).as_ref(),
                map.get(key),
                "{key}"
            );
        }
        let mut keys: Vec<&str> = members.keys().collect();
        assert_eq!(keys, ["b", "a", "b", "c"], "as given");
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys, map.keys().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let json = Json::parse(br#"{"plain": "text", "esc": "a\"b"}"#).unwrap();
        let members = json.as_object().unwrap();
        assert!(matches!(
            members.get("plain"),
            Some(Json::String(Cow::Borrowed("text")))
        ));
        assert!(matches!(members.get("esc"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
        assert!(members.0.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
    }

    #[test]
    fn refuses_what_a_value_refuses_with_the_same_error() {
        for text in ["{", r#"{"a" 1}"#, "[1,]", "tru", r#"{"a": 1} x"#, "1e400"] {
            let value = serde_json::from_str::<Value>(text).map(|_| ());
            let json = Json::parse(text.as_bytes()).map(|_| ());
            assert_eq!(
                json.map_err(|e| e.to_string()),
                value.map_err(|e| e.to_string()),
                "{text}"
            );
        }
    }
}
