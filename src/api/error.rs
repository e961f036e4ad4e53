//! The REST API's one error type. Each variant is a way a request fails; [`IntoResponse`]
//! maps it to Patroni's status code and puts Patroni's message in the body, so tools that
//! match on the text (patronictl, scripts) keep working.

use crate::dcs::DcsError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body or a request Patroni refuses ("Switchover target and source are the same").
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong Basic credentials; the text is Patroni's reason.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the allowlist or the client-certificate rule refused the caller.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: nothing to delete ("no switchover is scheduled").
    #[error("{0}")]
    NotFound(String),
    /// 409: a concurrent change won the compare-and-swap, or a restart is already scheduled.
    #[error("{0}")]
    Conflict(String),
    /// 411: a JSON endpoint was called without Content-Length (Patroni reads exactly that many bytes).
    #[error("Length Required")]
    LengthRequired,
    /// 412: the cluster does not allow the requested switchover or failover now.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than [`crate::api::rest::MAX_BODY`].
    #[error("Payload Too Large")]
    PayloadTooLarge,
    /// 422: a schedule in the past or one that does not parse.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: Patroni answers a few refusals with 500 ("Can't schedule restart in the paused
    /// state", a failsafe update the loop rejected); kept so clients see the same code.
    #[error("{0}")]
    Refused(String),
    /// 501: no handler for this method and path (Python's http.server "Unsupported method").
    #[error("Unsupported method ({0})")]
    UnsupportedMethod(String),
    /// 502: the DCS has no value to show (GET /config, /failsafe) or refused PUT /config.
    #[error("Bad Gateway")]
    BadGateway,
    /// 503: the operation cannot be done now; the text says why.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the DCS could not be read or written.
    #[error("DCS is not accessible")]
    Dcs(#[source] DcsError),
}

impl ApiError {
    /// The status code Patroni answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Refused(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::UnsupportedMethod(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::BadGateway => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) | ApiError::Dcs(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Dcs(e) = &self {
            // Handled here: the caller gets 503, the operator the cause.
            tracing::warn!(error = %e, "REST API: DCS request failed");
        }
        let mut r = text(self.status(), self.to_string());
        if let ApiError::Unauthorized(_) = self {
            // Patroni's realm is its class name; clients only need the scheme.
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Patroni\""),
            );
        }
        r
    }
}

/// A plain-text answer, as Patroni's `write_response`.
pub fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A JSON answer, as Patroni's `_write_json_response`.
pub fn json(code: StatusCode, body: &serde_json::Value) -> Response {
    (code, axum::Json(body)).into_response()
}
