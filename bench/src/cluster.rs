//! The `cluster` scenario: three service processes (by default) on one fresh Postgres
//! database and one Redis, the `fanout` load split over them. Thread i is
//! asked on node i % 3 (which owns its answer); its subscribers are spread
//! round-robin over the three nodes, so a third read on the owner's node
//! and two thirds across nodes. Reports the added latency per chunk on the
//! owner's node and across nodes, CPU per delivery per node (from
//! /proc/<pid>/stat), and Redis commands per chunk (`INFO stats`).
//!
//! `--nodes 1` runs the same load on one node in cluster mode (every
//! frame written to Redis before it is delivered); adding
//! `--without-redis` runs that one node on the same Postgres without
//! Redis: the two together measure what write-before-deliver costs.

use std::{process::Command, time::Duration};

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use crate::{client, postgres::Scratch, server::Server, upstream, Plan};

/// Where the scenario runs.
pub struct Shape<'a> {
    pub nodes: usize,
    /// A Postgres URL next to which a fresh database is made.
    pub database: &'a str,
    /// The Redis the nodes share; `None`: one node without Redis.
    pub redis: Option<&'a str>,
}

/// Runs the scenario against `bin` in `shape`.
pub async fn run(plan: Plan, bin: &str, shape: Shape<'_>, extra: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(shape.nodes >= 1, "--nodes must be at least 1");
    anyhow::ensure!(shape.redis.is_some() || shape.nodes == 1, "several nodes need Redis");
    let db = Scratch::create(shape.database)?;
    run_on(plan, bin, &db.url, &shape, extra).await
}

