//! JSON that refuses what parsers disagree on: duplicate member names (RFC 7519 §4 allows "reject"; serde_json's
//! `Value` silently keeps the last one) and deep nesting.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of objects and arrays accepted in a header or payload.
pub(crate) const MAX_DEPTH: usize = 16;

/// Why strict parsing failed.
#[derive(Debug)]
pub(crate) enum StrictJsonError {
    /// A member name was repeated in one object.
    Duplicate(String),
    /// Any other problem, as the parser describes it.
    Invalid(String),
}

/// Why [`parse_members`] stopped: the JSON itself, or the member handler's verdict.
#[derive(Debug)]
pub(crate) enum MemberError<E> {
    /// The document is not one strict JSON object.
    Json(StrictJsonError),
    /// The handler refused a member.
    Member(E),
}

/// Parses `bytes` as one JSON object and hands each top-level member to `on_member`, in order. Nested values are
/// checked for duplicate names and depth; detecting a repeated top-level name is the handler's job (it knows
/// which members it keeps). Names come borrowed from the input when they contain no escapes, so typed fields cost
/// no allocation for their names.
pub(crate) fn parse_members<E>(
    bytes: &[u8],
    on_member: impl FnMut(Cow<'_, str>, Value) -> Result<(), E>,
) -> Result<(), MemberError<E>> {
    // UTF-8 checked once over the whole document rather than string by string as the parser reads them.
    let text =
        std::str::from_utf8(bytes).map_err(|err| MemberError::Json(StrictJsonError::Invalid(err.to_string())))?;
    let duplicate = RefCell::new(None);
    let mut verdict = None;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let visitor = TopLevel { seed: StrictSeed { depth: 1, duplicate: &duplicate }, on_member, verdict: &mut verdict };
    let parsed = deserializer.deserialize_any(visitor).and_then(|()| deserializer.end());
    match (parsed, verdict) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(err)) => Err(MemberError::Member(err)),
        (Err(err), None) => Err(MemberError::Json(match duplicate.into_inner() {
            Some(name) => StrictJsonError::Duplicate(name),
            None => StrictJsonError::Invalid(err.to_string()),
        })),
    }
}

struct TopLevel<'a, F, E> {
    seed: StrictSeed<'a>,
    on_member: F,
    /// Side channel for the handler's typed error: serde's error type only carries text.
    verdict: &'a mut Option<E>,
}

impl<'de, F, E> Visitor<'de> for TopLevel<'_, F, E>
where
    F: FnMut(Cow<'_, str>, Value) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<(), A::Error> {
        while let Some(name) = access.next_key_seed(NameSeed)? {
            let value = access.next_value_seed(self.seed)?;
            if let Err(err) = (self.on_member)(name, value) {
                *self.verdict = Some(err);
                return Err(de::Error::custom("member refused"));
            }
        }
        Ok(())
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    depth: usize,
    /// Side channel for the duplicate's name: serde's error type only carries text.
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(Self { depth: self.depth + 1, duplicate: self.duplicate })
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                *self.duplicate.borrow_mut() = Some(name);
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = access.next_value_seed(inner)?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects members into a map, refusing repeated top-level names as the token parsers do.
    fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
        let mut map = Map::new();
        parse_members(bytes, |name, value| match map.contains_key(name.as_ref()) {
            true => Err(name.into_owned()),
            false => {
                map.insert(name.into_owned(), value);
                Ok(())
            }
        })
        .map_err(|err| match err {
            MemberError::Json(json) => json,
            MemberError::Member(name) => StrictJsonError::Duplicate(name),
        })?;
        Ok(map)
    }

    #[test]
    fn duplicate_members_are_named_at_any_depth() {
        for (doc, name) in
            [(r#"{"a":1,"a":2}"#, "a"), (r#"{"x":{"b":1,"b":1}}"#, "b"), (r#"{"e\u0078p":1,"exp":2}"#, "exp")]
        {
            match parse_object(doc.as_bytes()) {
                Err(StrictJsonError::Duplicate(found)) => assert_eq!(found, name, "{doc}"),
                other => panic!("{doc}: expected duplicate, got {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse_object(ok.as_bytes()).is_ok());
        let deep = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse_object(deep.as_bytes()), Err(StrictJsonError::Invalid(_))));
    }

    #[test]
    fn only_objects_and_no_trailing_data() {
        for doc in ["[1]", "1", "\"s\"", "{} {}", "{}x", ""] {
            assert!(matches!(parse_object(doc.as_bytes()), Err(StrictJsonError::Invalid(_))), "{doc}");
        }
    }
}
