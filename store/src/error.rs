//! What the store can fail with.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored row `{what}` is corrupt: {problem}")]
    Corrupt { what: String, problem: String },
    #[error(
        "the views in {path} are of version {found}, this build makes version {expected}: \
         run `audrey-reporting rebuild --data-dir {path}` to rebuild them from the event log"
    )]
    ViewsOutdated {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error(
        "a rebuild of the views in {path} did not finish: \
         run `audrey-reporting rebuild --data-dir {path}` again"
    )]
    RebuildUnfinished { path: String },
    #[error(
        "{path} holds no audrey-reporting store (is --data-dir right? \
         `serve` or `import` create one)"
    )]
    NoStore { path: String },
}

impl StoreError {
    /// A stored value that does not decode.
    pub(crate) fn corrupt(what: &str, problem: impl ToString) -> Self {
        StoreError::Corrupt {
            what: what.to_owned(),
            problem: problem.to_string(),
        }
    }
}