/// Commands Redis has processed so far.
fn redis_commands(redis: &str) -> u64 {
    let out = Command::new("redis-cli").args(["-u", redis, "INFO", "stats"]).output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("total_commands_processed:").map(|v| v.trim().to_owned())))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn run_on(plan: Plan, bin: &str, db: &str, shape: &Shape<'_>, extra: &[String]) -> anyhow::Result<()> {
    let count = shape.nodes;
    let up = upstream::Upstream::start(plan.chunks, plan.interval, 1).await?;
    let prefix = format!("bench-{}", std::process::id());
    let mut nodes = Vec::new();
    for i in 0..count {
        let mut args: Vec<String> = vec!["--database-url".into(), db.into()];
        if let Some(redis) = shape.redis {
            args.extend(["--redis-url", redis, "--redis-prefix", &prefix].map(String::from));
            args.extend(["--stream-token-secret", "bench-cluster-stream-token-secret"].map(String::from));
            args.extend(["--node-id".into(), format!("node-{i}")]);
        }
        args.extend(extra.iter().cloned());
        nodes.push(Server::spawn(bin, &up.url, &args).await?);
    }
    let http = reqwest::Client::new();
    let pid = nodes[0].project(&http).await?;
    let threads = nodes[0].threads(&http, &pid, plan.threads).await?;

    let total = plan.threads * plan.subscribers;
    let (ready_tx, mut ready_rx) = mpsc::channel(total.max(1));
    let mut subs = Vec::new();
    for (t, thread) in threads.iter().enumerate() {
        for s in 0..plan.subscribers {
            let node = (t + s) % count;
            let ready = ready_tx.clone();
            let addr = nodes[node].addr;
            let task = if s < plan.ws_share {
                tokio::spawn(client::ws(addr, format!("{thread}/ws"), ready, 1))
            } else {
                tokio::spawn(client::sse(addr, format!("{thread}/events"), ready, 1))
            };
            subs.push((t, node, task));
        }
    }
    drop(ready_tx);
    for n in 0..total {
        if tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.ok().flatten().is_none() {
            anyhow::bail!("only {n} of {total} subscribers became ready");
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    join_all((0..threads.len()).map(|i| http.get(nodes[i % count].url("/healthz")).send())).await;
    let cpu_before: Vec<u64> = nodes.iter().map(|n| n.cpu_us()).collect();
    let redis_before = shape.redis.map_or(0, redis_commands);

    let started = std::time::Instant::now();
    let spread = if plan.in_phase { Duration::ZERO } else { plan.interval / plan.threads.max(1) as u32 };
    let posts = threads.iter().enumerate().map(|(i, thread)| {
        let http = http.clone();
        let url = nodes[i % count].url(&format!("{thread}/messages"));
        let at = tokio::time::Instant::from_std(started) + spread * i as u32;
        async move {
            tokio::time::sleep_until(at).await;
            http.post(url).json(&serde_json::json!({"content": thread})).send().await.map(|r| r.status().as_u16())
        }
    });
    let statuses: Vec<u16> = join_all(posts).await.into_iter().map(|r| r.unwrap_or(0)).collect();
    anyhow::ensure!(statuses.iter().all(|s| *s == 202), "refused POSTs: {statuses:?}");

    let (meta, tasks): (Vec<(usize, usize)>, Vec<_>) = subs.into_iter().map(|(t, n, task)| ((t, n), task)).unzip();
    let results = tokio::time::timeout(plan.interval * plan.chunks as u32 + Duration::from_secs(60), join_all(tasks))
        .await
        .map_err(|_| anyhow::anyhow!("subscribers did not finish"))?;
    let cpu_after: Vec<u64> = nodes.iter().map(|n| n.cpu_us()).collect();
    let redis_after = shape.redis.map_or(0, redis_commands);

    let mut same = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut cross = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut per_node = vec![0u64; count];
    let mut failures = Vec::new();
    let sent = up.sent.lock().map(|m| m.clone()).unwrap_or_default();
    for ((t, node), seen) in meta.into_iter().zip(results) {
        let seen = seen?;
        let histogram = if node == t % count { &mut same } else { &mut cross };
        for &(_, us) in &seen.latency_us {
            histogram.record(us as u64)?;
        }
        per_node[node] += seen.deltas;
        failures.extend(seen.failures);
        for text in seen.texts.values() {
            if sent.get(&threads[t]).map(|s| &s.text) != Some(text) {
                failures.push(format!("thread {t} on node {node}: text differs from what the upstream sent"));
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let chunks = (plan.threads * plan.chunks) as f64;
    let commands_per_chunk = (redis_after.saturating_sub(redis_before)) as f64 / chunks;
    let cpu_per_delivery: Vec<f64> =
        (0..count).map(|i| (cpu_after[i].saturating_sub(cpu_before[i])) as f64 / per_node[i].max(1) as f64).collect();
    let redis_note = if shape.redis.is_some() { "one Redis" } else { "no Redis" };
    println!("scenario            cluster ({count} nodes, one Postgres, {redis_note})");
    println!(
        "threads x subs      {} x {} ({} subscribers, {} WS each), {} chunks every {} ms",
        plan.threads,
        plan.subscribers,
        total,
        plan.ws_share,
        plan.chunks,
        plan.interval.as_millis()
    );
    println!(
        "same node           p50 {:.2} ms  p99 {:.2} ms  ({} samples)",
        ms(&same, 0.5),
        ms(&same, 0.99),
        same.len()
    );
    println!(
        "across nodes        p50 {:.2} ms  p99 {:.2} ms  ({} samples)",
        ms(&cross, 0.5),
        ms(&cross, 0.99),
        cross.len()
    );
    println!("deliveries per node {per_node:?} in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "CPU per delivery    {:?} us (each node's own subscribers, its share of owning included)",
        cpu_per_delivery.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    println!("redis commands      {commands_per_chunk:.2} per chunk");
    println!("failures            {}", failures.len());
    for f in failures.iter().take(5) {
        println!("  {f}");
    }
    let json = serde_json::json!({
        "scenario": "cluster", "nodes": count, "redis": shape.redis.is_some(), "threads": plan.threads, "subscribers": total,
        "same_node_ms": {"p50": ms(&same, 0.5), "p99": ms(&same, 0.99), "samples": same.len()},
        "cross_node_ms": {"p50": ms(&cross, 0.5), "p99": ms(&cross, 0.99), "samples": cross.len()},
        "deliveries_per_node": per_node, "cpu_us_per_delivery": cpu_per_delivery,
        "redis_commands_per_chunk": commands_per_chunk, "failures": failures.len(),
    });
    println!("json {json}");
    drop(nodes);
    Ok(())
}
