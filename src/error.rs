//! One error type for the whole SDK, with a stable code per kind.
//!
//! The code is the contract (JS code switches on `err.code`); the message is for
//! people and says what to do next.

use std::fmt;

/// Stable error codes. Their `as_str()` spelling is what JS sees as `SandrunError.code`
/// (the TypeScript `ErrorCode` union is generated from this enum; a test checks that
/// serde's spelling equals `as_str()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// A builder or config value is wrong; nothing was sent.
    InvalidArgument,
    /// The server answered with an unexpected HTTP status.
    HttpStatus,
    /// The server refused for rate limits (HTTP 429); `retry_after_ms` may be known.
    RateLimited,
    /// The server could not be reached or the connection broke.
    Network,
    /// An operation or the job itself ran past its time limit.
    Timeout,
    /// The job ended with a non-zero exit code or was killed.
    JobFailed,
    /// The worker does not know the job (never existed, deleted, downloaded).
    JobNotFound,
    /// A signature, a job hash or an output hash did not check out.
    VerificationFailed,
    /// Not enough agreeing verified results for the requested consensus.
    ConsensusNotReached,
    /// The wallet user rejected a request (EIP-1193 code 4001).
    UserRejected,
    /// The user cancelled the operation.
    Cancelled,
    /// The server's answer could not be parsed.
    MalformedResponse,
    /// The operation is not available on this platform or server.
    Unsupported,
    /// Reading or writing a local file failed, or a path was refused.
    Io,
    /// A plugin hook threw.
    PluginFailed,
    /// A payment transaction failed (insufficient funds, a revert, an RPC error).
    PaymentFailed,
    /// The wallet is on another chain than the escrow.
    WrongChain,
    /// No worker matches what was asked (a job's `gpu()`, a pool's `discover()`
    /// criteria); the message names what was asked and what the registry offers.
    NoMatchingWorker,
}

impl ErrorCode {
    /// Every code, for parsing.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidArgument,
        ErrorCode::HttpStatus,
        ErrorCode::RateLimited,
        ErrorCode::Network,
        ErrorCode::Timeout,
        ErrorCode::JobFailed,
        ErrorCode::JobNotFound,
        ErrorCode::VerificationFailed,
        ErrorCode::ConsensusNotReached,
        ErrorCode::UserRejected,
        ErrorCode::Cancelled,
        ErrorCode::MalformedResponse,
        ErrorCode::Unsupported,
        ErrorCode::Io,
        ErrorCode::PluginFailed,
        ErrorCode::PaymentFailed,
        ErrorCode::WrongChain,
        ErrorCode::NoMatchingWorker,
    ];

    /// The code spelled `s`, if any.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The stable spelling (`HTTP_STATUS`, `RATE_LIMITED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::HttpStatus => "HTTP_STATUS",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Network => "NETWORK",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::JobFailed => "JOB_FAILED",
            ErrorCode::JobNotFound => "JOB_NOT_FOUND",
            ErrorCode::VerificationFailed => "VERIFICATION_FAILED",
            ErrorCode::ConsensusNotReached => "CONSENSUS_NOT_REACHED",
            ErrorCode::UserRejected => "USER_REJECTED",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::MalformedResponse => "MALFORMED_RESPONSE",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Io => "IO",
            ErrorCode::PluginFailed => "PLUGIN_FAILED",
            ErrorCode::PaymentFailed => "PAYMENT_FAILED",
            ErrorCode::WrongChain => "WRONG_CHAIN",
            ErrorCode::NoMatchingWorker => "NO_MATCHING_WORKER",
        }
    }
}

/// The SDK's error: a code, a message that says what to do, and context.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// HTTP status when the error came from a response.
    pub status: Option<u16>,
    /// How long the server asked us to wait, when it said so (429 texts).
    pub retry_after_ms: Option<u64>,
    /// The lower-level cause, as text (e.g. the server's `{"error":...}`).
    pub cause: Option<String>,
    /// Structured details (e.g. a failed job's result, or per-replica outcomes).
    pub details: Option<serde_json::Value>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), status: None, retry_after_ms: None, cause: None, details: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Network, message)
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedResponse, message)
    }
    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(c) = &self.cause {
            write!(f, " (cause: {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// The generated TypeScript union spells each code as serde does: it must be `as_str()`.
    #[test]
    fn serde_spelling_is_as_str() {
        use super::ErrorCode::*;
        for c in [InvalidArgument, HttpStatus, RateLimited, Network, Timeout, JobFailed, JobNotFound, VerificationFailed, ConsensusNotReached, UserRejected, Cancelled, MalformedResponse, Unsupported, Io, PluginFailed, PaymentFailed, WrongChain, NoMatchingWorker] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
