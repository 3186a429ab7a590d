//! Starting a replica from a peer's store: for a replica that starts empty
//! while others have run for a while, or that was away longer than its
//! queue lived (`--replica-queue-expires`) and missed events.
//!
//! 1. The replica's queue is declared first: from then on it gets every
//!    event (see `consumer/src/topology.rs`).
//! 2. It publishes a barrier, which reaches every replica's queue behind
//!    all that was published before.
//! 3. The peer answers `/replication/checkpoint?barrier=` once it has
//!    applied the barrier (so its store holds every event published before
//!    step 1) with a checkpoint of its store, fetched file by file.
//! 4. The checkpoint becomes this replica's data directory (an old one is
//!    kept beside it, renamed); events both in the checkpoint and in the
//!    queue are deduplicated as always.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tracing::{info, warn};

use audrey_consumer::{Broker, Publisher, Topology};

use crate::http_client;

/// What the checkpoint request answers.
#[derive(Debug, Deserialize)]
struct Manifest {
    checkpoint: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    name: String,
    bytes: u64,
}

/// Why a replica needs a peer's store, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Its store is empty: everything before its queue existed is missing.
    Empty,
    /// Its queue was gone while its store has views: events are missing.
    Gap,
}

/// Whether the replica of `topology` with its store in `data_dir` needs a
/// peer's store. Asked before the queue is declared (declaring it would
/// hide that it was gone).
pub async fn need(
    broker: &Broker,
    topology: &Topology,
    data_dir: &Path,
) -> anyhow::Result<Option<Need>> {
    let connection = broker.connect("audrey-reporting-startup").await?;
    let queue_exists = topology.queue_exists(&connection).await?;
    let _ = connection.close(200, "checked".into()).await;
    let store_exists = data_dir.join("CURRENT").is_file();
    Ok(match (store_exists, queue_exists) {
        (false, _) => Some(Need::Empty),
        (true, false) => Some(Need::Gap),
        (true, true) => None,
    })
}

/// Fetches a checkpoint of `peer`'s store into `data_dir` (see the module
/// documentation). Retries every few seconds until it succeeds: a peer
/// restarting is no reason to start with missing events.
pub async fn from_peer(
    broker: &Broker,
    topology: &Topology,
    peer: &str,
    token: Option<&str>,
    ca_file: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    // A CA file that cannot be read is a mistake to say now, not a retry.
    let agent = http_client::agent(
        ca_file,
        http_client::Statuses::AreErrors,
        Some(Duration::from_secs(180)),
    )?;
    let connection = broker.connect("audrey-reporting-bootstrap").await?;
    let channel = connection.create_channel().await?;
    topology
        .declare(&channel)
        .await
        .context("declaring this replica's queue")?;
    let _ = connection.close(200, "declared".into()).await;
    let barrier = format!("{:016x}", rand::random::<u64>());
    let publisher = Publisher::connect_to(broker, topology).await?;
    publisher
        .publish_barrier(&barrier)
        .await
        .context("publishing the barrier")?;
    let _ = publisher.close().await;
    info!(peer, barrier, "fetching a checkpoint of the peer's store");
    loop {
        let (agent, peer, token, data_dir, barrier) = (
            agent.clone(),
            peer.to_owned(),
            token.map(str::to_owned),
            data_dir.to_owned(),
            barrier.clone(),
        );
        let fetched = tokio::task::spawn_blocking(move || {
            fetch(&agent, &peer, token.as_deref(), &barrier, &data_dir)
        })
        .await?;
        match fetched {
            Ok(bytes) => {
                info!(bytes, "started from the peer's checkpoint");
                return Ok(());
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "fetching the checkpoint failed; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// One attempt: the manifest, then each file in chunks, into a directory
/// beside `data_dir` that replaces it once complete. Returns the bytes
/// fetched.
fn fetch(
    agent: &ureq::Agent,
    peer: &str,
    token: Option<&str>,
    barrier: &str,
    data_dir: &Path,
) -> anyhow::Result<u64> {
    let get = |url: &str| {
        let mut request = agent.get(url);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        request.header("Accept", "application/json").call()
    };
    let base = peer.trim_end_matches('/');
    let mut answer = get(&format!("{base}/replication/checkpoint?barrier={barrier}"))
        .with_context(|| format!("asking {base} for a checkpoint"))?;
    let manifest: Manifest = serde_json::from_slice(&answer.body_mut().read_to_vec()?)
        .context("reading the checkpoint's manifest")?;
    let partial = sibling(data_dir, "bootstrap");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    let mut total = 0;
    for file in &manifest.files {
        let mut out = std::fs::File::create(partial.join(&file.name))?;
        let mut written = 0;
        while written < file.bytes {
            let url = format!(
                "{base}/replication/checkpoint/{}/{}?offset={written}",
                manifest.checkpoint, file.name
            );
            let chunk = get(&url)?.body_mut().read_to_vec()?;
            if chunk.is_empty() {
                break;
            }
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        if written != file.bytes {
            bail!(
                "{} is {written} bytes, the peer said {}",
                file.name,
                file.bytes
            );
        }
        out.sync_all()?;
        total += written;
    }
    if data_dir.exists() {
        let kept = sibling(
            data_dir,
            &format!("replaced-{}", audrey_core::Timestamp::now().nanos()),
        );
        std::fs::rename(data_dir, &kept)?;
        warn!(kept = %kept.display(), "the old store is kept beside the new one");
    }
    std::fs::rename(&partial, data_dir)?;
    Ok(total)
}

/// `data` → `data.<suffix>`, in the same directory.
fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    data_dir.with_file_name(name)
}
