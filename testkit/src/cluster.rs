//! A RabbitMQ cluster of a test's own: nodes on loopback ports nothing else
//! uses, with node names, data directories and an Erlang cookie of their
//! own, started by `scripts/rabbitmq-cluster.sh` (which says how the nodes
//! are kept apart from the shared broker on 5672, and what each step
//! costs). Nodes are numbered from 1 (`t1`, `t2`, ...).
//!
//! Whatever happens to the test, the nodes go: dropping the [`Cluster`]
//! SIGKILLs each node by the pid RabbitMQ wrote to its own pid file and
//! deletes the cluster's directory; and should the test process itself be
//! killed, a watchdog the script starts does the same once it is gone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// The script that starts, stops and kills the nodes.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq-cluster.sh")
}

/// A running cluster; dropping it kills its nodes and deletes their data.
#[derive(Debug)]
pub struct Cluster {
    /// Data, logs, pid files and the cookie of every node.
    base: PathBuf,
    /// Node names are `<name>-tN@localhost`.
    name: String,
    /// AMQP port of t1; tN's is `first_port + N - 1`.
    first_port: u16,
    nodes: usize,
}

/// Where a queue's replicas are, as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMembers {
    /// The node of the quorum queue's leader, if one is known.
    pub leader: Option<usize>,
    /// The nodes holding a replica, sorted.
    pub members: Vec<usize>,
    /// The members that are up, sorted.
    pub online: Vec<usize>,
}

impl Cluster {
    /// Starts `nodes` nodes and joins them into one cluster (about 30 s for
    /// three on two cores).
    pub fn start(nodes: usize) -> anyhow::Result<Cluster> {
        assert!((1..=9).contains(&nodes), "1 to 9 nodes");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("audrey-{}-{:x}", std::process::id(), nanos % 0xfffff);
        let cluster = Cluster {
            base: std::env::temp_dir().join(format!("{name}-rabbit")),
            first_port: free_port_range(nodes, nanos)?,
            name,
            nodes,
        };
        let started = Instant::now();
        cluster
            .run(&["start"])
            .context("starting the RabbitMQ cluster")?;
        eprintln!(
            "cluster {} ({} nodes from port {}) formed in {:.1} s",
            cluster.name,
            nodes,
            cluster.first_port,
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// `1..=nodes()`.
    pub fn all(&self) -> Vec<usize> {
        (1..=self.nodes).collect()
    }

    /// The Erlang node name of node `node`.
    pub fn node_name(&self, node: usize) -> String {
        self.check(node);
        format!("{}-t{node}@localhost", self.name)
    }

    /// The node with this Erlang name, if it is one of ours.
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.all().into_iter().find(|n| self.node_name(*n) == name)
    }

    /// The AMQP port of node `node`.
    pub fn amqp_port(&self, node: usize) -> u16 {
        self.check(node);
        self.first_port + (node - 1) as u16
    }

    /// The node listening on AMQP port `port`, if one of ours does.
    pub fn node_with_port(&self, port: u16) -> Option<usize> {
        self.all().into_iter().find(|n| self.amqp_port(*n) == port)
    }

    /// An AMQP URL of node `node` (user guest: allowed from loopback).
    pub fn url(&self, node: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port(node))
    }

    /// Every node's URL, t1 first.
    pub fn urls(&self) -> Vec<String> {
        self.all().into_iter().map(|n| self.url(n)).collect()
    }

