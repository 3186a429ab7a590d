//! The command line. Every option of `serve` has an `AUDREY_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use audrey_consumer::connect::DEFAULT_AMQP_URL;
use audrey_consumer::ingest::{DEFAULT_BATCH_SIZE, DEFAULT_PREFETCH};
use audrey_consumer::topology::{
    DEFAULT_DEAD_LETTER_EXCHANGE, DEFAULT_DEAD_LETTER_QUEUE, DEFAULT_EXCHANGE, DEFAULT_QUEUE,
};

/// `--replica-queue-expires`'s default, as the command line shows it.
const DEFAULT_REPLICA_QUEUE_EXPIRES: HumanDuration =
    HumanDuration(audrey_consumer::topology::DEFAULT_REPLICA_QUEUE_EXPIRES);
use audrey_core::contract::{SourcePattern, DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_LIMIT};
use audrey_core::domain::HumanDuration;
use audrey_core::query::{
    DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS, DEFAULT_HEARTBEAT_TOLERANCE,
    DEFAULT_STALL_AFTER_SECONDS,
};
use audrey_store::retention::{DEFAULT_PRUNE_EVERY, DEFAULT_RETAIN_COMPLETED};

/// `--forget-config-server-after`'s default, as the command line shows it.
const DEFAULT_FORGET_CONFIG_SERVER_AFTER: HumanDuration =
    HumanDuration::from_secs(DEFAULT_FORGET_CONFIG_SERVER_AFTER_SECONDS as u64);

/// `--stall-after`'s default, as the command line shows it.
const DEFAULT_STALL_AFTER: HumanDuration =
    HumanDuration::from_secs(DEFAULT_STALL_AFTER_SECONDS as u64);

#[derive(Debug, Parser)]
#[command(
    name = "audrey-reporting",
    version,
    about = "Reporting for Audrey config servers: AMQP events in, Audrey XML reports and Prometheus metrics out"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "AUDREY_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume events from RabbitMQ into the views and serve reports and metrics.
    Serve(Box<ServeArgs>),
    /// Recompute every view from the event log (after an upgrade changed the projection).
    Rebuild(DataArgs),
    /// Write the accepted event log as JSON Lines, one CloudEvent per line.
    Export(ExportArgs),
    /// Read JSON Lines of CloudEvents into a data directory (decoded, deduplicated, projected as live events).
    Import(ImportArgs),
    /// Publish what config servers would for N deployments: the demo and the load generator.
    Simulate(SimulateArgs),
    /// Block until a deployment is done; exit 0 success, 1 error (a service failed), 2 timeout, 3 stalled, 4 refused.
    Wait(WaitArgs),
}

/// Where the data lives.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Directory of the embedded RocksDB (views, event log, dedup index).
    #[arg(long, env = "AUDREY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// The broker, and the exchange events are published to.
#[derive(Debug, Args, Clone)]
pub struct BrokerArgs {
    /// Broker URL; amqps:// for TLS. The password is never logged. A
    /// RabbitMQ cluster: one URL per node (repeat the flag, or separate with
    /// commas; percent-encode a comma in a password as %2C): the first that
    /// answers is used, and another when its node dies.
    #[arg(
        long,
        env = "AUDREY_AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL,
        value_delimiter = ','
    )]
    pub amqp_url: Vec<String>,
    /// PEM file of the CA that signed the broker's certificate (amqps://), when
    /// it is not in the system's trust store.
    #[arg(long, env = "AUDREY_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// Topic exchange config servers publish to.
    #[arg(long, env = "AUDREY_EXCHANGE", default_value = DEFAULT_EXCHANGE)]
    pub exchange: String,
}

impl BrokerArgs {
    pub fn broker(&self) -> audrey_consumer::Broker {
        audrey_consumer::Broker::cluster(self.amqp_url.clone())
            .with_ca_file(self.amqp_ca_file.as_deref())
    }
}

