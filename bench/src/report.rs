//! The benchmark's report: a readable table on stdout and one JSON line
//! (for scripts and the README).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::Plan;

pub struct Report {
    pub scenario: String,
    pub plan: Plan,
    pub latency: Histogram<u64>,
    /// Chunks after the first `client::WARM` of each answer.
    pub warm_latency: Histogram<u64>,
    pub ttfd: Histogram<u64>,
    /// POST sent to first delta read, nothing subtracted.
    pub ttfd_raw: Histogram<u64>,
    /// Whether the upstream connections were warm (`--warm-upstream`),
    /// or cold in a warm service (`--warm-service`), or cold.
    pub upstream_connections: &'static str,
    /// Connections the service opened to the upstream during the run.
    pub upstream_connects: usize,
    pub database: &'static str,
    pub deliveries: u64,
    /// The service's CPU time (user + system) during the run, us.
    pub cpu_us: u64,
    /// The service's minor page faults during the run.
    pub minor_faults: u64,
    pub elapsed: Duration,
    pub failures: Vec<String>,
    pub rss_before: u64,
    pub rss_after: u64,
    pub subscribers: usize,
    /// The subscribers' connections (fewer than `subscribers` when
    /// project sockets carry several threads each).
    pub connections: usize,
    pub stats_before: Value,
    pub stats_after: Value,
    /// Answers in several steps: a posted tool result to the next step's
    /// first delta.
    pub steps: Option<crate::steps::StepFigures>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    pub fn print(&self) {
        let p = |h: &Histogram<u64>, q: f64| ms(h.value_at_quantile(q));
        let per_sub_kib = self.rss_after.saturating_sub(self.rss_before) as f64 / self.subscribers.max(1) as f64;
        let delta = |path: &str| {
            let get = |v: &Value| v.pointer(path).and_then(Value::as_f64).unwrap_or(0.0);
            get(&self.stats_after) - get(&self.stats_before)
        };
        let transactions = delta("/persistence/transactions");
        let rows = delta("/persistence/rows");
        let batches = delta("/persistence/batches");
        let flush_intervals = self.elapsed.as_secs_f64() / 0.05;
        let out = json!({
            "scenario": self.scenario,
            "threads": self.plan.threads,
            "subscribers": self.subscribers,
            "connections": self.connections,
            "project_socket": self.plan.project_socket,
            "chunks": self.plan.chunks,
            "interval_ms": self.plan.interval.as_millis() as u64,
            "in_phase": self.plan.in_phase,
            "latency_ms": {"p50": p(&self.latency, 0.5), "p90": p(&self.latency, 0.9), "p99": p(&self.latency, 0.99), "max": ms(self.latency.max()), "samples": self.latency.len()},
            "warm_latency_ms": {"p50": p(&self.warm_latency, 0.5), "p99": p(&self.warm_latency, 0.99), "max": ms(self.warm_latency.max())},
            "first_delta_added_ms": {"p50": p(&self.ttfd, 0.5), "p99": p(&self.ttfd, 0.99), "max": ms(self.ttfd.max())},
            "first_delta_raw_ms": {"p50": p(&self.ttfd_raw, 0.5), "p99": p(&self.ttfd_raw, 0.99), "max": ms(self.ttfd_raw.max()),
                "upstream_connections": self.upstream_connections,
                "upstream_connects": self.upstream_connects},
            "database": self.database,
            "deliveries_per_s": self.deliveries as f64 / self.elapsed.as_secs_f64(),
            "cpu_us_per_delivery": self.cpu_us as f64 / self.deliveries.max(1) as f64,
            "minor_faults": self.minor_faults,
            "failures": self.failures.len(),
            "rss_kib": {"before": self.rss_before, "after_subscribe": self.rss_after, "per_subscriber": per_sub_kib},
            "persistence": {"transactions": transactions, "batches": batches, "rows": rows,
                "rows_per_batch": if batches > 0.0 { rows / batches } else { 0.0 },
                "last_batch_ms": self.stats_after.pointer("/persistence/last_batch_ms"),
                "flush_intervals_elapsed": flush_intervals},
            "elapsed_s": self.elapsed.as_secs_f64(),
            "steps": self.plan.steps,
            "result_to_next_step_ms": self.steps.as_ref().map(|f| json!({
                "added": {"p50": p(&f.added, 0.5), "p99": p(&f.added, 0.99), "max": ms(f.added.max())},
                "raw": {"p50": p(&f.raw, 0.5), "p99": p(&f.raw, 0.99), "max": ms(f.raw.max())},
                "samples": f.raw.len(), "results_posted": f.results_posted})),
        });
        println!("scenario            {} ({})", self.scenario, self.database);
        println!(
            "threads x subs      {} x {} ({} subscribers)",
            self.plan.threads, self.plan.subscribers, self.subscribers
        );
        if self.plan.project_socket > 0 {
            println!(
                "project sockets     {} WS subscribers per thread on sockets of {} threads: {} connections",
                self.plan.ws_share, self.plan.project_socket, self.connections
            );
        }
        println!("chunks              {} every {} ms", self.plan.chunks, self.plan.interval.as_millis());
        if let Some(f) = &self.steps {
            println!("steps               {} per answer, {} tool results posted", self.plan.steps, f.results_posted);
            println!(
                "result->next delta  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (upstream delay removed, {} samples)",
                p(&f.added, 0.5),
                p(&f.added, 0.99),
                ms(f.added.max()),
                f.added.len()
            );
            println!(
                "result->next delta  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (raw)",
                p(&f.raw, 0.5),
                p(&f.raw, 0.99),
                ms(f.raw.max())
            );
        }
        let posts = if self.plan.in_phase { "all at once (--in-phase)" } else { "spread over one interval" };
        println!("posts               {posts}");
        println!(
            "added latency/chunk p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
            p(&self.latency, 0.5),
            p(&self.latency, 0.9),
            p(&self.latency, 0.99),
            ms(self.latency.max()),
            self.latency.len()
        );
        println!(
            "  after chunk {:<5}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            crate::client::WARM,
            p(&self.warm_latency, 0.5),
            p(&self.warm_latency, 0.99),
            ms(self.warm_latency.max())
        );
        println!(
            "POST->first delta   p50 {:.2} ms  p99 {:.2} ms  (upstream delay removed)",
            p(&self.ttfd, 0.5),
            p(&self.ttfd, 0.99)
        );
        println!(
            "POST->first delta   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (raw, upstream connections {}, {} opened)",
            p(&self.ttfd_raw, 0.5),
            p(&self.ttfd_raw, 0.99),
            ms(self.ttfd_raw.max()),
            self.upstream_connections,
            self.upstream_connects
        );
        println!("deliveries/s        {:.0}", self.deliveries as f64 / self.elapsed.as_secs_f64());
        println!(
            "service CPU         {:.2} us per delivery ({} ms in all, /proc)",
            self.cpu_us as f64 / self.deliveries.max(1) as f64,
            self.cpu_us / 1000
        );
        println!("page faults         {} minor, in the service during the run", self.minor_faults);
        println!("failures            {}", self.failures.len());
        for f in self.failures.iter().take(5) {
            println!("  {f}");
        }
        println!(
            "server RSS          {} KiB idle, {} KiB with subscribers: {:.1} KiB per subscriber",
            self.rss_before, self.rss_after, per_sub_kib
        );
        println!(
            "persistence         {transactions} transactions, {batches} batches, {rows} rows ({:.1} rows/batch) in {:.1} s",
            if batches > 0.0 { rows / batches } else { 0.0 },
            self.elapsed.as_secs_f64()
        );
        println!("json {out}");
    }
}
