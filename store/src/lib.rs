//! The RocksDB store of audrey-reporting: the core's view rows, the raw
//! event log and the dedup index, written in atomic, synced batches. It
//! implements the core's [`ViewRead`](audrey_core::views::ViewRead) and
//! [`ViewWrite`](audrey_core::views::ViewWrite) and knows nothing of AMQP
//! or HTTP.
//!
//! - [`store`]: the [`Store`], its one `impl`, each method handing the work
//!   to one of the modules below;
//! - [`db`]: the column families and their tuning; [`changes`]: which
//!   deployments each write may have changed;
//! - [`keys`]: the layout of every key; [`codec`]: how rows are encoded
//!   (and [`VIEWS_VERSION`]); [`instance_parts`]: an instance's row in two
//!   parts, its progress apart;
//! - [`apply`]: one batch of events: dedup, log, projection, one synced
//!   write; it works on [`pending`] (the batch that overlays pending writes
//!   on the committed store), [`recent`] (the recent instances and
//!   deployments the writer keeps) and [`sorted_writes`];
//! - [`reader`]: the reader over a snapshot that every report uses;
//!   [`raw`]: the row readers both share; [`provided`]: what instances
//!   have provided, remembered across readers;
//! - [`log`]: the event log and an entity's history; [`rebuild`]: views
//!   from the log; [`retention`]: keeping the log bounded;
//! - [`error`]: what it can fail with.
#![forbid(unsafe_code)]

pub mod apply;
mod changes;
pub mod codec;
mod db;
pub mod error;
mod instance_parts;
mod keys;
pub mod log;
mod pending;
mod provided;
mod raw;
pub mod reader;
mod rebuild;
mod recent;
pub mod retention;
mod sorted_writes;
pub mod store;

pub use apply::{BatchOutcome, Encoded, EventOutcome, Loggable};
pub use codec::VIEWS_VERSION;
pub use error::StoreError;
pub use log::HistoryPage;
pub use reader::Reader;
pub use retention::{Pruned, Retention};
pub use store::Store;
