//! The crate's error type. Every face maps it the same way: one place decides
//! which HTTP status and gRPC code an error becomes.

use crate::storage::metrics::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or invalid; retrying it will not help.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    /// The server is shutting down or overloaded; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Storage(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::BadRequest(_) | Error::UnsupportedMediaType(_) => tonic::Code::InvalidArgument,
            Error::PayloadTooLarge(_) => tonic::Code::ResourceExhausted,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Storage(_) | Error::Internal(_) => tonic::Code::Internal,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), self.to_string())
    }
}
