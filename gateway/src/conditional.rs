//! Conditional requests (RFC 9110 §13): an entity tag on what a client
//! reads, `If-None-Match` to skip a body the client already holds, and
//! `If-Match` to change a product only at the version the client read
//! (optimistic concurrency over HTTP).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// Caches may keep the answer, for this caller alone, and must ask again
/// (conditionally) before using it.
const CACHE_CONTROL: &str = "private, no-cache";

/// A product's tag: its version, which every change moves.
pub(crate) fn version_tag(version: u64) -> String {
    format!("\"{version}\"")
}

/// An order's tag: a digest of its representation (orders carry no version
/// in their view).
fn content_tag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// `200` with `value` tagged `tag` (or tagged by its content when `None`),
/// or `304` with no body when the request's `If-None-Match` names the tag.
pub(crate) fn reply_tagged<T: Serialize>(headers: &HeaderMap, tag: Option<String>, value: &T) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(error) => return Problem::internal(error).into_response(),
    };
    let tag = tag.unwrap_or_else(|| content_tag(&body));
    let mut response = if none_match(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    tagged(response, &tag)
}

/// `response` with `tag` as its `ETag`.
pub(crate) fn tagged(mut response: Response, tag: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Whether `If-None-Match` names `tag` (weakly compared) or is `*`.
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// The version `If-Match` asks a change to apply at: `None` when the request
/// sets no condition (no header, an empty one, or `*`, which any existing
/// product meets).
///
/// Anything but `*` or one product version in quotes (`"12"`) is refused
/// with 400, as the OpenAPI document's pattern says: a weak tag, another
/// kind of tag, a list (even of one, or of none: `,`), or several headers
/// (a change applies at one version).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let mut tags = Vec::new();
    for value in headers.get_all(header::IF_MATCH) {
        let value = value
            .to_str()
            .map_err(|_| Problem::bad_request("If-Match must be entity tags in visible ASCII"))?
            .trim();
        if !value.is_empty() {
            tags.push(value);
        }
    }
    let one_version = || Problem::bad_request("If-Match names one version: a change applies at one");
    match tags.as_slice() {
        // Absent, empty, or any version: no condition.
        [] | ["*"] => Ok(None),
        [tag] if tag.contains(',') => Err(one_version()),
        [tag] => {
            let version = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|t| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok());
            version.map(Some).ok_or_else(|| {
                Problem::bad_request(format!("If-Match {tag:?} is not *, nor a product version in quotes"))
            })
        }
        _ => Err(one_version()),
    }
}

/// 412: the resource is no longer what the client's condition describes.
pub(crate) fn precondition_failed(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::PRECONDITION_FAILED, "precondition-failed", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).expect("a header value"));
        headers
    }

    #[test]
    fn if_none_match_matches_the_tag_weakly_or_any() {
        let tag = version_tag(7);
        assert!(none_match(&headers(header::IF_NONE_MATCH, "\"7\""), &tag));
        assert!(none_match(&headers(header::IF_NONE_MATCH, "\"3\", W/\"7\""), &tag));
        assert!(none_match(&headers(header::IF_NONE_MATCH, "*"), &tag));
        assert!(!none_match(&headers(header::IF_NONE_MATCH, "\"8\""), &tag));
        assert!(!none_match(&HeaderMap::new(), &tag));
    }

    #[test]
    fn if_match_names_one_version_in_quotes() {
        assert_eq!(if_match(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(if_match(&headers(header::IF_MATCH, "*")).ok(), Some(None));
        assert_eq!(if_match(&headers(header::IF_MATCH, "\"12\"")).ok(), Some(Some(12)));
        assert_eq!(if_match(&headers(header::IF_MATCH, "")).ok(), Some(None));
        for malformed in [
            "W/\"12\"",
            "\"abc\"",
            "12",
            "null",
            "\"\"",
            "\"99999999999999999999\"",
            ",",
            "*, \"1\"",
            "\"12\",",
        ] {
            let refused = if_match(&headers(header::IF_MATCH, malformed)).expect_err(malformed);
            assert_eq!(refused.status, 400, "{malformed}");
        }
        let two = if_match(&headers(header::IF_MATCH, "\"1\", \"2\"")).expect_err("two");
        assert_eq!(two.status, 400);
    }
}
