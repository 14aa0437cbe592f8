//! The chaos of a soak: on a fixed beat, the next action of a fixed rotation — a node
//! killed with SIGKILL (and started again on its ports two seconds later, as a
//! supervisor would), the providers' notifications dropped, duplicated and reordered (on,
//! then off), NATS killed and restarted on its store, PostgreSQL crashed
//! (`pg_ctl -m immediate`) and restarted through crash recovery.

use crate::fleet::ApiClient;
use crate::local_cluster::{ClusterSpec, Node, PgStop, PrivateNats, PrivatePostgres, Proc, SANDBOX_SECRET};
use anyhow::{bail, Context};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The processes of a soak's cluster, as the chaos task holds them.
pub struct Cluster {
    /// What the nodes share.
    pub spec: ClusterSpec,
    /// Each node's (HTTP, MQTT) port; a node restarts on its own.
    pub ports: Vec<(u16, u16)>,
    /// The nodes (`None` while one is down).
    pub nodes: Vec<Option<Node>>,
    /// The private NATS.
    pub nats: PrivateNats,
    /// The private PostgreSQL.
    pub pg: PrivatePostgres,
    /// The shared `tare sandbox`.
    pub sandbox: Proc,
}

impl Cluster {
    /// An API client of each node (with the admin token).
    pub fn api_clients(&self) -> Vec<ApiClient> {
        self.ports
            .iter()
            .map(|(h, _)| ApiClient::new(&format!("http://127.0.0.1:{h}"), &self.spec.admin_token))
            .collect()
    }

