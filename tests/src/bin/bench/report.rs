//! The bench's figures: percentiles, the one table, the machine it ran on, and the
//! memory readings (process RSS, a container's cgroup).

use std::process::Command;
use std::time::Duration;

/// Percentiles of a set of durations.
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub n: usize,
}

pub fn stats(mut samples: Vec<Duration>) -> Stats {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        n: samples.len(),
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The table, printed once at the end (markdown, so the README can show it as is).
#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    /// A measured latency.
    pub fn timed(&mut self, what: &str, s: &Stats, target: &str) {
        self.rows.push([
            what.into(),
            ms(s.p50),
            ms(s.p99),
            s.n.to_string(),
            target.into(),
        ]);
    }

    /// A single figure.
    pub fn figure(&mut self, what: &str, value: String, n: usize, target: &str) {
        self.rows.push([
            what.into(),
            value,
            String::new(),
            n.to_string(),
            target.into(),
        ]);
    }

    pub fn print(&self) {
        println!("| measure | p50 (or value) | p99 | n | target / reference |");
        println!("|---|---:|---:|---:|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

/// One line about the machine: CPU, cores, memory, kernel, Docker, load.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{model}, {} cores, {mem_gib:.0} GiB RAM, Linux {}, Docker {}, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        output("uname", &["-r"]),
        output("docker", &["version", "-f", "{{.Server.Version}}"]),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A container's memory cgroup (v1): `(usage_in_bytes, rss from memory.stat)`.
pub fn cgroup_memory(container_id: &str) -> Option<(u64, u64)> {
    let dir = format!("/sys/fs/cgroup/memory/docker/{container_id}");
    let usage = std::fs::read_to_string(format!("{dir}/memory.usage_in_bytes"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let rss = std::fs::read_to_string(format!("{dir}/memory.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("total_rss "))
        .and_then(|v| v.trim().parse().ok())?;
    Some((usage, rss))
}

/// The full id and init pid of a sandbox's container (by its name).
pub fn container(name: &str) -> Option<(String, u32)> {
    let out = sandboxd_e2e::docker_inspect(name, "{{.Id}} {{.State.Pid}}")?;
    let (id, pid) = out.split_once(' ')?;
    Some((id.to_owned(), pid.parse().ok()?))
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}