/// The service's own queues.
#[derive(Debug, Args, Clone)]
pub struct QueueArgs {
    /// This service's queue (a durable quorum queue).
    #[arg(long, env = "AUDREY_QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// Exchange invalid messages are dead-lettered to.
    #[arg(
        long,
        env = "AUDREY_DEAD_LETTER_EXCHANGE",
        default_value = DEFAULT_DEAD_LETTER_EXCHANGE
    )]
    pub dead_letter_exchange: String,
    /// Queue holding dead letters, each with its reason in the `x-audrey-reason` header.
    #[arg(
        long,
        env = "AUDREY_DEAD_LETTER_QUEUE",
        default_value = DEFAULT_DEAD_LETTER_QUEUE
    )]
    pub dead_letter_queue: String,
    /// Run as replica NAME of several (letters, digits, `-`, `_`): a queue
    /// of its own (`<queue>.NAME`) gets every event, and invalid messages are
    /// dead-lettered once by whichever replica is up (README, "Running
    /// several replicas").
    #[arg(long, env = "AUDREY_REPLICA", value_parser = parse_replica_name)]
    pub replica: Option<String>,
    /// A replica's queue unused for this long is deleted by the broker: a
    /// replica away longer starts again from a peer (`--bootstrap-from`).
    #[arg(long, env = "AUDREY_REPLICA_QUEUE_EXPIRES", default_value_t = DEFAULT_REPLICA_QUEUE_EXPIRES, value_parser = parse_at_least_a_second)]
    pub replica_queue_expires: HumanDuration,
}

impl QueueArgs {
    pub fn topology(&self, broker: &BrokerArgs) -> audrey_consumer::Topology {
        let topology = audrey_consumer::Topology {
            exchange: broker.exchange.clone(),
            queue: self.queue.clone(),
            dead_letter_exchange: self.dead_letter_exchange.clone(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            replica: None,
        };
        match &self.replica {
            Some(name) => {
                let mut topology = topology.replica(name);
                if let Some(replica) = &mut topology.replica {
                    replica.queue_expires = self.replica_queue_expires.0;
                }
                topology
            }
            None => topology,
        }
    }
}

/// How large an event may be.
#[derive(Debug, Args, Clone)]
pub struct EventLimitArgs {
    /// Larger events are refused (dead-lettered unread; `import` reports
    /// them): bytes, at most 8 MiB.
    #[arg(
        long,
        env = "AUDREY_MAX_EVENT_BYTES",
        default_value_t = DEFAULT_MAX_EVENT_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1..=MAX_EVENT_BYTES_LIMIT as u64)
    )]
    pub max_event_bytes: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub queues: QueueArgs,
    #[command(flatten)]
    pub limits: EventLimitArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "AUDREY_LISTEN", default_value = audrey_api::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, the server's
    /// certificate first); needs --tls-key. Unset: plain HTTP.
    #[arg(long, env = "AUDREY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "AUDREY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// --bootstrap-from
    /// peer, instead of the public web's roots.
    #[arg(long, env = "AUDREY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Most events applied in one synced RocksDB batch.
    #[arg(long, env = "AUDREY_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Unacknowledged deliveries the broker may send ahead (AMQP prefetch).
    #[arg(long, env = "AUDREY_PREFETCH", default_value_t = DEFAULT_PREFETCH, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// An incomplete deployment without progress for this long is stalled (e.g. 900s, 15m, 1h).
    #[arg(long, env = "AUDREY_STALL_AFTER", default_value_t = DEFAULT_STALL_AFTER, value_parser = parse_at_least_a_second)]
    pub stall_after: HumanDuration,
    /// A config server is down after this many announced heartbeat intervals without one.
    #[arg(long, env = "AUDREY_HEARTBEAT_TOLERANCE", default_value_t = DEFAULT_HEARTBEAT_TOLERANCE, value_parser = parse_positive)]
    pub heartbeat_tolerance: f64,
    /// Accept events only from these sources (CloudEvents `source`; `*`
    /// matches any run of characters, e.g. `/configserver/*`); repeat the
    /// flag or separate with commas. Others are dead-lettered with reason
    /// `untrusted_source`. Unset: every source.
    #[arg(long, env = "AUDREY_TRUSTED_SOURCE", value_delimiter = ',')]
    pub trusted_source: Vec<SourcePattern>,
    /// A config server not heard from for this long leaves the reports and
    /// the metrics, and its row and last heartbeat leave the store.
    #[arg(long, env = "AUDREY_FORGET_CONFIG_SERVER_AFTER", default_value_t = DEFAULT_FORGET_CONFIG_SERVER_AFTER, value_parser = parse_at_least_a_second)]
    pub forget_config_server_after: HumanDuration,
    /// A replica whose store is empty, or whose queue the broker deleted
    /// while it was away, starts from a checkpoint of this peer's store
    /// (its base URL, e.g. http://replica-1:8080; the same --api-token).
    #[arg(long, env = "AUDREY_BOOTSTRAP_FROM", requires = "replica")]
    pub bootstrap_from: Option<String>,
    /// When set, /reports/* requires `Authorization: Bearer <token>`.
    #[arg(long, env = "AUDREY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The event log of deployments completed longer ago than this is pruned (their views stay).
    #[arg(long, env = "AUDREY_RETAIN_COMPLETED", default_value_t = DEFAULT_RETAIN_COMPLETED)]
    pub retain_completed: HumanDuration,
    /// How often the retention task runs.
    #[arg(long, env = "AUDREY_PRUNE_EVERY", default_value_t = DEFAULT_PRUNE_EVERY, value_parser = parse_at_least_a_second)]
    pub prune_every: HumanDuration,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// File to write; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
}

