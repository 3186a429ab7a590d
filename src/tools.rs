//! The operator's tools over a data directory: `rebuild`, `export`,
//! `import`. They open the store themselves, so the service must not be
//! running on the same directory (RocksDB's lock says so).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use audrey_core::{Event, Timestamp};
use audrey_store::Store;

use crate::cli::{DataArgs, ExportArgs, ImportArgs, OnInvalid};

/// Events applied per synced batch by `import`.
const IMPORT_BATCH: usize = 1_000;

/// Which store a tool expects in `--data-dir`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One that exists, whatever state its views are in (`rebuild`,
    /// `export`): a mistyped directory is an error, not a new store.
    Existing,
    /// One with current views, created when missing (`import`).
    CurrentViews,
}

fn open(path: &Path, expect: Expect) -> anyhow::Result<Store> {
    let store = match expect {
        Expect::Existing => Store::open_existing(path),
        Expect::CurrentViews => Store::open(path),
    };
    store.with_context(|| {
        format!(
            "opening {} (is `audrey-reporting serve` running on it?)",
            path.display()
        )
    })
}

fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template =
        format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{elapsed}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub fn rebuild(args: &DataArgs) -> anyhow::Result<()> {
    let store = open(&args.data_dir, Expect::Existing)?;
    let bar = progress_bar(store.estimated_logged_events(), "events");
    let replayed = store
        .rebuild(|n| {
            bar.set_length(bar.length().unwrap_or(0).max(n));
            bar.set_position(n);
        })
        .context("rebuilding the views")?;
    bar.finish();
    println!(
        "rebuilt the views of {} from {replayed} logged events",
        args.data_dir.display()
    );
    Ok(())
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let store = open(&args.data.data_dir, Expect::Existing)?;
    let mut out: Box<dyn Write> = if args.output == Path::new("-") {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        let file = File::create(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
        Box::new(BufWriter::new(file))
    };
    let mut written = 0u64;
    let mut failure = None;
    store.for_each_logged_event(|event| {
        let line = serde_json::to_string(&event.to_json()).expect("JSON");
        if let Err(e) = writeln!(out, "{line}") {
            failure = Some(e);
            return Ok(false);
        }
        written += 1;
        Ok(true)
    })?;
    if let Some(e) = failure {
        return Err(e).context("writing the export");
    }
    out.flush().context("writing the export")?;
    eprintln!("exported {written} events");
    Ok(())
}

pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let input: Box<dyn BufRead> = if args.input == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file =
            File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(BufReader::new(file))
    };
    // Read and check everything first: `refuse` must import nothing.
    let now = Timestamp::now();
    let mut events = Vec::new();
    let mut invalid = 0u64;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let max_bytes = args.limits.max_event_bytes as usize;
        match Event::decode(line.as_bytes(), max_bytes).and_then(|e| e.check_clock(now).map(|()| e))
        {
            Ok(event) => events.push(event),
            Err(e) => {
                invalid += 1;
                eprintln!("line {number}: {e}");
            }
        }
    }
    if invalid > 0 && args.on_invalid == OnInvalid::Refuse {
        bail!("{invalid} invalid line(s): nothing imported (use --on-invalid skip to import the valid ones)");
    }
    let store = open(&args.data.data_dir, Expect::CurrentViews)?;
    let bar = progress_bar(events.len() as u64, "events");
    let (mut applied, mut duplicates) = (0, 0);
    for chunk in events.chunks(IMPORT_BATCH) {
        let outcome = store.apply_batch(chunk).context("applying events")?;
        applied += outcome.applied();
        duplicates += outcome.duplicates();
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    println!(
        "imported {applied} events ({duplicates} already known, {invalid} invalid line(s) skipped)"
    );
    Ok(())
}