    /// Starts node `i` on its ports (after a kill).
    async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let (h, m) = self.ports[i];
        let node = self.spec.node(&format!("n{i}"), h, m, &super::NODE_FLAGS).await?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Starts every node that is down.
    pub async fn all_up(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                self.start_node(i).await?;
            }
        }
        Ok(())
    }

    /// Stops the nodes and the sandbox (SIGKILL: nothing of theirs is kept).
    pub async fn shut_down(&mut self) {
        for n in self.nodes.iter_mut().flatten() {
            n.proc.kill9().await;
        }
        self.sandbox.kill9().await;
    }

    /// The last lines of every node, for a failure's message.
    pub fn tails(&self) -> String {
        self.nodes
            .iter()
            .flatten()
            .map(|n| format!("--- {}\n{}", n.name, n.proc.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One chaos action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL node `n`, start it again after 2 s.
    KillNode(usize),
    /// The providers drop, duplicate and reorder notifications (`true`) or stop (`false`).
    NotificationFaults(bool),
    /// SIGKILL the NATS server and start it again on its store.
    RestartNats,
    /// `pg_ctl restart -m immediate`: PostgreSQL crashes and recovers.
    CrashPostgres,
}

impl Action {
    /// The `i`th action of the rotation: every node is killed in turn, NATS and
    /// PostgreSQL go down once every six actions, and the providers misbehave for one
    /// interval in six (while they drop notifications, payments wait on polling).
    pub fn nth(i: usize) -> Self {
        let round = i / 6;
        match i % 6 {
            0 => Self::KillNode((2 * round) % 3),
            1 => Self::NotificationFaults(true),
            2 => Self::NotificationFaults(false),
            3 => Self::RestartNats,
            4 => Self::KillNode((2 * round + 1) % 3),
            _ => Self::CrashPostgres,
        }
    }

    /// How the report names it.
    pub fn describe(self) -> String {
        match self {
            Self::KillNode(n) => format!("kill -9 node n{n}, restart it"),
            Self::NotificationFaults(true) => "providers drop, duplicate and reorder notifications".into(),
            Self::NotificationFaults(false) => "providers' notifications back to normal".into(),
            Self::RestartNats => "kill -9 NATS, restart it".into(),
            Self::CrashPostgres => "PostgreSQL crashes (immediate stop), restarts".into(),
        }
    }
}

/// A chaos action done: when (seconds into the buying), what, and how long the part
/// was out.
#[derive(Debug, Clone)]
pub struct Done {
    /// Seconds since buying began.
    pub at_secs: f64,
    /// What was done.
    pub action: Action,
    /// How long until the part was back (seconds).
    pub out_secs: f64,
}

/// What the chaos task gives back: the cluster, what it did, and why it stopped early
/// (an action that could not be completed: the soak has failed then).
pub type Outcome = (Cluster, Vec<Done>, Option<String>);

/// Works on `cluster` every `every` until `stop` (no action at all when `every` is 0),
/// then gives the cluster back with what it did. An action that fails ends the chaos
/// (the cluster is given back as it is, for the checks and the report).
pub async fn run(mut cluster: Cluster, every: Duration, stop: Arc<AtomicBool>) -> Outcome {
    let started = Instant::now();
    let mut done = Vec::new();
    if every.is_zero() {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return (cluster, done, None);
    }
    let mut next = Instant::now() + every;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let action = Action::nth(i);
        let at = Instant::now();
        if let Err(e) = act(&mut cluster, action).await {
            let why = format!("chaos #{} ({}) failed: {e:#}\n{}", i + 1, action.describe(), cluster.tails());
            println!("soak: {why}");
            return (cluster, done, Some(why));
        }
        done.push(Done {
            at_secs: (at - started).as_secs_f64(),
            action,
            out_secs: at.elapsed().as_secs_f64(),
        });
        println!(
            "soak: chaos #{}: {} ({:.1} s out)",
            i + 1,
            action.describe(),
            at.elapsed().as_secs_f64()
        );
        i += 1;
        next = Instant::now() + every;
    }
    (cluster, done, None)
}

async fn act(cluster: &mut Cluster, action: Action) -> anyhow::Result<()> {
    match action {
        Action::KillNode(n) => {
            if let Some(mut node) = cluster.nodes[n].take() {
                node.proc.kill9().await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            // As a supervisor would: try again a few times (PostgreSQL or NATS may still
            // be coming back).
            let mut tries = 0;
            loop {
                match cluster.start_node(n).await {
                    Ok(()) => return Ok(()),
                    Err(e) if tries >= 4 => return Err(e),
                    Err(e) => {
                        tries += 1;
                        println!("soak: node n{n} did not start ({e:#}); again in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }
        Action::NotificationFaults(on) => notification_faults(&cluster.spec.sandbox_url, on).await,
        Action::RestartNats => tokio::task::block_in_place(|| cluster.nats.restart()),
        Action::CrashPostgres => tokio::task::block_in_place(|| cluster.pg.ctl("restart", PgStop::Immediate)),
    }
}

/// Turns the providers' notification faults on or off at the `tare sandbox` at `url`.
pub async fn notification_faults(url: &str, on: bool) -> anyhow::Result<()> {
    let body = if on {
        json!({"drop_notifications": true, "duplicate_notifications": true, "reorder_notifications": true})
    } else {
        json!({})
    };
    let client = reqwest::Client::new();
    for provider in ["wechat", "alipay"] {
        let r = client
            .put(format!("{url}/sandbox/{provider}/behaviour"))
            .bearer_auth(SANDBOX_SECRET)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("the {provider} sandbox's behaviour"))?;
        if r.status() != reqwest::StatusCode::NO_CONTENT {
            bail!("the {provider} sandbox's behaviour: {}", r.status());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_kills_every_node_and_takes_each_server_down() {
        let first: Vec<Action> = (0..18).map(Action::nth).collect();
        for n in 0..3 {
            assert!(first.contains(&Action::KillNode(n)), "node {n} killed: {first:?}");
        }
        assert_eq!(first.iter().filter(|a| **a == Action::RestartNats).count(), 3);
        assert_eq!(first.iter().filter(|a| **a == Action::CrashPostgres).count(), 3);
        // Notification faults are turned off as often as on.
        let on = first.iter().filter(|a| **a == Action::NotificationFaults(true)).count();
        let off = first.iter().filter(|a| **a == Action::NotificationFaults(false)).count();
        assert_eq!(on, off);
    }
}