/// What to do with a line that is not a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnInvalid {
    /// Report it (with its line number) and import the rest.
    Skip,
    /// Report every invalid line and import nothing.
    Refuse,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// JSON Lines file to read; `-` for standard input.
    #[arg(long, short, default_value = "-")]
    pub input: PathBuf,
    /// What to do with invalid lines.
    #[arg(long, value_enum, default_value = "refuse")]
    pub on_invalid: OnInvalid,
    #[command(flatten)]
    pub limits: EventLimitArgs,
}

/// `simulate`: the stream's shape, its pace, and the broker.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Deployments to simulate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub deployments: u32,
    /// Instances per deployment.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub instances: u32,
    /// Services per instance.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub services: u32,
    /// Most events published per second (real time).
    #[arg(long, default_value_t = 500.0, value_parser = parse_positive)]
    pub rate: f64,
    /// Probability that a service run fails (half of the failed runs are retried).
    #[arg(long, default_value_t = 0.1, value_parser = parse_fraction)]
    pub failure_rate: f64,
    /// Probability that an instance's agent gives up (stops contacting): its deployment stays incomplete and stalls.
    #[arg(long, default_value_t = 0.1, value_parser = parse_fraction)]
    pub give_up_rate: f64,
    /// Fraction of the deployments Conductor deletes at the end.
    #[arg(long, default_value_t = 0.1, value_parser = parse_fraction)]
    pub delete_rate: f64,
    /// Config servers; each deployment is handled by one, and each sends heartbeats.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub config_servers: u32,
    /// Heartbeat interval of each config server, in simulated time (whole seconds).
    #[arg(long, default_value = "10s", value_parser = parse_whole_seconds)]
    pub heartbeat_interval: u32,
    /// Same seed, same stream (and, with --reuse-ids, the same ids).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Publish the seed's own UUIDs and event ids; by default every run gets fresh ones, so a second run adds deployments instead of duplicates the service ignores.
    #[arg(long)]
    pub reuse_ids: bool,
    /// Time compression: simulated seconds per real second.
    #[arg(long, default_value_t = 60.0, value_parser = parse_positive)]
    pub speed: f64,
    /// The service's --stall-after, to say how many deployments will be stalled.
    #[arg(long, env = "AUDREY_STALL_AFTER", default_value_t = DEFAULT_STALL_AFTER)]
    pub stall_after: HumanDuration,
}

