//! JSON in and out. Bodies are read with the path of the offending value in
//! every error (`items[0].quantity: invalid type ...`), so a client learns
//! which field to fix.
//!
//! Every body the API takes, and every object inside one, is read from a
//! JSON object only. serde would also read a struct from an array of its
//! fields in order (`[1099]` would reprice a product, `["SKU-1", 2]` would be
//! an order line), which the OpenAPI document does not allow.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::problem::Problem;

/// A JSON request body of type `T`, or a 4xx problem naming what is wrong.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(status, "too-large", "the body is larger than this endpoint accepts")
            } else {
                Problem::bad_request(format!("the body could not be read: {rejection}"))
            }
        })?;
        parse(&bytes).map(Body)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let malformed = |error: serde_json::Error| Problem::bad_request(format!("malformed JSON: {error}"));
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let AnObject(body) = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => malformed(inner),
            serde_json::error::Category::Data if path == "." => Problem::invalid("body", inner.to_string()),
            serde_json::error::Category::Data => Problem::invalid(path, inner.to_string()),
        }
    })?;
    // Nothing but whitespace may follow the body's one value.
    deserializer.end().map_err(malformed)?;
    Ok(body)
}

/// `T` read from a JSON object, never from an array of its fields.
struct AnObject<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for AnObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(AnObject)
    }
}

/// Reads a struct from a JSON object only. For `#[serde(deserialize_with)]`.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            // The fields are read through the same `map`, so an error deeper
            // down still carries its whole path.
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// An optional struct: absent or `null` is `None`, anything else must be a
/// JSON object. For `#[serde(default, deserialize_with)]`.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<AnObject<T>>::deserialize(deserializer)?.map(|AnObject(item)| item))
}

/// A list of structs, each read from a JSON object only. For
/// `#[serde(deserialize_with)]`.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    let list = Vec::<AnObject<T>>::deserialize(deserializer)?;
    Ok(list.into_iter().map(|AnObject(item)| item).collect())
}

/// A whole number as JSON Schema counts one: `2` and `2.0` alike (JSON has
/// one number type, and the OpenAPI document says `integer`), refused when it
/// has a fraction or lies outside `i64`. For `#[serde(deserialize_with)]`.
pub fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    // 2^63: the first f64 past i64::MAX; every f64 below it with no fraction fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => Ok(f as i64),
        _ => Err(D::Error::custom(format!(
            "expected a whole number within 64 bits, got {number}"
        ))),
    }
}

/// A JSON response with a status.
pub fn reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => Problem::internal(error).into_response(),
    }
}

/// A query string of type `T`, or a 400 problem saying what is wrong with it.
pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    query
        .map(|Query(query)| query)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

/// The page size asked for, `default` when none, refused outside `1..=max`.
pub fn page_limit(asked: Option<u32>, default: u32, max: u32) -> Result<u32, Problem> {
    let limit = asked.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(Problem::invalid("limit", format!("limit must be 1 to {max}")))
    }
}

/// A text query parameter (a search, a filter), when given: refused unless
/// it is 1 to 200 characters, none of them control characters.
pub fn filter_text(field: &str, value: Option<&str>) -> Result<(), Problem> {
    let bad = |v: &str| !(1..=200).contains(&v.chars().count()) || v.chars().any(char::is_control);
    match value {
        Some(v) if bad(v) => Err(Problem::invalid(
            field,
            format!("{field} must be 1 to 200 characters, none of them control characters"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Count {
        #[serde(deserialize_with = "super::whole")]
        n: i64,
    }

    fn read(json: &str) -> Result<i64, String> {
        serde_json::from_str::<Count>(json)
            .map(|c| c.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_with_or_without_a_zero_fraction() {
        assert_eq!(read(r#"{"n": 342}"#), Ok(342));
        assert_eq!(read(r#"{"n": 342.0}"#), Ok(342));
        assert_eq!(read(r#"{"n": -4e3}"#), Ok(-4000));
        assert_eq!(read(r#"{"n": -9223372036854775808}"#), Ok(i64::MIN));
    }

    #[test]
    fn a_body_is_an_object_never_an_array_of_its_fields() {
        assert_eq!(super::parse::<Count>(b" {\"n\": 7}").map(|c| c.n).ok(), Some(7));
        let refused = super::parse::<Count>(b" \n[7]").expect_err("an array is not an object");
        assert_eq!(refused.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.field.as_deref(), Some("body"));
    }

    #[derive(Debug, Deserialize)]
    struct Basket {
        #[serde(deserialize_with = "super::objects")]
        lines: Vec<Count>,
        #[serde(default, deserialize_with = "super::optional_object")]
        note: Option<Count>,
    }

    #[test]
    fn objects_inside_a_body_are_objects_too() {
        let basket = super::parse::<Basket>(br#"{"lines": [{"n": 1}, {"n": 2.0}], "note": {"n": 3}}"#)
            .expect("objects are read");
        assert_eq!(basket.lines.iter().map(|c| c.n).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(basket.note.map(|c| c.n), Some(3));
        for (json, field) in [
            (r#"{"lines": [{"n": 1}, [2]]}"#, "lines[1]"),
            (r#"{"lines": [{"n": 1}], "note": [3]}"#, "note"),
            (r#"{"lines": [{"n": 1}, {"n": 2.5}]}"#, "lines[1].n"),
        ] {
            let refused = super::parse::<Basket>(json.as_bytes()).expect_err(json);
            assert_eq!(refused.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY, "{json}");
            assert_eq!(refused.field.as_deref(), Some(field), "{json}");
        }
        let absent = super::parse::<Basket>(br#"{"lines": [], "note": null}"#).expect("null is no note");
        assert!(absent.note.is_none());
    }

    #[test]
    fn nothing_may_follow_the_body() {
        let refused = super::parse::<Count>(br#"{"n": 7} {"n": 8}"#).expect_err("two values");
        assert_eq!(refused.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn fractions_and_numbers_past_64_bits_are_refused() {
        for json in [
            r#"{"n": 2.5}"#,
            r#"{"n": 1e30}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 9223372036854775808.0}"#,
            r#"{"n": "2"}"#,
        ] {
            assert!(read(json).is_err(), "{json} was read");
        }
    }
}
