//! Counters and gauges shared by the actors, exported as Prometheus text
//! at `/metrics` and read back by `/admin/stats`. Each application owns
//! its own registry (tests run several applications in one process).
//! Updates are single atomic operations: safe on the hot path.

use std::time::Instant;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub started_at: Instant,
    pub threads_live: IntGauge,
    pub threads_generating: IntGauge,
    pub subscribers_sse: IntGauge,
    pub subscribers_ws: IntGauge,
    pub chunks_in: IntCounter,
    pub chunks_out: IntCounter,
    pub slow_consumers: IntCounter,
    pub upstream_unknown_events: IntCounter,
    pub catch_ups: IntCounter,
    pub persistence_queue_depth: IntGauge,
    pub persistence_batches: IntCounter,
    pub persistence_transactions: IntCounter,
    pub persistence_rows: IntCounter,
    pub persistence_failures: IntCounter,
    pub persistence_rows_rejected: IntCounter,
    pub persistence_last_batch_rows: IntGauge,
    pub persistence_last_batch_seconds: Gauge,
    pub persistence_batch_seconds: Histogram,
    /// A message accepted (its answer started) to its first delta published.
    pub first_delta_seconds: Histogram,
    /// A request sent to the model provider to its response's head.
    pub upstream_first_byte_seconds: Histogram,
    /// A chunk's frame built, as the chunk arrives, to it being written to
    /// every subscriber's pipe on one HTTP worker.
    pub chunk_delivery_seconds: Histogram,
    /// Answers cut short, by why (`reason`: `provider_error`,
    /// `connection_lost`, `stalled`, `restart`, `owner_lost`, `handoff`)
    /// and what became of them (`outcome`: `continued`, or why not:
    /// `off`, `budget_spent`, `too_old`, `no_progress`, `at_capacity`,
    /// `stopping`).
    pub continuations: IntCounterVec,
    /// Calls of tools the service runs itself, by kind (`url`).
    pub tool_calls: IntCounterVec,
    /// Those whose result is an error the service gave (the endpoint
    /// failed, timed out or was refused), by kind.
    pub tool_call_failures: IntCounterVec,
    /// Attempts tried again (time-outs, connection errors, 5xx), by kind.
    pub tool_call_retries: IntCounterVec,
    /// From a call's first attempt to its result, by kind.
    pub tool_call_seconds: HistogramVec,
    /// Notification deliveries a receiver took (2xx).
    pub notifications_sent: IntCounter,
    /// Deliveries given up after their last attempt.
    pub notifications_failed: IntCounter,
    /// Attempts that failed and were scheduled again.
    pub notifications_retried: IntCounter,
    /// Pending deliveries in the outbox (of every node).
    pub outbox_depth: IntGauge,
    /// Age of the oldest pending delivery (0: none).
    pub outbox_oldest_seconds: Gauge,
    /// Deliveries this node is sending now.
    pub notifications_in_flight: IntGauge,
}

/// Buckets for the start and delivery latencies, 50 us to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

