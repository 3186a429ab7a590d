//! Logs: human-readable by default, JSON with `--log-format json`; `RUST_LOG`
//! overrides the level (default `info`: one line per notable state change,
//! never one per event).

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub fn init(format: LogFormat) {
    // lapin logs each returned (unroutable) message with its whole body at
    // WARN; the publisher turns those into one clear error instead.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin::returned_messages=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