    /// The OS pid of node `node`'s Erlang VM, while it runs.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.check(node);
        let text = std::fs::read_to_string(self.base.join(format!("t{node}/pid"))).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.contains("beam").then_some(pid)
    }

    /// Whether node `node`'s Erlang VM runs.
    pub fn is_running(&self, node: usize) -> bool {
        self.pid(node).is_some()
    }

    /// SIGKILLs node `node` (by its own pid) and waits until it is gone.
    pub fn kill(&self, node: usize) {
        self.check(node);
        if let Err(error) = self.run(&["kill", &format!("t{node}")]) {
            panic!("killing t{node}: {error:#}");
        }
        assert!(!self.is_running(node), "t{node} survived its SIGKILL");
    }

    /// Starts node `node` again with its data; it rejoins the cluster by
    /// itself (about 10 s).
    pub fn start_node(&self, node: usize) -> anyhow::Result<()> {
        self.check(node);
        self.run(&["start-node", &format!("t{node}")])
            .with_context(|| format!("starting t{node} again"))?;
        Ok(())
    }

    /// `rabbitmqctl -n <node's name> ARGS` (never the shared broker); its
    /// standard output.
    pub fn ctl(&self, node: usize, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["ctl".to_owned(), format!("t{node}")];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.run(&all)
    }

    /// `rabbitmq-queues -n <node's name> ARGS`; its standard output.
    pub fn queues(&self, node: usize, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["queues".to_owned(), format!("t{node}")];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.run(&all)
    }

    /// A node that runs (the first), to ask the cluster through.
    pub fn any_running(&self) -> Option<usize> {
        self.all().into_iter().find(|n| self.is_running(*n))
    }

    /// The row of `queue` in `rabbitmqctl list_queues name COLUMNS`, asked
    /// of a running node.
    fn queue_row(&self, queue: &str, columns: &[&str]) -> anyhow::Result<serde_json::Value> {
        let via = self.any_running().ok_or_else(|| anyhow!("no node runs"))?;
        let mut args = vec!["-q", "list_queues", "name"];
        args.extend_from_slice(columns);
        args.extend_from_slice(&["--formatter", "json"]);
        crate::broker::queue_row_in(&self.ctl(via, &args)?, queue)
    }

    /// Where the replicas of `queue` are and which one leads, asked of
    /// a running node (`list_queues name leader members online`).
    pub fn queue_members(&self, queue: &str) -> anyhow::Result<QueueMembers> {
        let row = self.queue_row(queue, &["leader", "members", "online"])?;
        let nodes = |key: &str| {
            let mut found: Vec<usize> = row[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| self.node_named(n.as_str()?))
                .collect();
            found.sort_unstable();
            found
        };
        Ok(QueueMembers {
            leader: row["leader"].as_str().and_then(|n| self.node_named(n)),
            members: nodes("members"),
            online: nodes("online"),
        })
    }

    /// Messages `queue` holds, ready and unacknowledged together, asked of
    /// a running node: 0 once its consumer has settled everything.
    pub fn queue_messages(&self, queue: &str) -> anyhow::Result<u64> {
        let row = self.queue_row(queue, &["messages"])?;
        row["messages"]
            .as_u64()
            .ok_or_else(|| anyhow!("no message count for {queue}: {row}"))
    }

    /// What the cluster holds for `queue` and its consumers, as text for a
    /// failure message: the queue's ready and unacknowledged messages,
    /// leader and online replicas, and each channel's unacknowledged
    /// deliveries. When a queue says "unacknowledged" but no channel
    /// holds them, the deliveries were lost between the queue and its
    /// consumer.
    pub fn queue_diagnostics(&self, queue: &str) -> String {
        let Some(via) = self.any_running() else {
            return "no node runs".to_owned();
        };
        let queues = self.ctl(
            via,
            &[
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
                "leader",
                "online",
            ],
        );
        let channels = self.ctl(
            via,
            &[
                "-q",
                "list_channels",
                "name",
                "consumer_count",
                "messages_unacknowledged",
                "prefetch_count",
            ],
        );
        let show = |r: anyhow::Result<String>| r.unwrap_or_else(|e| format!("{e:#}"));
        format!(
            "queue {queue}, asked of t{via}:\n{}\nchannels:\n{}",
            show(queues),
            show(channels)
        )
    }

    /// The nodes holding the client connections named `connection_name`
    /// (the AMQP `connection_name` client property), asked of a running
    /// node (`list_connections port client_properties`).
    pub fn connection_nodes(&self, connection_name: &str) -> anyhow::Result<Vec<usize>> {
        let via = self.any_running().ok_or_else(|| anyhow!("no node runs"))?;
        let text = self.ctl(
            via,
            &[
                "-q",
                "list_connections",
                "port",
                "client_properties",
                "--formatter",
                "json",
            ],
        )?;
        let rows: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("list_connections said {text:?}"))?;
        let named = |row: &serde_json::Value| {
            row["client_properties"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p[0] == "connection_name" && p[2] == connection_name)
        };
        let mut nodes: Vec<usize> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| named(r))
            .filter_map(|r| self.node_with_port(u16::try_from(r["port"].as_u64()?).ok()?))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        Ok(nodes)
    }

    /// The last lines of node `node`'s log, for failure messages.
    pub fn log_tail(&self, node: usize, lines: usize) -> String {
        let dir = self.base.join(format!("t{node}/log"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return String::new();
        };
        let mut out = String::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!("== {}\n", path.display()));
                out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }

    fn check(&self, node: usize) {
        assert!(
            (1..=self.nodes).contains(&node),
            "no node {node} in a cluster of {}",
            self.nodes
        );
    }

    /// Runs the script with this cluster's environment; its standard
    /// output, or an error with both outputs.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output: Output = Command::new("bash")
            .arg(script())
            .args(args)
            .env("RABBIT_CLUSTER_BASE", &self.base)
            .env("RABBIT_CLUSTER_NAME", &self.name)
            .env("RABBIT_CLUSTER_PORT", self.first_port.to_string())
            .env("RABBIT_CLUSTER_NODES", self.nodes.to_string())
            .env("RABBIT_CLUSTER_OWNER_PID", std::process::id().to_string())
            .env_remove("RABBIT_CLUSTER_COOKIE")
            .stdin(std::process::Stdio::null())
            .output()
            .context("running rabbitmq-cluster.sh")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "rabbitmq-cluster.sh {} failed ({}):\n{}\n{}",
                args.join(" "),
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["destroy"]);
        // Should the script have failed: the same, by hand, own pids only.
        for node in self.all() {
            if let Some(pid) = self.pid(node) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.all().iter().any(|n| self.is_running(*n)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A first AMQP port such that the `nodes` ports from it, and their
/// distribution ports (20000 above), are free. Below 32768, Linux's
/// ephemeral range, so that no outgoing connection takes one meanwhile.
fn free_port_range(nodes: usize, seed: u32) -> anyhow::Result<u16> {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let span = 2000 - nodes as u32;
    let start = (std::process::id().wrapping_mul(7919) ^ seed) % span;
    for step in 0..span {
        let first = 10_000 + ((start + step * 37) % span) as u16;
        let ports = (0..nodes as u16).map(|i| first + i);
        if ports.clone().all(|p| free(p) && free(p + 20_000)) {
            return Ok(first);
        }
    }
    bail!("no free ports for {nodes} nodes between 10000 and 12000")
}
