//! The one error type of the service operations, classified the way the API answers
//! (404, 409, 422, 500) [API.md error shape].

use crate::db::DbError;
use crate::store::CommandError;
use tare_domain::{DomainError, RejectionKind};

/// A service call's failure, classified for the API [API.md error shape].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// 404.
    #[error("{message}")]
    NotFound {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 409.
    #[error("{message}")]
    Conflict {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 422.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// 503: the store could not be reached (it is restarting, or the connections are
    /// exhausted); the caller retries.
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// 500 (logged; details not shown to callers).
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Classifies a domain refusal decided without a command (a check before one).
    pub(crate) fn refused<E: DomainError>(e: E) -> Self {
        Self::from_command(CommandError::Rejected(e))
    }

    /// Classifies a refused or failed command.
    pub(crate) fn from_command<E: DomainError>(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => match e.kind() {
                RejectionKind::NotFound => Self::NotFound {
                    code: e.code(),
                    message: e.to_string(),
                },
                RejectionKind::Conflict => Self::Conflict {
                    code: e.code(),
                    message: e.to_string(),
                },
                RejectionKind::Invalid => {
                    let message = e.to_string();
                    match e.field() {
                        // The error reads "{field}: {reason}"; the API names the field apart.
                        Some(field) => Self::Invalid {
                            message: message.strip_prefix(&format!("{field}: ")).unwrap_or(&message).to_string(),
                            field,
                        },
                        None => Self::Invalid {
                            field: "body".into(),
                            message,
                        },
                    }
                }
            },
            CommandError::Conflict => Self::Conflict {
                code: "concurrent_update",
                message: "try again".into(),
            },
            CommandError::Store(s) => Self::Internal(s),
            CommandError::Unavailable(s) => Self::Unavailable(s),
        }
    }
}

impl From<DbError> for ServiceError {
    fn from(e: DbError) -> Self {
        if e.is_unreachable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}
