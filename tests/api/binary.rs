//! The real service binary as a child process, for the tests that kill,
//! stop or restart it (lifecycle, cluster): started with the test flags,
//! its port read from its `listening` log line, its log kept.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::support::{args, Server};

/// The service binary, started with test flags; its port is read from its
/// `listening` log line.
pub struct Binary {
    pub child: Child,
    pub server: Server,
    /// Every log line the process wrote.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    pub async fn start(db: &str, extra: &[&str]) -> Binary {
        Binary::start_env(db, extra, &[]).await
    }

    /// Started with `env` set too (an API key, say).
    pub async fn start_env(db: &str, extra: &[&str], env: &[(String, String)]) -> Binary {
        let mut flags = args(db, extra);
        flags.remove(0);
        flags.extend(["--log-format".into(), "json".into()]);
        if !flags.iter().any(|f| f == "--log-filter") {
            flags.extend(["--log-filter".into(), "info".into()]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_convo"))
            .args(&flags)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                if !sent {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["message"] == "listening" {
                            let _ = tx.send(v["port"].as_u64().unwrap());
                            sent = true;
                        }
                    }
                }
            }
        });
        let port = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the binary logs its port");
        let server = Server::attach(format!("http://127.0.0.1:{port}"));
        Binary { child, server, logs }
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "the process exits in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, `-KILL`) to the process.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal}");
}
