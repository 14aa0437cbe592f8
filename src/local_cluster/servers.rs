//! Private servers from the machine's own binaries — a `nats-server` with JetStream and
//! a PostgreSQL cluster — on free ports, so that killing and restarting them (the
//! recovery test, `tare soak`) disturbs nothing else on the machine.

use super::processes::{free_port, wait_port};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A private `nats-server` with JetStream on a store directory that survives restarts.
/// Killed when dropped.
pub struct PrivateNats {
    child: Option<std::process::Child>,
    port: u16,
    dir: PathBuf,
}

impl PrivateNats {
    /// Starts one storing under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut n = Self {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        n.spawn()?;
        Ok(n)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running nats-server (Debian package nats-server)")?;
        self.child = Some(child);
        wait_port(self.port)
    }

    /// SIGKILL, then the same server on the same store again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `nats://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL cluster (initdb, run as the `postgres` user when we are root).
/// Stopped when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

/// The newest PostgreSQL's binaries under `/usr/lib/postgresql`.
fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL binaries under /usr/lib/postgresql")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().context("no initdb under /usr/lib/postgresql")
}

fn as_postgres(bin: &Path, args: &[&str]) -> std::process::Command {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    // The postgres user may not be able to enter the working directory.
    cmd.args(args).current_dir(std::env::temp_dir()).stdout(Stdio::null());
    cmd
}

/// How a private PostgreSQL is brought down before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgStop {
    /// `pg_ctl -m fast`: connections cut, a clean shutdown.
    Fast,
    /// `pg_ctl -m immediate`: every process killed; crash recovery at the next start.
    Immediate,
}

impl PrivatePostgres {
    /// Makes and starts a cluster under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        std::fs::create_dir_all(dir)?;
        // The postgres user must be able to reach its directory whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        for d in dir.ancestors().take(2) {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
        let _ = std::process::Command::new("chown").args(["postgres"]).arg(dir).status();
        let data = dir.join("data");
        let data_arg = data.to_str().context("a UTF-8 data directory")?;
        let ok = as_postgres(&bin.join("initdb"), &["-D", data_arg, "-A", "trust", "-U", "postgres"])
            .status()
            .context("initdb")?;
        if !ok.success() {
            bail!("initdb failed in {}", data.display());
        }
        let pg = Self {
            bin,
            data,
            port: free_port(),
        };
        pg.ctl("start", PgStop::Fast)?;
        Ok(pg)
    }

    /// `pg_ctl action` (`start`, `stop`, `restart`), stopping as `stop` says.
    pub fn ctl(&self, action: &str, stop: PgStop) -> anyhow::Result<()> {
        let parent = self.data.parent().context("the data directory's parent")?;
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            parent.display()
        );
        let mode = match stop {
            PgStop::Fast => "fast",
            PgStop::Immediate => "immediate",
        };
        let data = self.data.to_str().context("a UTF-8 data directory")?;
        let mut args = vec!["-D", data, "-w", "-m", mode];
        if action != "stop" {
            args.extend(["-o", &opts]);
        }
        args.push(action);
        let ok = as_postgres(&self.bin.join("pg_ctl"), &args).status().context("pg_ctl")?;
        if !ok.success() {
            bail!("pg_ctl {action} failed");
        }
        Ok(())
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(data) = self.data.to_str() {
            let _ = as_postgres(&self.bin.join("pg_ctl"), &["-D", data, "-m", "immediate", "stop"]).status();
        }
    }
}
