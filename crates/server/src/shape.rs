//! The last word on every answer's shape: a request head over the API's bounds (URI, headers) is
//! refused with a JSON error (414 `uri_too_long`, 431 `headers_too_large`), and any error that
//! left a route without the JSON error shape (an extractor's plain-text rejection) gets it. In
//! both cases authentication comes first: a request without a valid token, to any path but
//! `/healthz`, is answered 401 before anything about the request or the route is told.
//!
//! The HTTP layer keeps hard bounds above these ([`HARD_MAX_HEADERS`] headers, and hyper's read
//! buffer); a head past those cannot be parsed and is answered by the HTTP layer itself, a bare
//! 431 or 400, and the connection closed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// Longest request target (path and query) answered, bytes.
pub const MAX_URI: usize = 8 * 1024;
/// Most bytes of request headers (names and values) answered.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most request headers answered.
pub const MAX_HEADERS: usize = 100;
/// Most headers the HTTP layer parses at all (past [`MAX_HEADERS`], so that the JSON 431 is
/// the answer in between).
pub const HARD_MAX_HEADERS: usize = 1024;

/// Most bytes of a rejection's text carried into the JSON message.
const MAX_REJECTION_TEXT: usize = 4096;

/// The only route that answers without a token.
fn public(path: &str) -> bool {
    path == "/healthz"
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// 401 when `path` needs a token and `headers` carry no valid one.
fn authenticated_first(st: &AppState, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if public(path) {
        return Ok(());
    }
    st.auth.authenticate(headers).map(|_| ())
}

/// The middleware (see the module docs).
pub(crate) async fn json_errors(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let target = req
        .uri()
        .path_and_query()
        .map_or(path.len(), |p| p.as_str().len());
    let headers = req.headers();
    let too_long = target > MAX_URI;
    let too_many = headers.len() > MAX_HEADERS || header_bytes(headers) > MAX_HEADER_BYTES;
    if too_long || too_many {
        if let Err(e) = authenticated_first(&st, &path, headers) {
            return e.into_response();
        }
        let e = if too_long {
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request target is {target} bytes; at most {MAX_URI}"),
            )
            .field("uri")
        } else {
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the request has {} headers of {} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes",
                    headers.len(),
                    header_bytes(headers)
                ),
            )
            .field("headers")
        };
        return e.into_response();
    }
    let headers = req.headers().clone();
    let resp = next.run(req).await;
    if !(resp.status().is_client_error() || resp.status().is_server_error()) || is_json(&resp) {
        return resp;
    }
    if let Err(e) = authenticated_first(&st, &path, &headers) {
        return e.into_response();
    }
    reshape(resp).await
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// An error without the JSON shape, given it: its text becomes the message.
async fn reshape(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let status = parts.status;
    let (code, field) = match status {
        StatusCode::BAD_REQUEST if text.contains("URL") || text.contains("path") => {
            ("invalid_request", Some("path"))
        }
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ("invalid_request", None),
        StatusCode::NOT_FOUND => ("not_found", None),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", None),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", Some("body")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", Some("Content-Type")),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", None),
        s if s.is_server_error() => ("internal", None),
        _ => ("invalid_request", None),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned()
    } else {
        text
    };
    let mut e = ApiError::new(status, code, message);
    if let Some(f) = field {
        e = e.field(f);
    }
    let mut out = e.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
