//! The admin service's one error type and its mapping to gRPC status codes.
//!
//! REST refusals keep their text (Patroni's where Patroni has one); the status code is
//! derived from the HTTP code the REST API would have answered, which is also attached as
//! the `x-http-status` metadata entry.

use crate::api::error::ApiError;
use pgwarden_raft::node::wire::AdminError as RaftAdminError;
use tonic::{Code, Status};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Refused or failed the way the REST API would have.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A REST answer that is not a success, from this member or a forwarded call.
    #[error("{message}")]
    Rest {
        /// The HTTP status.
        code: u16,
        /// The body text.
        message: String,
    },
    /// The request itself is malformed (bad JSON, missing name).
    #[error("{0}")]
    InvalidArgument(String),
    /// The named member is not part of the cluster.
    #[error("{member} is not a member of cluster {scope}")]
    UnknownMember {
        /// The name given.
        member: String,
        /// The cluster.
        scope: String,
    },
    /// The operation does not apply in the cluster's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A compare-and-swap lost against a concurrent change.
    #[error("{0}")]
    Conflict(String),
    /// The member to forward to did not answer.
    #[error("cannot reach member {member} at {url}")]
    Forward {
        /// The member.
        member: String,
        /// Its REST URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A Raft membership operation failed.
    #[error(transparent)]
    Raft(#[from] RaftAdminError),
}

/// The gRPC code for an HTTP status of the REST API.
pub fn code_for_http(code: u16) -> Code {
    match code {
        400 | 411 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        // Patroni's 500 answers are refusals ("Can't schedule restart in the paused state").
        500 => Code::FailedPrecondition,
        501 => Code::Unimplemented,
        502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

fn with_http(code: Code, message: String, http: u16) -> Status {
    let mut s = Status::new(code, message);
    if let Ok(v) = http.to_string().parse() {
        s.metadata_mut().insert("x-http-status", v);
    }
    s
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Status {
        match e {
            AdminError::Api(ApiError::Dcs(d)) => {
                tracing::warn!(error = %pgwarden_raft::error_chain(&d), "admin API: DCS request failed");
                with_http(
                    Code::Unavailable,
                    format!("DCS is not accessible: {}", pgwarden_raft::error_chain(&d)),
                    503,
                )
            }
            AdminError::Api(a) => {
                let http = a.status().as_u16();
                with_http(code_for_http(http), a.to_string(), http)
            }
            AdminError::Rest { code, message } => with_http(code_for_http(code), message, code),
            AdminError::InvalidArgument(m) => Status::invalid_argument(m),
            e @ AdminError::UnknownMember { .. } => Status::not_found(e.to_string()),
            AdminError::FailedPrecondition(m) => Status::failed_precondition(m),
            AdminError::Conflict(m) => Status::aborted(m),
            e @ AdminError::Forward { .. } => {
                let text = pgwarden_raft::error_chain(&e);
                tracing::warn!(error = %text, "admin API: forwarding failed");
                Status::unavailable(text)
            }
            AdminError::Raft(r) => {
                let code = match &r {
                    RaftAdminError::NoLeader | RaftAdminError::Unreachable { .. } => Code::Unavailable,
                    RaftAdminError::UnknownMember(_) => Code::NotFound,
                    RaftAdminError::NameTaken { .. } | RaftAdminError::AlreadyMember(_) => {
                        Code::AlreadyExists
                    }
                    RaftAdminError::Raft(_) => Code::Aborted,
                };
                Status::new(code, r.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REST refusals keep their text and get the code that matches their HTTP status.
    #[test]
    fn rest_refusals_keep_text_and_map_codes() {
        let s: Status =
            AdminError::Api(ApiError::PreconditionFailed("candidate does not exists".into())).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "candidate does not exists");
        assert_eq!(s.metadata().get("x-http-status").unwrap(), "412");
        let s: Status = AdminError::Rest {
            code: 503,
            message: "I am the leader, can not reinitialize".into(),
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        let s: Status = AdminError::Api(ApiError::Conflict("Conflict".into())).into();
        assert_eq!(s.code(), Code::Aborted);
    }
}
