//! Answers in several steps, measured: the application's side of a turn
//! (it hears each `message.awaiting` from one subscriber per thread and
//! posts the tool's result at once, as an application or a tab would) and
//! the figure the issue asks for: a posted tool result to the next step's
//! first delta at each subscriber.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::{
    client::Answerer,
    server::Server,
    upstream::{now_ns, Sent},
};

/// A thread whose answers may call `bench`, answered by the client.
pub static THREAD: LazyLock<Value> = LazyLock::new(
    || json!({"tools": [{"name": "bench", "description": "the benchmark's tool", "input_schema": {"type": "object"}}]}),
);

/// When each step's result was posted: (thread, the step it lets start).
pub type Posted = Arc<Mutex<HashMap<(String, usize), u128>>>;

/// The application: posts a result for every call it hears of.
pub struct Application {
    tx: mpsc::UnboundedSender<(String, String, Vec<String>)>,
    posted: Posted,
    failures: Arc<Mutex<Vec<String>>>,
}

/// A posted result to the next step's first delta, per subscriber.
pub struct StepFigures {
    /// Less the upstream's own delay before that step's first chunk.
    pub added: Histogram<u64>,
    /// Nothing subtracted.
    pub raw: Histogram<u64>,
    pub results_posted: usize,
}

impl Application {
    pub fn new(http: &reqwest::Client, srv: &Server) -> Application {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, Vec<String>)>();
        let posted = Posted::default();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (http, base) = (http.clone(), srv.url(""));
        let (record, failed) = (posted.clone(), failures.clone());
        tokio::spawn(async move {
            let mut steps: HashMap<String, usize> = HashMap::new();
            while let Some((thread, message, ids)) = rx.recv().await {
                let step = steps.entry(thread.clone()).or_insert(1);
                *step += 1;
                let (next, http, url) = (*step, http.clone(), format!("{base}{thread}/tool-results"));
                let (record, failed) = (record.clone(), failed.clone());
                tokio::spawn(async move {
                    let results: Vec<Value> =
                        ids.iter().map(|id| json!({"tool_call_id": id, "output": {"ok": true}})).collect();
                    let t0 = now_ns();
                    record.lock().unwrap().insert((thread.clone(), next), t0);
                    let status = http.post(url).json(&json!({"results": results})).send().await.map(|r| r.status());
                    if !matches!(status, Ok(s) if s == 200) {
                        failed.lock().unwrap().push(format!("{thread} {message}: tool result answered {status:?}"));
                    }
                });
            }
        });
        Application { tx, posted, failures }
    }

    /// When each step's result was given, for a tool endpoint to fill.
    pub fn posted(&self) -> Posted {
        self.posted.clone()
    }

    /// The ear of `thread`'s answering subscriber.
    pub fn answerer(&self, thread: &str) -> Answerer {
        Answerer { thread: thread.to_owned(), tx: self.tx.clone() }
    }

    /// The step figures from each subscriber's step arrivals (`arrivals`:
    /// thread index, then (step, wall clock ns) per later step seen).
    pub fn figures(
        &self,
        threads: &[String],
        arrivals: &[(usize, Vec<(usize, u128)>)],
        sent: &HashMap<String, Sent>,
        failures: &mut Vec<String>,
    ) -> anyhow::Result<StepFigures> {
        failures.extend(self.failures.lock().unwrap().drain(..));
        let posted = self.posted.lock().unwrap();
        let mut added = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut raw = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        for (i, seen) in arrivals {
            let thread = &threads[*i];
            for &(step, at) in seen {
                let Some(&t0) = posted.get(&(thread.clone(), step)) else {
                    failures.push(format!("{thread}: step {step} began with no result posted"));
                    continue;
                };
                let waited = at.saturating_sub(t0);
                // The upstream's own delay between that step's request
                // and its first chunk.
                let own = sent.get(thread).and_then(|s| s.steps.get(step - 1)).map_or(0, |(r, f)| f.saturating_sub(*r));
                raw.record(((waited / 1000) as u64).max(1))?;
                added.record(((waited.saturating_sub(own) / 1000) as u64).max(1))?;
            }
        }
        Ok(StepFigures { added, raw, results_posted: posted.len() })
    }
}

/// A thread whose answers may call `bench`, run by the service at `url`.
pub fn service_thread(url: &str) -> Value {
    json!({"tools": [{"name": "bench", "description": "the benchmark's tool", "input_schema": {"type": "object"},
        "run": {"url": url}}]})
}

/// The tool's endpoint for `--service-tool`: the service POSTs each call
/// here; it answers at once with an output, and notes when, as the
/// application notes when it posted a result. Its URL.
pub async fn tool_endpoint(posted: Posted) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/tool", listener.local_addr()?);
    let steps: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (posted, steps) = (posted.clone(), steps.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (posted, steps) = (posted.clone(), steps.clone());
                async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let call: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let thread = format!(
                        "/v1/projects/{}/threads/{}",
                        call["project_id"].as_str().unwrap_or_default(),
                        call["thread_id"].as_str().unwrap_or_default()
                    );
                    let next = {
                        let mut steps = steps.lock().unwrap();
                        let step = steps.entry(thread.clone()).or_insert(1);
                        *step += 1;
                        *step
                    };
                    posted.lock().unwrap().insert((thread, next), now_ns());
                    let answer = bytes::Bytes::from_static(br#"{"output": {"ok": true}}"#);
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(answer)))
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok(url)
}
