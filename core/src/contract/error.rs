//! Why an event was refused.

use thiserror::Error;

/// Why an event was refused. Each variant has a stable [`reason`] used as
/// the dead-letter header and the metric label.
///
/// [`reason`]: DecodeError::reason
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("event is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a CloudEvents 1.0 event: {0}")]
    NotCloudEvent(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{path}` {problem}")]
    InvalidField { path: String, problem: String },
    #[error("source `{0}` is not among the trusted sources")]
    UntrustedSource(String),
}

impl DecodeError {
    /// A short, stable, low-cardinality label for metrics and headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::NotCloudEvent(_) => "not_cloudevent",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::UntrustedSource(_) => "untrusted_source",
        }
    }

    /// Every reason label, for pre-registering metric series.
    pub const REASONS: [&'static str; 7] = [
        "too_large",
        "not_json",
        "not_cloudevent",
        "unknown_type",
        "missing_field",
        "invalid_field",
        "untrusted_source",
    ];
}
