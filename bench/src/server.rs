//! Runs the service binary as a child process pointed at the fake upstream,
//! and reads its memory (VmRSS) and `/admin/stats`.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct Server {
    pub addr: SocketAddr,
    /// `https` when the service was given `--tls-cert`.
    scheme: &'static str,
    child: Child,
    _data: DataDir,
}

/// A scratch folder for the service's SQLite file, removed afterwards.
struct DataDir(std::path::PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    pub async fn spawn(bin: &str, upstream: &str, extra: &[String]) -> anyhow::Result<Server> {
        if !std::path::Path::new(bin).exists() {
            eprintln!("building the service: cargo build --release --bin convo");
            let ok = Command::new("cargo").args(["build", "--release", "--bin", "convo"]).status()?.success();
            anyhow::ensure!(ok, "could not build the service");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let data = std::env::temp_dir().join(format!("convo-bench-{}-{port}", std::process::id()));
        let child = Command::new(bin)
            .args(["--bind", &addr.to_string(), "--provider", "anthropic", "--anthropic-base-url", upstream])
            .args(["--data-dir", &data.display().to_string(), "--log-format", "json"])
            .args(["--log-filter", &std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into())])
            .args(extra)
            .env("ANTHROPIC_API_KEY", "bench-key")
            .stdout(Stdio::null())
            .spawn()?;
        let tls = extra.iter().any(|a| a == "--tls-cert" || a.starts_with("--tls-cert="));
        let scheme = if tls { "https" } else { "http" };
        let server = Server { addr, scheme, child, _data: DataDir(data) };
        // (Over HTTPS the certificate is the run's own, self-signed: this
        // client only waits for the service to answer.)
        let http = reqwest::Client::builder().danger_accept_invalid_certs(tls).build()?;
        for _ in 0..200 {
            if http.get(server.url("/healthz")).send().await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the service did not start")
    }

    /// User + system CPU time the service has used, in microseconds.
    pub fn cpu_us(&self) -> u64 {
        cpu_us_of(self.child.id())
    }

    /// Minor page faults the service has taken (memory it touched for the
    /// first time: fresh heap, code run for the first time).
    pub fn minor_faults(&self) -> u64 {
        stat_field(self.child.id(), 7)
    }

    /// A new project: its id.
    pub async fn project(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let project: serde_json::Value = http
            .post(self.url("/v1/projects"))
            .json(&serde_json::json!({"name": "bench"}))
            .send()
            .await?
            .json()
            .await?;
        Ok(project["id"].as_str().unwrap_or_default().to_owned())
    }

    /// `count` new threads of project `pid`: their paths.
    pub async fn threads(&self, http: &reqwest::Client, pid: &str, count: usize) -> anyhow::Result<Vec<String>> {
        self.threads_with(http, pid, count, &serde_json::json!({})).await
    }

    /// `count` threads made with `body` (their settings, e.g. tools).
    pub async fn threads_with(
        &self,
        http: &reqwest::Client,
        pid: &str,
        count: usize,
        body: &serde_json::Value,
    ) -> anyhow::Result<Vec<String>> {
        let mut threads = Vec::with_capacity(count);
        for _ in 0..count {
            let path = format!("/v1/projects/{pid}/threads");
            let t: serde_json::Value = http.post(self.url(&path)).json(body).send().await?.json().await?;
            threads.push(format!("{path}/{}", t["id"].as_str().unwrap_or_default()));
        }
        Ok(threads)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Resident memory of the service, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<serde_json::Value> {
        Ok(http.get(self.url("/admin/stats")).send().await?.json().await?)
    }

    /// Stops the service gracefully (SIGTERM) and waits for it.
    pub fn stop(self) {
        drop(self);
    }
}

/// However the run ends (a failed scenario included), the service goes too.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU time process `pid` has used, in microseconds
/// (`/proc/<pid>/stat`; 0 when it cannot be read).
pub fn cpu_us_of(pid: u32) -> u64 {
    // utime and stime, in ticks of 10 ms.
    (stat_field(pid, 11) + stat_field(pid, 12)) * 1_000_000 / 100
}

/// Field `i` of `/proc/<pid>/stat`, counted from the one after the
/// command's closing parenthesis (0: state, 7: minflt, 11: utime).
fn stat_field(pid: u32, i: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    rest.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or(0)
}
