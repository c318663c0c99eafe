//! The Cloudflare API's answer envelope (docs/protocol.md 11):
//! `{"success", "errors": [{"code", "message"}], "messages", "result"}`, and
//! the error codes the edge answers with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Cloudflare's code for every authentication or authorisation failure.
pub(crate) const AUTHENTICATION: u32 = 10000;
/// Cloudflare's code for a path it has no route for.
pub(crate) const NO_ROUTE: u32 = 7003;
/// Cloudflare's code for a method the path does not take.
pub(crate) const METHOD_NOT_ALLOWED: u32 = 7001;
/// Cloudflare's code for an Access app id it does not know.
pub(crate) const UNKNOWN_APP: u32 = 12045;
/// The edge's code for an app that has no CA (yet, or any more).
pub(crate) const NO_CA: u32 = 12046;
/// The edge's code for a query parameter out of range.
pub(crate) const BAD_QUERY: u32 = 10001;
/// The edge's code for a failure of its own (the log says more).
pub(crate) const INTERNAL: u32 = 10002;

/// Where a list stands: `result_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ResultInfo {
    pub page: usize,
    pub per_page: usize,
    pub count: usize,
    pub total_count: usize,
    pub total_pages: usize,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    success: bool,
    errors: &'a [ApiError<'a>],
    messages: [&'a str; 0],
    result: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_info: Option<ResultInfo>,
}

#[derive(Serialize)]
struct ApiError<'a> {
    code: u32,
    message: &'a str,
}

/// 200 with `result` (and `result_info` for a list).
pub(crate) fn success<T: Serialize>(result: T, info: Option<ResultInfo>) -> Response {
    let body = Envelope {
        success: true,
        errors: &[],
        messages: [],
        result: Some(result),
        result_info: info,
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `status` with one error and a null result.
pub(crate) fn failure(status: StatusCode, code: u32, message: &str) -> Response {
    let body: Envelope<'_, ()> = Envelope {
        success: false,
        errors: &[ApiError { code, message }],
        messages: [],
        result: None,
        result_info: None,
    };
    (status, axum::Json(body)).into_response()
}

/// 401 (no usable credentials) or 403 (not allowed), code 10000.
pub(crate) fn authentication(status: StatusCode) -> Response {
    failure(status, AUTHENTICATION, "Authentication error")
}

/// 404, code 7003, as Cloudflare words it.
pub(crate) fn no_route(path: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        NO_ROUTE,
        &format!("Could not route to {path}, perhaps your object identifier is invalid?"),
    )
}

/// 405 with the methods the path takes in `Allow`.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = failure(
        StatusCode::METHOD_NOT_ALLOWED,
        METHOD_NOT_ALLOWED,
        &format!("Method not allowed (this path takes {allow})"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
