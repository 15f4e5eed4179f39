//! Why a query fails: each kind maps onto one of Prometheus's `errorType`s, and names no
//! storage module (the store boxes its own errors into [`Error::Storage`]).

/// Why a query failed; each maps onto Prometheus's `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query or a parameter is malformed (400, `bad_data`); not retryable.
    #[error("{0}")]
    BadData(String),
    /// The query is well formed but cannot be evaluated (422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// Evaluating would hold more samples at once than `--query-max-samples` (422,
    /// `execution`, Prometheus's words).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its timeout (503, `timeout`); retryable.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Reading the store failed (500, `internal`); retryable.
    #[error("reading the store: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` of the query engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
