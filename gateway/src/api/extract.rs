//! Extractors: a JSON body whose errors name the offending field (the callers' own are
//! in [`super::auth`]).

use super::{ApiError, ApiState};
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The longest `after` a paged listing takes (ids are far shorter).
const PAGE_AFTER_MAX: usize = 200;

/// A paged listing's `after` and `limit` query parameters, checked: `after` (the last
/// id of the previous page, default the start) at most [`PAGE_AFTER_MAX`] characters,
/// `limit` (default `max`) between 1 and `max`; each refusal a 422 naming its field.
pub fn page_params(after: Option<String>, limit: Option<u32>, max: i64) -> Result<(String, i64), ApiError> {
    let after = after.unwrap_or_default();
    if after.len() > PAGE_AFTER_MAX {
        return Err(ApiError::invalid("after", format!("must be at most {PAGE_AFTER_MAX} characters")));
    }
    let limit = limit.map_or(max, i64::from);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {max}")));
    }
    Ok((after, limit))
}

/// A JSON body. Syntax errors are 400 `malformed_json`; type, range and unknown-field
/// errors are 422 with the field's path.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<ApiState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::Malformed(e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A body holding a serde-tagged enum, whose tag is at [`Tagged::TAG`].
pub trait Tagged {
    /// The tag's JSON pointer (`/resolution`, `/action/kind`).
    const TAG: &'static str;
}

/// A JSON body as [`ApiJson`], whose enum tag must be a string: serde takes a number
/// for an internally tagged enum's tag as a variant's index, which the document (an
/// `enum` of strings) does not allow.
pub struct TaggedJson<T>(pub T);

impl<T: DeserializeOwned + Tagged> FromRequest<Arc<ApiState>> for TaggedJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let ApiJson(value) = ApiJson::<serde_json::Value>::from_request(req, state).await?;
        if value.pointer(T::TAG).is_some_and(|t| !t.is_string()) {
            let field = T::TAG.trim_start_matches('/').replace('/', ".");
            return Err(ApiError::invalid(field, "must be one of the names the document lists"));
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::Malformed(e.to_string()))?;
        parse_json(&bytes).map(TaggedJson)
    }
}

/// Parses `bytes` as `T`, naming the failing field.
///
/// A number with a zero fraction (`3.0`) is taken for the integer it equals: JSON has one
/// number type, and JSON Schema (the OpenAPI document's schemas) calls `3.0` an integer,
/// so an integer field must not refuse it. An object must be an object (serde would also
/// fill a struct from an array, by position). A body that is not JSON is a 400.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::Malformed(format!("body is not valid JSON: {e}")))?;
    integral_numbers_as_integers(&mut value);
    match serde_path_to_error::deserialize::<_, T>(ObjectsAreObjects(value)) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            // serde reports an unknown field as "unknown field `x`, expected …".
            let field = match msg.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
                // serde_path_to_error's path already ends with the unknown field.
                Some((name, _)) if path == "." => name.to_string(),
                Some(_) => path,
                None if path == "." => missing_field(&msg).unwrap_or_else(|| "body".to_string()),
                None => match missing_field(&msg) {
                    Some(f) => format!("{path}.{f}"),
                    None => path,
                },
            };
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Err(ApiError::Invalid { field, message: msg })
        }
    }
}

