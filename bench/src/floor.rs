//! `floor`: what the same load costs with no service at all. Two writer
//! threads (as the service has two HTTP workers) write a frame of the size
//! of a real `message.delta` SSE chunk straight to each of the subscribers'
//! loopback TCP sockets on the same schedule as a scenario (threads x
//! subscribers, one chunk per interval, threads spread over the interval),
//! and the same kind of raw readers as the real subscribers measure the
//! latency from the chunk's due time to its arrival.
//!
//! No HTTP, no parsing, no actors: the figures are the floor the kernel's
//! loopback TCP and the readers set on this machine, for comparison with
//! what the service adds on top of it. With `--in-phase` every group ticks
//! at the same instant, as in the scenarios. The writer process reports
//! the CPU it spent per write (`/proc/self/stat` around the writes): on
//! loopback that includes the receiving side's TCP work and the wake-up
//! of the reader, which the kernel does in the writer's system call, so
//! it is the floor of the service's own CPU per delivery.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::io::AsyncReadExt;

use crate::{server::cpu_us_of, upstream::now_ns, Plan};

/// The size of a `message.delta` SSE frame of the benchmark, with its
/// chunked-encoding framing.
const FRAME: usize = 290;
/// Writer threads (the service runs one HTTP worker per core).
const WRITERS: usize = 2;

/// The readers, in this process; the writers run in a child process (as
/// the service does: one process could not hold both ends of 10,000
/// sockets within the open-file limit).
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let total = plan.threads * plan.subscribers;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["floor-writer", "--threads", &plan.threads.to_string(), "--subscribers", &plan.subscribers.to_string()])
        .args(["--chunks", &plan.chunks.to_string(), "--interval-ms", &plan.interval.as_millis().to_string()])
        .args(plan.in_phase.then_some("--in-phase"))
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut from_writer = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut port = String::new();
    std::io::BufRead::read_line(&mut from_writer, &mut port)?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", port.trim()).parse()?;
    let mut readers = Vec::with_capacity(total);
    for i in 0..total {
        let sock = tokio::net::TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        readers.push(tokio::spawn(read(sock, plan.chunks)));
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures = 0;
    for reader in readers {
        match reader.await? {
            Ok(samples) => samples.iter().try_for_each(|&us| latency.record(us))?,
            Err(_) => failures += 1,
        }
    }
    let mut writer_cpu = String::new();
    std::io::BufRead::read_line(&mut from_writer, &mut writer_cpu)?;
    anyhow::ensure!(child.wait()?.success(), "the writer process failed");
    let writer_cpu_us: u64 = writer_cpu.trim().parse()?;
    let writes = total * plan.chunks;
    let cpu_per_write = writer_cpu_us as f64 / writes.max(1) as f64;
    let p = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "scenario            floor (no service: writer threads -> loopback TCP -> readers){}",
        if plan.in_phase { ", in phase" } else { "" }
    );
    println!("sockets             {} ({} groups x {})", total, plan.threads, plan.subscribers);
    println!("chunks              {} every {} ms", plan.chunks, plan.interval.as_millis());
    println!(
        "added latency/chunk p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
        p(0.5),
        p(0.9),
        p(0.99),
        latency.max() as f64 / 1000.0,
        latency.len()
    );
    // What the schedule offers; the latency shows whether it was kept up
    // with (the run's wall time would include the writer process's accepts).
    println!("offered/s           {:.0}", total as f64 / plan.interval.as_secs_f64());
    println!("writer CPU          {cpu_per_write:.2} us per write ({} writes, {} ms)", writes, writer_cpu_us / 1000);
    println!("failures            {failures}");
    let json = serde_json::json!({
        "scenario": "floor", "in_phase": plan.in_phase, "sockets": total, "chunks": plan.chunks,
        "interval_ms": plan.interval.as_millis() as u64, "failures": failures,
        "latency_ms": {"p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": latency.max() as f64 / 1000.0},
        "writer_cpu_us_per_write": (cpu_per_write * 100.0).round() / 100.0,
    });
    println!("json {json}");
    Ok(())
}

/// The writer process: accepts every subscriber's connection, then writes
/// on schedule from `WRITERS` threads.
pub fn writer_main(plan: Plan) -> anyhow::Result<()> {
    let total = plan.threads * plan.subscribers;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let accepted: Vec<TcpStream> = (0..total).map(|_| listener.accept().map(|(s, _)| s)).collect::<Result<_, _>>()?;
    // Socket k belongs to thread k / subscribers; writer w takes every
    // WRITERS-th socket, as connections spread over workers.
    let mut shares: Vec<Vec<(usize, TcpStream)>> = (0..WRITERS).map(|_| Vec::new()).collect();
    for (k, sock) in accepted.into_iter().enumerate() {
        sock.set_nodelay(true)?;
        shares[k % WRITERS].push((k / plan.subscribers, sock));
    }
    let start = Instant::now() + Duration::from_millis(200);
    let cpu_before = cpu_us_of(std::process::id());
    let writers: Vec<_> =
        shares.into_iter().map(|share| std::thread::spawn(move || write(share, plan, start))).collect();
    for writer in writers {
        writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    println!("{}", cpu_us_of(std::process::id()) - cpu_before);
    std::io::stdout().flush()?;
    // Let the readers finish before the sockets close.
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// Writes every chunk of every group of `share` at its due time: group g
/// ticks at `start + g * interval / threads + k * interval` (all groups at
/// `start + k * interval` in phase).
fn write(share: Vec<(usize, TcpStream)>, plan: Plan, start: Instant) -> std::io::Result<()> {
    let spread = if plan.in_phase { Duration::ZERO } else { plan.interval / plan.threads.max(1) as u32 };
    let mut groups: Vec<Vec<TcpStream>> = (0..plan.threads).map(|_| Vec::new()).collect();
    for (group, sock) in share {
        groups[group].push(sock);
    }
    let mut frame = [b'x'; FRAME];
    for chunk in 0..plan.chunks {
        for (group, socks) in groups.iter_mut().enumerate() {
            let due = start + plan.interval * chunk as u32 + spread * group as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let stamp = now_ns() - due.elapsed().as_nanos();
            frame[..20].copy_from_slice(format!("{stamp:020}").as_bytes());
            for sock in socks.iter_mut() {
                sock.write_all(&frame)?;
            }
        }
    }
    Ok(())
}

/// Reads `chunks` frames; latency per frame from its due time, in µs.
async fn read(mut sock: tokio::net::TcpStream, chunks: usize) -> anyhow::Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(chunks);
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    while samples.len() < chunks {
        let n = sock.read(&mut buf[filled..]).await?;
        anyhow::ensure!(n > 0, "closed");
        filled += n;
        let now = now_ns();
        let whole = filled / FRAME * FRAME;
        for frame in buf[..whole].chunks(FRAME) {
            let stamp: u128 = std::str::from_utf8(&frame[..20])?.parse()?;
            samples.push((now.saturating_sub(stamp) / 1000).max(1) as u64);
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
    Ok(samples)
}
