//! JSON in and out. Bodies are read with the path of the offending value in
//! every error (`items[0].quantity: invalid type ...`), so a client learns
//! which field to fix.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => Problem::bad_request(format!("malformed JSON: {inner}")),
            serde_json::error::Category::Data if path == "." => Problem::invalid("body", inner.to_string()),
            serde_json::error::Category::Data => Problem::invalid(path, inner.to_string()),
        }
    })
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