fn histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets())).expect("valid metric")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let subscribers =
            IntGaugeVec::new(Opts::new("convo_subscribers", "Live subscriptions by transport"), &["transport"])
                .expect("valid metric");
        let m = Metrics {
            started_at: Instant::now(),
            threads_live: IntGauge::new("convo_threads_live", "Live thread actors").expect("valid metric"),
            threads_generating: IntGauge::new("convo_threads_generating", "Thread actors with a running generation")
                .expect("valid metric"),
            subscribers_sse: subscribers.with_label_values(&["sse"]),
            subscribers_ws: subscribers.with_label_values(&["ws"]),
            chunks_in: IntCounter::new("convo_chunks_in_total", "Text chunks received from providers")
                .expect("valid metric"),
            chunks_out: IntCounter::new("convo_chunks_out_total", "Text chunks delivered to subscribers")
                .expect("valid metric"),
            slow_consumers: IntCounter::new("convo_slow_consumers_total", "Subscribers closed for reading too slowly")
                .expect("valid metric"),
            upstream_unknown_events: IntCounter::new(
                "convo_upstream_unknown_events_total",
                "Upstream stream events of a type this service does not know (ignored)",
            )
            .expect("valid metric"),
            catch_ups: IntCounter::new("convo_catch_ups_total", "Times a lagging subscriber caught up from its cursor")
                .expect("valid metric"),
            persistence_queue_depth: IntGauge::new(
                "convo_persistence_queue_depth",
                "Writes waiting for the next batch",
            )
            .expect("valid metric"),
            persistence_batches: IntCounter::new("convo_persistence_batches_total", "Batches written")
                .expect("valid metric"),
            persistence_transactions: IntCounter::new(
                "convo_persistence_transactions_total",
                "Database write transactions",
            )
            .expect("valid metric"),
            persistence_rows: IntCounter::new("convo_persistence_rows_total", "Rows written").expect("valid metric"),
            persistence_failures: IntCounter::new("convo_persistence_failures_total", "Failed batch writes")
                .expect("valid metric"),
            persistence_rows_rejected: IntCounter::new(
                "convo_persistence_rows_rejected_total",
                "Rows the database refused for their content (set aside, logged)",
            )
            .expect("valid metric"),
            persistence_last_batch_rows: IntGauge::new("convo_persistence_last_batch_rows", "Rows in the last batch")
                .expect("valid metric"),
            persistence_last_batch_seconds: Gauge::new(
                "convo_persistence_last_batch_seconds",
                "Duration of the last batch",
            )
            .expect("valid metric"),
            persistence_batch_seconds: Histogram::with_opts(
                HistogramOpts::new("convo_persistence_batch_seconds", "Batch write latency")
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            )
            .expect("valid metric"),
            first_delta_seconds: histogram(
                "convo_first_delta_seconds",
                "From a message accepted to the first delta of its answer published",
            ),
            upstream_first_byte_seconds: histogram(
                "convo_upstream_first_byte_seconds",
                "From a request sent to the model provider to the head of its response",
            ),
            chunk_delivery_seconds: histogram(
                "convo_chunk_delivery_seconds",
                "From a chunk arriving from the provider to its frame written to the subscribers' pipes",
            ),
            continuations: IntCounterVec::new(
                Opts::new("convo_continuations_total", "Answers cut short, by reason and by what became of them"),
                &["reason", "outcome"],
            )
            .expect("valid metric"),
            tool_calls: IntCounterVec::new(
                Opts::new("convo_tool_calls_total", "Calls of tools the service runs itself, by kind"),
                &["kind"],
            )
            .expect("valid metric"),
            tool_call_failures: IntCounterVec::new(
                Opts::new(
                    "convo_tool_call_failures_total",
                    "Tool calls the service ran whose endpoint failed, timed out or was refused, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            tool_call_retries: IntCounterVec::new(
                Opts::new("convo_tool_call_retries_total", "Tool call attempts tried again, by kind"),
                &["kind"],
            )
            .expect("valid metric"),
            tool_call_seconds: HistogramVec::new(
                HistogramOpts::new("convo_tool_call_seconds", "From a tool call's first attempt to its result")
                    .buckets(latency_buckets()),
                &["kind"],
            )
            .expect("valid metric"),
            notifications_sent: IntCounter::new(
                "convo_notifications_sent_total",
                "Notification deliveries a receiver took",
            )
            .expect("valid metric"),
            notifications_failed: IntCounter::new(
                "convo_notifications_failed_total",
                "Notification deliveries given up after their last attempt",
            )
            .expect("valid metric"),
            notifications_retried: IntCounter::new(
                "convo_notifications_retried_total",
                "Notification attempts that failed and were scheduled again",
            )
            .expect("valid metric"),
            outbox_depth: IntGauge::new("convo_outbox_depth", "Pending notification deliveries").expect("valid metric"),
            outbox_oldest_seconds: Gauge::new(
                "convo_outbox_oldest_pending_seconds",
                "Age of the oldest pending notification delivery",
            )
            .expect("valid metric"),
            notifications_in_flight: IntGauge::new(
                "convo_notifications_in_flight",
                "Notification deliveries this node is sending now",
            )
            .expect("valid metric"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.first_delta_seconds.clone()),
            Box::new(m.upstream_first_byte_seconds.clone()),
            Box::new(m.chunk_delivery_seconds.clone()),
            Box::new(m.threads_live.clone()),
            Box::new(m.threads_generating.clone()),
            Box::new(subscribers),
            Box::new(m.chunks_in.clone()),
            Box::new(m.chunks_out.clone()),
            Box::new(m.slow_consumers.clone()),
            Box::new(m.catch_ups.clone()),
            Box::new(m.upstream_unknown_events.clone()),
            Box::new(m.persistence_queue_depth.clone()),
            Box::new(m.persistence_batches.clone()),
            Box::new(m.persistence_transactions.clone()),
            Box::new(m.persistence_rows.clone()),
            Box::new(m.persistence_failures.clone()),
            Box::new(m.persistence_rows_rejected.clone()),
            Box::new(m.persistence_last_batch_rows.clone()),
            Box::new(m.persistence_last_batch_seconds.clone()),
            Box::new(m.persistence_batch_seconds.clone()),
            Box::new(m.continuations.clone()),
            Box::new(m.tool_calls.clone()),
            Box::new(m.tool_call_failures.clone()),
            Box::new(m.tool_call_retries.clone()),
            Box::new(m.tool_call_seconds.clone()),
            Box::new(m.notifications_sent.clone()),
            Box::new(m.notifications_failed.clone()),
            Box::new(m.notifications_retried.clone()),
            Box::new(m.outbox_depth.clone()),
            Box::new(m.outbox_oldest_seconds.clone()),
            Box::new(m.notifications_in_flight.clone()),
        ];
        for c in collectors {
            // expect: names are distinct constants, so registration cannot clash.
            m.registry.register(c).expect("distinct metric names");
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // unwrap: encoding into a Vec cannot fail for valid metric families.
        TextEncoder::new().encode(&self.registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
