//! The real `audrey-reporting` binary, built by cargo and run as a child
//! process, exactly as an operator runs it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use audrey_consumer::Topology;

use audrey_testkit::http::Client;
use audrey_testkit::metrics::metric_sum;

/// The workspace root (the bench package sits in `bench/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_owned()
}

/// Builds `audrey-reporting` in the release profile with cargo (a no-op
/// when it is up to date) and returns the path of the binary.
pub fn build() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "-p", "audrey-reporting"]);
    // `cargo run` gave this process the bench package's CARGO_PKG_*,
    // CARGO_MANIFEST_* and the like; some build scripts (ring's) rerun when
    // those change, so the nested build would rebuild them and the next
    // plain build rebuild them back. Hand cargo a plain environment.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    command.arg("--release");
    let started = Instant::now();
    let status = command
        .status()
        .context("running cargo build -p audrey-reporting")?;
    if !status.success() {
        bail!("cargo build -p audrey-reporting failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("release").join("audrey-reporting");
    if !binary.exists() {
        bail!("cargo built no {}", binary.display());
    }
    eprintln!(
        "[bench] service binary {} (cargo build took {:.1} s)",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}

/// A running `audrey-reporting serve`. Killed if dropped while running.
pub struct Service {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Service {
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        amqp_url: &str,
        topology: &Topology,
    ) -> anyhow::Result<Service> {
        let port = audrey_testkit::wait::free_port();
        let log = data_dir.with_extension(format!("log.{port}"));
        let log_file = File::create(&log)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--amqp-url", amqp_url])
            .args(["--exchange", &topology.exchange, "--queue", &topology.queue])
            .args(["--dead-letter-exchange", &topology.dead_letter_exchange])
            .args(["--dead-letter-queue", &topology.dead_letter_queue])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Service { child, port, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /health says ready (store open, AMQP connected).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the service exited ({status}) before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            let mut client = Client::new(self.port);
            if client.get("/health", None).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the service was not ready within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Events the service has applied plus those it found duplicate.
    pub fn events_settled(&self, client: &mut Client) -> anyhow::Result<f64> {
        let metrics = client.get("/metrics", None)?.text();
        Ok(metric_sum(&metrics, "audrey_events_consumed_total")
            + metric_sum(&metrics, "audrey_events_duplicate_total"))
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), ["VmHWM:"]).map(|[kib]| kib * 1024)
    }

    /// The service's resident memory now, by kind, and its peak so far:
    /// logged after each phase, it says which phase sets the peak and
    /// whether the peak is the heap or mapped files (the binary's code).
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let fields = ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"];
        let [resident_kib, peak_kib, anonymous_kib, file_kib] =
            proc_status_kib(self.pid(), fields)?;
        Ok(Memory {
            resident_kib,
            peak_kib,
            anonymous_kib,
            file_kib,
        })
    }

    /// Waits until the service has used under 5 % of a core for a whole
    /// second (RocksDB done compacting what it was opened on), or until
    /// `timeout`; says how long it waited and whether it became quiet.
    /// Measurements taken while it compacts a store just built would count
    /// that work against the first requests.
    pub fn wait_quiet(&self, timeout: Duration) -> anyhow::Result<(Duration, bool)> {
        let started = Instant::now();
        let mut before = self.cpu_time()?;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.cpu_time()?;
            if (now - before).as_secs_f64() < 0.05 {
                return Ok((started.elapsed(), true));
            }
            if started.elapsed() > timeout {
                return Ok((started.elapsed(), false));
            }
            before = now;
        }
    }

    /// CPU time (user + system) used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    /// SIGTERM (the service finishes its batch and flushes the store), then
    /// waits for it to exit successfully.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the service exited with {status} on SIGTERM; log:\n{}",
                        self.log_text()
                    );
                }
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the service did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `fields` of `/proc/<pid>/status`, in KiB, from one read of it (one
/// moment: a peak read apart from the resident size could be older).
fn proc_status_kib<const N: usize>(pid: u32, fields: [&str; N]) -> anyhow::Result<[u64; N]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut values = [0; N];
    for (value, field) in values.iter_mut().zip(fields) {
        *value = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    }
    Ok(values)
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: resident now.
    pub resident_kib: u64,
    /// VmHWM: the most resident so far (what the memory goal bounds).
    pub peak_kib: u64,
    /// RssAnon: the heaps (Rust's allocator, RocksDB's memtables and
    /// block cache, thread stacks).
    pub anonymous_kib: u64,
    /// RssFile: mapped files, mostly the binary's own code and libraries.
    pub file_kib: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        write!(
            f,
            "resident {:.1} MiB (heap {:.1}, files {:.1}), peak so far {:.1} MiB",
            mib(self.resident_kib),
            mib(self.anonymous_kib),
            mib(self.file_kib),
            mib(self.peak_kib)
        )
    }
}

/// utime + stime of a process, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, utime 14 and stime 15 (1-based, overall).
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("no utime/stime")?;
    let hz = clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks as f64 / hz))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes of every file under `dir` (their lengths).
pub fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// `perf record` attached to a process while a benchmark phase runs (with
/// `--perf-dir`): CPU-clock samples with DWARF call graphs, for
/// `perf report -i DIR/NAME.perf.data`. It perturbs the figures: profile
/// in a separate run.
pub struct Perf(Option<Child>);

impl Perf {
    pub fn attach(dir: Option<&Path>, pid: u32, name: &str) -> Perf {
        let Some(dir) = dir else { return Perf(None) };
        let output = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "499"])
            .args(["--call-graph", "dwarf,32768", "-p", &pid.to_string(), "-o"])
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                eprintln!("[perf] recording {} into {}", pid, output.display());
                // perf needs a moment to attach.
                std::thread::sleep(Duration::from_millis(300));
                Perf(Some(child))
            }
            Err(e) => {
                eprintln!("[perf] could not start perf: {e}");
                Perf(None)
            }
        }
    }

    pub fn stop(mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            Perf(Some(child)).stop();
        }
    }
}

/// CPU use of the whole machine and of the broker over an interval, to
/// tell which resource a figure is bounded by.
pub struct CpuWatch {
    machine: (u64, u64),
    broker: Option<(u32, Duration)>,
    started: std::time::Instant,
}

/// What a [`CpuWatch`] saw: cores' worth of CPU busy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub machine_cores: f64,
    /// RabbitMQ's Erlang VM (`beam.smp`), when found.
    pub broker_cores: Option<f64>,
}

impl CpuUse {
    pub fn describe(&self) -> String {
        let machine = format!(
            "machine {:.2} of {} cores busy",
            self.machine_cores,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        match self.broker_cores {
            Some(broker) => format!("broker {broker:.2} cores, {machine}"),
            None => machine,
        }
    }
}

impl CpuWatch {
    pub fn start() -> CpuWatch {
        CpuWatch {
            machine: machine_ticks().unwrap_or((0, 0)),
            broker: broker_pid().and_then(|pid| Some((pid, cpu_time(pid).ok()?))),
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine_cores = if total > self.machine.1 {
            (busy - self.machine.0) as f64 / (total - self.machine.1) as f64 * cores
        } else {
            0.0
        };
        let broker_cores = self.broker.and_then(|(pid, before)| {
            let used = cpu_time(pid).ok()?.checked_sub(before)?;
            Some(used.as_secs_f64() / self.started.elapsed().as_secs_f64())
        });
        CpuUse {
            machine_cores,
            broker_cores,
        }
    }
}

/// (busy, total) jiffies of all CPUs, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// The pid of RabbitMQ's Erlang VM on this machine, if any.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}
