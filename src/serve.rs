//! `serve`: the consumer and the API over one store, until SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

use audrey_api::{ApiSettings, ApiState, Metrics};
use audrey_consumer::{AppliedBatch, IngestConfig, Observer};
use audrey_store::{Retention, Store};

use crate::bootstrap;
use crate::cli::ServeArgs;

/// Feeds what the consumer does into the API's metrics and readiness.
struct ConsumerReports(Arc<ApiState>);

impl Observer for ConsumerReports {
    fn connected(&self, connected: bool) {
        self.0.set_amqp_connected(connected);
    }

    fn batch_applied(&self, batch: &AppliedBatch) {
        let metrics = &self.0.metrics;
        for t in &batch.applied_types {
            metrics.event_consumed(*t);
        }
        metrics.duplicates(batch.duplicates as u64);
        metrics.batch_applied(batch.apply_duration.as_secs_f64());
        for lag in &batch.lags_seconds {
            metrics.lag(*lag);
        }
        for completion in &batch.completions {
            metrics.completed(completion);
        }
        self.0.views_changed();
    }

    fn dead_lettered(&self, reason: &'static str) {
        self.0.metrics.dead_lettered(reason);
    }

    fn refused(&self, reason: &'static str) {
        self.0.metrics.refused(reason);
    }

    fn barrier_passed(&self, id: &str) {
        self.0.replication.barrier_passed(id);
    }

    fn waiting(&self, messages: u32) {
        self.0.replication.set_waiting(messages);
        self.0.metrics.set_waiting(messages);
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let broker = args.broker.broker();
    let topology = args.queues.topology(&args.broker);
    if topology.replica.is_some() {
        let started = tokio::select! {
            started = start_replica(&args, &broker, &topology) => started,
            _ = wait_for_signal() => return Ok(()),
        };
        started?;
    }
    let data_dir = args.data.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir))
        .await?
        .with_context(|| format!("opening the store in {}", args.data.data_dir.display()))?;
    let store = Arc::new(store);
    let state = Arc::new(ApiState::new(
        Arc::clone(&store),
        Arc::new(Metrics::new()),
        ApiSettings {
            stall_after_seconds: args.stall_after.as_secs_f64(),
            heartbeat_tolerance: args.heartbeat_tolerance,
            forget_config_server_after_seconds: args.forget_config_server_after.as_secs_f64(),
            api_token: args.api_token.clone(),
        },
    ));
    // A certificate that cannot be used is said before anything listens.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            audrey_api::tls::server_config(cert, key)
                .context("setting up HTTPS (--tls-cert, --tls-key)")?,
        ),
        _ => None,
    };
    let listener = audrey_api::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    info!(listen = %listener.local_addr()?, https = tls.is_some(), data_dir = %args.data.data_dir.display(), "serving reports");

    let (stop, stopped) = watch::channel(false);
    let stopping = Arc::clone(&state);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: finishing the batch in flight");
        let _ = stop.send(true);
        // Long-polls answer now rather than hold the shutdown.
        stopping.stop();
    });

    let mut api_stopped = stopped.clone();
    let stop_watch = stopped.clone();
    let api_shutdown = async move {
        let _ = api_stopped.wait_for(|s| *s).await;
    };
    let api = match tls {
        Some(config) => tokio::spawn(audrey_api::tls::serve(
            listener,
            Arc::clone(&state),
            config,
            api_shutdown,
        )),
        None => tokio::spawn(audrey_api::serve(
            listener,
            Arc::clone(&state),
            api_shutdown,
        )),
    };
    let consumer = tokio::spawn(audrey_consumer::run(
        IngestConfig {
            broker,
            topology,
            prefetch: args.prefetch,
            batch_size: args.batch_size as usize,
            checks: audrey_consumer::delivery::Checks {
                max_bytes: args.limits.max_event_bytes as usize,
                trusted: audrey_core::contract::TrustedSources::new(args.trusted_source.clone()),
            },
            ..IngestConfig::default()
        },
        Arc::clone(&store),
        Arc::new(ConsumerReports(Arc::clone(&state))),
        stopped,
    ));

    let retention = tokio::spawn(prune_periodically(
        Arc::clone(&store),
        Retention {
            retain_completed_seconds: args.retain_completed.as_secs_f64(),
            forget_config_server_after_seconds: args.forget_config_server_after.as_secs_f64(),
        },
        args.prune_every.0,
        stop_watch,
    ));

    let consumed = consumer.await.context("the consumer task panicked")?;
    api.await.context("the API task panicked")?;
    retention.await.context("the retention task panicked")?;
    tokio::task::spawn_blocking(move || store.flush())
        .await?
        .context("flushing the store")?;
    consumed.context("the consumer failed")?;
    info!("stopped cleanly");
    Ok(())
}

/// Before a replica opens its store: whether it missed events (its store
/// is empty, or its queue is gone), and if so, its store from a peer.
async fn start_replica(
    args: &ServeArgs,
    broker: &audrey_consumer::Broker,
    topology: &audrey_consumer::Topology,
) -> anyhow::Result<()> {
    let data_dir = &args.data.data_dir;
    let need = loop {
        match bootstrap::need(broker, topology, data_dir).await {
            Ok(need) => break need,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "waiting for the broker");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    match (need, &args.bootstrap_from) {
        (Some(_), Some(peer)) => {
            bootstrap::from_peer(
                broker,
                topology,
                peer,
                args.api_token.as_deref(),
                args.ca_file.as_deref(),
                data_dir,
            )
            .await
        }
        (Some(bootstrap::Need::Gap), None) => anyhow::bail!(
            "this replica's queue {} is gone (deleted by the broker after --replica-queue-expires \
             unused, or lost with it): the events published meanwhile are missing from its views. \
             Start it with --bootstrap-from <a running replica's URL>",
            topology.queue
        ),
        (Some(bootstrap::Need::Empty), None) => {
            info!("a new replica with an empty store: starting from its own queue only (give --bootstrap-from to start from a peer's views)");
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Retention: every `every`, prunes the event log of deleted deployments
/// and of those completed long enough ago, and forgets silent config
/// servers (see `Store::prune`).
async fn prune_periodically(
    store: Arc<Store>,
    retention: Retention,
    every: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let store = Arc::clone(&store);
        let now = audrey_core::Timestamp::now();
        let pass = tokio::task::spawn_blocking(move || store.prune(now, &retention)).await;
        match pass {
            Ok(Ok(pruned)) if pruned.events > 0 || pruned.config_servers > 0 => info!(
                deployments = pruned.deployments,
                events = pruned.events,
                config_servers = pruned.config_servers,
                "pruned the event log"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "pruning the event log failed"),
            Err(error) => tracing::warn!(%error, "the retention task panicked"),
        }
    }
}
