//! How a platform is built: which store, which roles, which node, what timings. Read by
//! [`crate::Platform::start`]; the `tare` binary fills it from its flags.

use crate::clock::PlatformClock;
use std::path::PathBuf;
use tare_sagas::SagaConfig;

/// Which store to run on.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// An SQLite file under this directory.
    Sqlite(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// How to build the platform.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The store.
    pub store: StoreConfig,
    /// Saga timings.
    pub saga: SagaConfig,
    /// This node's name (which gateway node holds a device's connection).
    pub node: String,
    /// The clock.
    pub clock: PlatformClock,
    /// Effects run at once by the executor.
    pub effect_concurrency: usize,
    /// PostgreSQL pool size (the server's `max_connections` is shared by every node).
    pub pg_max_connections: u32,
    /// Device liveness [D5, B1].
    pub liveness: crate::devices::liveness::LivenessConfig,
    /// NATS JetStream (scaled out); `None`: the in-process feed loops (embedded).
    pub nats: Option<crate::cluster::NatsConfig>,
    /// What this node does.
    pub roles: Roles,
    /// Where alerts go: an operator's webhook, or `None` for the recording sandbox.
    pub alert_webhook: Option<String>,
    /// At most this many alerts a minute leave this node; the rest wait.
    pub alerts_per_minute: u32,
    /// The open-frequency risk rule [B8]: at most this many orders a shopper may begin
    /// in an hour (`None`: no limit).
    pub max_opens_per_hour: Option<u32>,
    /// The dispute-rate risk rule [B8]: no new order for a shopper who disputed this many
    /// charges in 30 days (`None`: no limit).
    pub max_disputes_per_month: Option<u32>,
}

/// Alerts a minute by default: enough for a fleet's bad hour, few enough for a pager.
pub const ALERTS_PER_MINUTE: u32 = 60;

/// What a node does (`--roles gateway,sagas,projections,api`; all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Holds device connections (MQTT, HTTP device API) and tracks their liveness.
    pub gateway: bool,
    /// Runs the sagas and the effect executor (provider calls, device commands, timers).
    pub sagas: bool,
    /// Builds the read models.
    pub projections: bool,
    /// Serves the public HTTP API.
    pub api: bool,
}

impl Roles {
    /// Every role (a single node, or any node of a uniform cluster).
    pub const ALL: Self = Self {
        gateway: true,
        sagas: true,
        projections: true,
        api: true,
    };

    /// Parses `gateway,sagas,projections,api` (any non-empty subset; `all`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut r = Self {
            gateway: false,
            sagas: false,
            projections: false,
            api: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => r = Self::ALL,
                "gateway" => r.gateway = true,
                "sagas" => r.sagas = true,
                "projections" => r.projections = true,
                "api" => r.api = true,
                "" => return Err("roles: empty entry".into()),
                other => return Err(format!("roles: unknown role {other:?} (gateway, sagas, projections, api, all)")),
            }
        }
        Ok(r)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.gateway, "gateway"),
            (self.sagas, "sagas"),
            (self.projections, "projections"),
            (self.api, "api"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        f.write_str(&names.join(","))
    }
}

impl PlatformConfig {
    /// Defaults on an SQLite store in `dir`.
    pub fn sqlite(dir: impl Into<PathBuf>) -> Self {
        Self {
            store: StoreConfig::Sqlite(dir.into()),
            saga: SagaConfig::default(),
            node: "node-1".into(),
            clock: PlatformClock::System,
            effect_concurrency: 32,
            pg_max_connections: 10,
            liveness: crate::devices::liveness::LivenessConfig::default(),
            nats: None,
            roles: Roles::ALL,
            alert_webhook: None,
            alerts_per_minute: ALERTS_PER_MINUTE,
            max_opens_per_hour: None,
            max_disputes_per_month: None,
        }
    }
}