/// Rewrites every float in `v` whose fraction is zero, and that an `i64` or a `u64`
/// holds, as that integer (an `f64` field still reads it).
fn integral_numbers_as_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // 2^63 and 2^64 are exact in an f64, and the casts are exact below them.
                const TWO_63: f64 = 9_223_372_036_854_775_808_u64 as f64;
                if (-TWO_63..TWO_63).contains(&f) {
                    *v = Value::from(f as i64);
                } else if (0.0..2.0 * TWO_63).contains(&f) {
                    *v = Value::from(f as u64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// A JSON value to deserialize from, like `serde_json::Value` itself, except that a struct
/// is never read from an array: the document says object, and `[null]` is not one.
struct ObjectsAreObjects(serde_json::Value);

impl<'de> serde::Deserializer<'de> for ObjectsAreObjects {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        use serde_json::Value;
        match self.0 {
            Value::Array(items) => {
                let len = items.len();
                let mut seq = serde::de::value::SeqDeserializer::new(items.into_iter().map(ObjectsAreObjects));
                let v = visitor.visit_seq(&mut seq)?;
                seq.end().map_err(|_| serde::de::Error::invalid_length(len, &"fewer elements"))?;
                Ok(v)
            }
            Value::Object(fields) => {
                let mut map = serde::de::value::MapDeserializer::new(fields.into_iter().map(|(k, v)| (k, ObjectsAreObjects(v))));
                let v = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(v)
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Array(_) => Err(serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &visitor)),
            serde_json::Value::Object(_) => self.deserialize_any(visitor),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_none(),
            other => visitor.visit_some(ObjectsAreObjects(other)),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

impl<'de> serde::de::IntoDeserializer<'de, serde_json::Error> for ObjectsAreObjects {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

fn missing_field(msg: &str) -> Option<String> {
    msg.strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f.to_string())
}

// The callers' extractors live with the roles' powers, in [`super::auth`].
pub use super::auth::{token_sha256, Caller, Operator, ShopperCaller};

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        door: u8,
        grams: f64,
        at: Option<i64>,
    }

    #[test]
    fn integral_numbers_read_as_integers_and_the_rest_as_before() {
        let ok = |json: &str| parse_json::<Body>(json.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(
            ok(r#"{"door": 3.0, "grams": 2.0, "at": -9.0}"#),
            Ok(Body {
                door: 3,
                grams: 2.0,
                at: Some(-9)
            })
        );
        assert_eq!(
            ok(r#"{"door": 3, "grams": 2.5, "at": null}"#),
            Ok(Body {
                door: 3,
                grams: 2.5,
                at: None
            })
        );
        assert_eq!(
            ok(r#"{"door": 1.5, "grams": 2}"#),
            Err("door: invalid type: floating point `1.5`, expected u8".into())
        );
        assert_eq!(
            ok(r#"{"door": 256.0, "grams": 2}"#),
            Err("door: invalid value: integer `256`, expected u8".into())
        );
        assert_eq!(
            ok(r#"{"door": 1e300, "grams": 2}"#),
            Err("door: invalid type: floating point `1e+300`, expected u8".into())
        );
        assert_eq!(
            ok(r#"{"door": 1, "grams": 2, "x": 1}"#).map_err(|e| e.starts_with("x: unknown field")),
            Err(true)
        );
        assert!(matches!(parse_json::<Body>(b"{\"door\": 1,"), Err(ApiError::Malformed(_))));
        assert!(matches!(parse_json::<Body>(b""), Err(ApiError::Malformed(_))));
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Body,
        list: Vec<Option<u8>>,
    }

    #[test]
    fn an_object_is_never_read_from_an_array() {
        let parse = |json: &str| parse_json::<Outer>(json.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(
            parse(r#"{"inner": {"door": 1, "grams": 2}, "list": [1, null]}"#),
            Ok(Outer {
                inner: Body {
                    door: 1,
                    grams: 2.0,
                    at: None
                },
                list: vec![Some(1), None],
            })
        );
        assert_eq!(
            parse(r#"[{"door": 1, "grams": 2}, []]"#),
            Err("body: invalid type: sequence, expected struct Outer".into())
        );
        assert_eq!(
            parse(r#"{"inner": [1, 2, null], "list": []}"#),
            Err("inner: invalid type: sequence, expected struct Body".into())
        );
        assert!(parse_json::<serde_json::Value>(b"[1, {\"a\": [2.0]}]").is_ok_and(|v| v == serde_json::json!([1, {"a": [2]}])));
    }
}
