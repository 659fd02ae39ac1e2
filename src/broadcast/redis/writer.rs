//! The writer task: batches of waiting frames (and counts, commands, log
//! expiries), one Redis pipeline each; only once Redis took them are the
//! frames handed to this node's own subscribers.

use std::sync::{atomic::Ordering, Arc};

use tokio::sync::mpsc;

use super::{
    envelope::{envelope, TAG_COMMAND, TAG_FRAME, TAG_PRESENCE},
    Bus, Outgoing, LOG_MAX, LOG_TTL_ENDED_SECS, LOG_TTL_RUNNING_SECS, LOG_TTL_SETTLED_SECS, PRESENCE_TTL_SECS,
    RETRY_AFTER, WRITE_TIMEOUT,
};
use crate::broadcast::{Fanout as _, Signal};

/// Counts, commands and expiries kept while Redis does not take them.
const CARRY_MAX: usize = 4096;

/// The writer: batches of waiting frames, one pipeline each.
pub(super) async fn write(bus: Arc<Bus>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut conn = bus.conn.clone();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut batch = Vec::new();
    // Counts, commands and log expiries that Redis did not take: kept
    // (bounded) for the next attempt, which a timer brings when nothing
    // else comes (a lost `Released` would hold a question a whole lease).
    let mut carried: Vec<Outgoing> = Vec::new();
    loop {
        // (The bus is gone once its queue closes: the writer ends.)
        let first = if carried.is_empty() {
            match rx.recv().await {
                Some(item) => Some(item),
                None => return,
            }
        } else {
            let at = retry_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => Some(item),
                    None => return,
                },
                _ = tokio::time::sleep_until(at) => None,
            }
        };
        batch.append(&mut carried);
        batch.extend(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let skip = retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
        // While the last failure's retry wait runs, nothing is encoded.
        let mut pipe = redis::pipe();
        if !skip {
            for item in &batch {
                add(&bus, &mut pipe, item);
            }
        }
        let mut written = false;
        if !pipe.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {
                    written = true;
                    if retry_at.take().is_some() || !bus.is_healthy() {
                        tracing::info!("redis takes the frames again");
                    }
                    bus.healthy.store(true, Ordering::Relaxed);
                }
                failed => {
                    if bus.healthy.swap(false, Ordering::Relaxed) {
                        let why = match failed {
                            Ok(Err(e)) => format!("{e} ({} commands)", pipe.len()),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(error.message = %why,
                            "redis does not take the frames; this node's subscribers get them, others are told");
                    }
                    retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER);
                }
            }
        }
        for item in batch.drain(..) {
            match item {
                Outgoing::Frame { frame, local, .. } => local.publish(Signal::Frame(frame)),
                Outgoing::Flush(done) => {
                    let _ = done.send(());
                }
                item @ (Outgoing::Presence { .. } | Outgoing::Command { .. } | Outgoing::Settled { .. }) => {
                    if !written {
                        if carried.len() >= CARRY_MAX {
                            tracing::warn!("redis is away too long: the oldest count or command not sent is dropped");
                            carried.remove(0);
                        }
                        carried.push(item);
                    }
                }
            }
        }
    }
}

fn add(bus: &Bus, pipe: &mut redis::Pipeline, item: &Outgoing) {
    match item {
        Outgoing::Frame { thread, log, frame, .. } => {
            let wire = frame.to_wire();
            if let Some(message) = log {
                let key = bus.log_key(*message);
                pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg("~").arg(LOG_MAX).arg("*").arg("f").arg(wire.as_ref());
                pipe.ignore();
                let ttl = match frame.kind {
                    crate::domain::codes::EventKind::MessageCompleted => Some(LOG_TTL_ENDED_SECS),
                    crate::domain::codes::EventKind::MessageStarted => Some(LOG_TTL_RUNNING_SECS),
                    _ => None,
                };
                if let Some(ttl) = ttl {
                    pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
                }
            }
            pipe.cmd("PUBLISH").arg(bus.channel(*thread)).arg(envelope(TAG_FRAME, &bus.node, &wire).as_ref()).ignore();
        }
        Outgoing::Presence { thread, count } => {
            let key = bus.presence_key(*thread);
            let value = format!("{count}:{}", chrono::Utc::now().timestamp_millis());
            match count {
                0 => pipe.cmd("HDEL").arg(&key).arg(&bus.node).ignore(),
                _ => pipe.cmd("HSET").arg(&key).arg(&bus.node).arg(value).ignore(),
            };
            pipe.cmd("EXPIRE").arg(&key).arg(PRESENCE_TTL_SECS).ignore();
            let body = (*count as u32).to_be_bytes();
            pipe.cmd("PUBLISH")
                .arg(bus.channel(*thread))
                .arg(envelope(TAG_PRESENCE, &bus.node, &body).as_ref())
                .ignore();
        }
        Outgoing::Command { thread, command } => {
            let body = command.encode();
            pipe.cmd("PUBLISH")
                .arg(bus.channel(*thread))
                .arg(envelope(TAG_COMMAND, &bus.node, &body).as_ref())
                .ignore();
        }
        Outgoing::Settled { message } => {
            pipe.cmd("EXPIRE").arg(bus.log_key(*message)).arg(LOG_TTL_SETTLED_SECS).ignore();
        }
        Outgoing::Flush(_) => {}
    }
}
