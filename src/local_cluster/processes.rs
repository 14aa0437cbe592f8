//! Child processes of `tare` (nodes, a sandbox) whose output is drained and kept, and
//! free loopback ports for them.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A free loopback port (bound then released; the process that gets it binds it again).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts on loopback `port` (a server just spawned).
pub fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("port {port} never opened");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process whose output is drained (and its last lines kept for failure
/// messages). Killed when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// What it printed (at most 5,000 lines).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `exe args…` with `env` added, and waits (60 s at most) until it prints a
    /// line containing `ready`.
    pub async fn start(exe: &Path, args: &[String], env: &[(&str, &str)], ready: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", exe.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let outputs = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ];
        for stream in outputs.into_iter().flatten() {
            let (log, tx) = (log.clone(), tx.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let _ = tx.send(l.clone());
                    let mut g = log.lock().unwrap_or_else(|e| e.into_inner());
                    if g.len() < 5000 {
                        g.push(l);
                    }
                }
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(l)) if l.contains(ready) => break,
                Ok(Some(_)) => {}
                _ => bail!(
                    "{args:?} did not print {ready:?}: {:?}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                ),
            }
        }
        Ok(Self { child, log })
    }

    /// kill -9, and wait for it to be gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends `signal` (`TERM`, `INT`, …) to the process, as `docker stop` or a terminal would.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the process has ended")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Whether it printed a line containing `text`.
    pub fn printed(&self, text: &str) -> bool {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.contains(text))
    }

    /// The last 40 lines it printed.
    pub fn tail(&self) -> String {
        let g = self.log.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
    }
}