/// `wait`: which deployment, where to ask, for how long.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The deployment's uuid.
    #[arg(value_parser = audrey_core::DeploymentId::parse)]
    pub deployment: audrey_core::DeploymentId,
    /// Give up (exit 2) after this long (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m")]
    pub timeout: HumanDuration,
    /// Base URL of a running audrey-reporting.
    #[arg(long, env = "AUDREY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The service's --api-token, when it has one.
    #[arg(long, env = "AUDREY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// CA certificates (PEM) to trust for an https:// --url, instead of
    /// the public web's roots.
    #[arg(long, env = "AUDREY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// One line for people, or one JSON object (with the last report) for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: WaitFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitFormat {
    Text,
    Json,
}

/// A replica's name: part of a queue name, so letters, digits, `-`, `_`.
pub fn parse_replica_name(text: &str) -> Result<String, String> {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if text.is_empty() || text.len() > 64 || !plain {
        return Err(format!(
            "`{text}` is not a replica name (1 to 64 letters, digits, `-` or `_`)"
        ));
    }
    Ok(text.to_owned())
}

/// A probability: a number from 0 to 1.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("`{text}` is not a number from 0 to 1")),
    }
}

/// A finite number above 0.
pub fn parse_positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a number above 0")),
    }
}

/// A duration of at least one second (a zero would make a loop spin).
pub fn parse_at_least_a_second(text: &str) -> Result<HumanDuration, String> {
    let d: HumanDuration = text.parse()?;
    if d.0.as_secs_f64() < 1.0 {
        return Err(format!("`{text}` is shorter than one second"));
    }
    Ok(d)
}

/// A duration of at least one second, in whole seconds (`10`, `10s`, `1m`).
pub fn parse_whole_seconds(text: &str) -> Result<u32, String> {
    let d = text.parse::<HumanDuration>()?.0;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > u64::from(u32::MAX) {
        return Err(format!("`{text}` is not a whole number of seconds from 1s"));
    }
    Ok(d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, String> {
        let mut argv = vec!["audrey-reporting", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Serve(args),
                ..
            }) => Ok(*args),
            Ok(_) => Err("not the serve subcommand".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn values_that_make_no_sense_are_refused_with_a_reason() {
        for (args, says) in [
            (vec!["--heartbeat-tolerance=-1"], "not a number above 0"),
            (vec!["--heartbeat-tolerance", "NaN"], "not a number above 0"),
            (vec!["--heartbeat-tolerance", "inf"], "not a number above 0"),
            (vec!["--prune-every", "0"], "shorter than one second"),
            (vec!["--stall-after", "0s"], "shorter than one second"),
            (vec!["--max-event-bytes", "0"], "0 is not in 1..=8388608"),
            (vec!["--max-event-bytes", "9000000"], "not in 1..=8388608"),
            (vec!["--retain-completed", "soon"], "not a duration"),
        ] {
            let error = serve(&args).unwrap_err();
            assert!(error.contains(says), "{args:?}: {error}");
        }
        let ok = serve(&["--heartbeat-tolerance", "2.5", "--prune-every", "1s"]).unwrap();
        assert_eq!(ok.heartbeat_tolerance, 2.5);
    }

    #[test]
    fn defaults_are_the_libraries_own() {
        let args = serve(&[]).unwrap();
        assert_eq!(args.stall_after.as_secs_f64(), DEFAULT_STALL_AFTER_SECONDS);
        assert_eq!(args.heartbeat_tolerance, DEFAULT_HEARTBEAT_TOLERANCE);
        assert_eq!(args.limits.max_event_bytes, DEFAULT_MAX_EVENT_BYTES as u64);
        assert_eq!(args.queues.queue, DEFAULT_QUEUE);
        assert_eq!(args.retain_completed, DEFAULT_RETAIN_COMPLETED);
    }

    #[test]
    fn simulate_takes_no_queue_names_it_would_ignore() {
        let parsed = Cli::try_parse_from(["audrey-reporting", "simulate", "--queue", "q"]);
        assert!(parsed.is_err());
    }
}
