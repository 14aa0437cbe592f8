//! The assembled platform: the store, the aggregates, the background loops (sequencer,
//! saga runner, projections, effect executor) and the service operations the HTTP API
//! calls. Built by [`Platform::start`], stopped by [`Platform::stop`].

use crate::clock::PlatformClock;
use crate::db::{Db, DbError};
use crate::devices::DeviceHub;
use crate::feed::Feed;
use crate::jobs::Jobs;
use crate::runner::{execute_due, saga_step, EffectContext, EffectCounters};
use crate::store::{Aggregates, CommandError, Meta};
use crate::telemetry::TelemetryBuffer;
use crate::views::{project_step, Views};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tare_domain::cabinet::{Cabinet, CabinetCommand, DoorPlan, Holder, LanePlan};
use tare_domain::coupon::{Coupon, CouponPolicy};
use tare_domain::order::{Order, OrderCommand};
use tare_domain::payment::Payment;
use tare_domain::product::{Product, ProductCommand};
use tare_domain::shopper::{Shopper, ShopperCommand};
use tare_domain::weight::Tolerance;
use tare_domain::{
    CabinetId, CabinetKind, Cents, ConfirmMode, DomainError, DoorNo, GeoPoint, Grams, LaneNo, ProviderKind, RejectionKind, Sku,
};
use tare_sagas::ports::PaymentProvider;
use tare_sagas::SagaConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    pub liveness: crate::liveness::LivenessConfig,
    /// NATS JetStream (scaled out); `None`: the in-process feed loops (embedded).
    pub nats: Option<crate::cluster::NatsConfig>,
    /// What this node does.
    pub roles: Roles,
}

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
            liveness: crate::liveness::LivenessConfig::default(),
            nats: None,
            roles: Roles::ALL,
        }
    }
}

/// A service call's failure, classified for the API [API.md error shape].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// 404.
    #[error("{message}")]
    NotFound {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 409.
    #[error("{message}")]
    Conflict {
        /// Machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
    /// 422.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// 500 (logged; details not shown to callers).
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    fn from_command<E: DomainError>(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => match e.kind() {
                RejectionKind::NotFound => Self::NotFound {
                    code: e.code(),
                    message: e.to_string(),
                },
                RejectionKind::Conflict => Self::Conflict {
                    code: e.code(),
                    message: e.to_string(),
                },
                RejectionKind::Invalid => {
                    let msg = e.to_string();
                    let (field, message) = msg
                        .split_once(": ")
                        .map_or(("body".to_string(), msg.clone()), |(f, m)| (f.to_string(), m.to_string()));
                    Self::Invalid { field, message }
                }
            },
            CommandError::Conflict => Self::Conflict {
                code: "concurrent_update",
                message: "try again".into(),
            },
            CommandError::Store(s) => Self::Internal(s),
        }
    }
}

impl From<DbError> for ServiceError {
    fn from(e: DbError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A lane as an operator registers it.
#[derive(Debug, Clone)]
pub struct LaneSpec {
    /// Lane number.
    pub lane: LaneNo,
    /// Product.
    pub sku: Sku,
    /// Capacity.
    pub capacity: u32,
    /// Restock threshold.
    pub restock_threshold: u32,
    /// Scale tolerance (default if `None`).
    pub tolerance: Option<Tolerance>,
}

/// A door as an operator registers it.
#[derive(Debug, Clone)]
pub struct DoorSpec {
    /// Door number.
    pub door: DoorNo,
    /// Lanes.
    pub lanes: Vec<LaneSpec>,
}

/// The running platform.
pub struct Platform {
    /// The store.
    pub db: Db,
    /// Aggregates.
    pub aggregates: Arc<Aggregates>,
    /// The global feed.
    pub feed: Feed,
    /// Durable effects.
    pub jobs: Jobs,
    /// Read models.
    pub views: Views,
    /// The device hub.
    pub hub: Arc<DeviceHub>,
    /// Effect context (providers, devices, counters).
    pub effects: Arc<EffectContext>,
    /// The clock.
    pub clock: PlatformClock,
    /// Saga timings.
    pub saga: SagaConfig,
    /// NATS, when scaled out.
    pub nats: Option<Arc<crate::cluster::Nats>>,
    /// The feed relay to JetStream, when scaled out.
    pub relay: Option<Arc<crate::cluster::Relay>>,
    /// What this node does.
    pub roles: Roles,
    coupon_policy: watch::Sender<CouponPolicy>,
    shutdown: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// How long a loop idles before looking again when nothing woke it.
const IDLE_POLL_MS: u64 = 50;

impl Platform {
    /// Opens the store, builds everything and starts the background loops.
    pub async fn start(cfg: PlatformConfig, providers: Vec<Arc<dyn PaymentProvider>>) -> Result<Arc<Self>, DbError> {
        let db = match &cfg.store {
            StoreConfig::Sqlite(dir) => Db::open_sqlite(dir).await?,
            StoreConfig::Postgres(url) => Db::open_postgres(url, cfg.pg_max_connections).await?,
        };
        let nats = match &cfg.nats {
            Some(n) if db.is_postgres() => Some(crate::cluster::Nats::connect(n).await.map_err(|e| DbError::Config(e.to_string()))?),
            Some(_) => return Err(DbError::Config("NATS (scaled out) needs the PostgreSQL store".into())),
            None => None,
        };
        let feed = Feed::new(db.clone());
        let relay = nats
            .as_ref()
            .map(|n| Arc::new(crate::cluster::Relay::new(n.clone(), feed.clone(), db.clone())));
        let aggregates = Arc::new(Aggregates::new(&db));
        let telemetry = Arc::new(TelemetryBuffer::default());
        let telemetry_buffer = telemetry.clone();
        let hub = Arc::new(DeviceHub::new(
            aggregates.clone(),
            telemetry.clone(),
            cfg.clock.clone(),
            cfg.node.clone(),
            cfg.liveness,
        ));
        let policy = load_coupon_policy(&db).await?;
        let (coupon_policy, policy_rx) = watch::channel(policy);
        // Scaled out, a command for a device held by another gateway node goes there.
        let devices: Arc<dyn tare_sagas::ports::DeviceLink> = match &nats {
            Some(n) => Arc::new(crate::cluster::RoutedDevices::new(hub.clone(), aggregates.clone(), n.clone())),
            None => hub.clone(),
        };
        let effects = Arc::new(EffectContext {
            aggregates: aggregates.clone(),
            providers: providers.into_iter().map(|p| (p.kind(), p)).collect::<HashMap<_, _>>(),
            devices,
            telemetry,
            clock: cfg.clock.clone(),
            cfg: cfg.saga,
            coupon_policy: policy_rx,
            counters: EffectCounters::default(),
        });
        let platform = Arc::new(Self {
            feed,
            nats,
            relay,
            roles: cfg.roles,
            jobs: Jobs::new(db.clone()),
            views: Views::new(db.clone()),
            db,
            aggregates,
            hub,
            effects,
            clock: cfg.clock.clone(),
            saga: cfg.saga,
            coupon_policy,
            shutdown: watch::channel(false).0,
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        platform.spawn_loops(cfg.effect_concurrency);
        if let Some(nats) = &platform.nats {
            let mut tasks = platform.tasks.lock().unwrap_or_else(|p| p.into_inner());
            if cfg.roles.gateway {
                tasks.push(tokio::spawn(crate::cluster::serve_routed_commands(
                    nats.clone(),
                    platform.hub.clone(),
                    platform.shutdown.subscribe(),
                )));
                tasks.push(tokio::spawn(crate::cluster::forward_telemetry(
                    nats.clone(),
                    platform.hub.clone(),
                    platform.shutdown.subscribe(),
                )));
            }
            if cfg.roles.sagas {
                tasks.push(tokio::spawn(crate::cluster::ingest_telemetry(
                    nats.clone(),
                    cfg.node.clone(),
                    telemetry_buffer.clone(),
                    platform.shutdown.subscribe(),
                )));
            }
        }
        if cfg.roles.gateway {
            platform.resume_liveness().await?;
        }
        Ok(platform)
    }

    fn spawn_loops(self: &Arc<Self>, concurrency: usize) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let roles = self.roles;
        if self.db.is_postgres() {
            let p = self.clone();
            tasks.push(self.spawn_loop("feed-sequencer", move || {
                let p = p.clone();
                async move { p.feed.sequence_postgres(1000).await.map(|n| n as usize) }
            }));
        }
        match (&self.nats, &self.relay) {
            (Some(nats), Some(relay)) => {
                // Scaled out: one relay cluster-wide publishes the feed; this node's
                // workers pull their share of the partitions.
                let relay = relay.clone();
                tasks.push(self.spawn_loop("relay", move || {
                    let relay = relay.clone();
                    async move { relay.step(1000).await }
                }));
                let kinds = [
                    (roles.sagas, crate::cluster::WorkerKind::Sagas),
                    (roles.projections, crate::cluster::WorkerKind::Projections),
                ];
                for partition in 0..crate::cluster::PARTITIONS {
                    for (_, kind) in kinds.iter().filter(|(on, _)| *on) {
                        let (p, kind) = (self.clone(), *kind);
                        tasks.push(tokio::spawn(crate::cluster::consume_partition(
                            nats.clone(),
                            kind,
                            partition,
                            self.shutdown.subscribe(),
                            move |ev| {
                                let p = p.clone();
                                async move { p.apply_partition_event(kind, partition, ev).await }
                            },
                        )));
                    }
                }
            }
            _ => {
                if roles.sagas {
                    let p = self.clone();
                    tasks.push(self.spawn_loop("order-saga", move || {
                        let p = p.clone();
                        async move { saga_step(&p.feed, &p.jobs, &p.saga, p.clock.now_ms(), 500).await }
                    }));
                }
                if roles.projections {
                    let p = self.clone();
                    tasks.push(self.spawn_loop("projections", move || {
                        let p = p.clone();
                        async move {
                            let projections = tare_projections::all();
                            project_step(&p.db, &p.feed, &projections, 500).await
                        }
                    }));
                }
            }
        }
        if roles.gateway {
            let p = self.clone();
            let mut shutdown = self.shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                // Once a second of platform time; the sweep costs the devices that expired.
                // Every other second, presence and the devices of dead nodes.
                let mut ticks: u64 = 0;
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = p.clock.nap(1_000) => {}
                    }
                    if let Err(e) = p.sweep_liveness().await {
                        tracing::error!(error = %e, "liveness sweep failed");
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(2) {
                        if let Err(e) = p.judge_orphans().await {
                            tracing::error!(error = %e, "judging a dead node's devices failed");
                        }
                    }
                }
            }));
        }
        if roles.sagas {
            let p = self.clone();
            tasks.push(self.spawn_loop("effects", move || {
                let p = p.clone();
                async move { execute_due(&p.effects, &p.jobs, 256, concurrency).await }
            }));
        }
    }

    /// Applies one event of `partition` from the event stream for worker `kind`, with
    /// the partition's checkpoint; false when it was applied before (a redelivery).
    async fn apply_partition_event(
        &self,
        kind: crate::cluster::WorkerKind,
        partition: u16,
        ev: crate::feed::FeedEvent,
    ) -> Result<bool, DbError> {
        let name = kind.checkpoint(partition);
        match kind {
            crate::cluster::WorkerKind::Sagas => {
                crate::runner::saga_events(&self.jobs, &name, &[ev], &self.saga, self.clock.now_ms()).await
            }
            crate::cluster::WorkerKind::Projections => {
                let projections = tare_projections::all();
                crate::views::project_events(&self.db, &name, &[ev], &projections)
                    .await
                    .map(|n| n > 0)
            }
        }
    }

    /// Runs `step` until shutdown; when a step did nothing, waits for a commit, a clock
    /// move or a short poll interval.
    fn spawn_loop<F, Fut, E>(self: &Arc<Self>, name: &'static str, step: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<usize, E>> + Send,
        E: std::fmt::Display,
    {
        let mut shutdown = self.shutdown.subscribe();
        let mut commits = self.aggregates.commits();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    break;
                }
                match step().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::error!(loop_name = name, error = %e, "background step failed"),
                }
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = commits.changed() => {}
                    _ = clock.nap(IDLE_POLL_MS) => {}
                }
            }
        })
    }

    /// After a restart, the cabinets this node last held as connected are tracked from
    /// now: a device whose connection died with the old process and never comes back is
    /// recorded offline once the threshold passes, instead of staying `online` forever.
    async fn resume_liveness(&self) -> Result<(), DbError> {
        let sql = "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'cabinet'";
        let ids: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await.map_err(DbError::from)?);
        let now = self.clock.now_ms();
        for (id,) in ids {
            let Ok(cabinet) = self.aggregates.cabinets.load(&id).await else {
                continue;
            };
            let connected = matches!(
                cabinet.status,
                tare_domain::cabinet::DeviceStatus::Online | tare_domain::cabinet::DeviceStatus::PendingInit
            );
            if let (true, Some(node), Ok(cid)) = (connected, &cabinet.node, CabinetId::parse(&id)) {
                if *node == self.hub.node() && !self.hub.is_attached(&cid) {
                    self.hub.liveness.connected(&cid, now);
                }
            }
        }
        Ok(())
    }

    /// Runs one liveness sweep now [D5, B1]: devices silent past the threshold are
    /// recorded offline (`DeviceWentSilent`, the operators' alert) if the platform is
    /// healthy; otherwise they show `unknown` until it is, and are then recomputed.
    pub async fn sweep_liveness(&self) -> Result<crate::liveness::Sweep, ServiceError> {
        let now = self.clock.now_ms();
        let sweep = self.hub.liveness.sweep(now);
        if sweep.undecided > 0 {
            tracing::warn!(
                undecided = sweep.undecided,
                "devices silent while heartbeat intake is below the watermark: shown unknown, no alerts"
            );
        }
        for (device, last_seen) in &sweep.silent {
            tracing::warn!(%device, last_seen, "device silent: marked offline");
            self.aggregates
                .cabinets
                .execute(
                    &device.to_string(),
                    CabinetCommand::MarkSilent {
                        last_seen: *last_seen,
                        held_by: Some(self.hub.node().to_string()),
                        at: now,
                    },
                    self.meta(&device.to_string(), "liveness:sweep"),
                )
                .await
                .map_err(ServiceError::from_command)?;
            self.hub.counters.silent_alerts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(sweep)
    }

    /// Scaled out, on a gateway node: announces this node as alive, then — on one node
    /// at a time (advisory lock) — judges the devices of gateway nodes that stopped
    /// announcing themselves: a device that has not reconnected through another node by
    /// the heartbeat threshold (counted from the last moment its node was seen) is
    /// recorded offline, exactly as its own node would have done [D5]. The work is the
    /// dead nodes' devices, read from the `device_presence` view by node. Returns how
    /// many devices it recorded offline.
    pub async fn judge_orphans(&self) -> Result<usize, ServiceError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(0);
        };
        let now = self.clock.now_ms();
        let me = self.hub.node().to_string();
        sqlx::query("INSERT INTO nodes (name, roles, seen_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET roles = excluded.roles, seen_at = excluded.seen_at")
            .bind(&me)
            .bind(self.roles.to_string())
            .bind(now)
            .execute(pool)
            .await
            .map_err(DbError::from)?;
        let cfg = self.hub.liveness.config();
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        let (lead,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock(7361628)")
            .fetch_one(&mut *tx)
            .await
            .map_err(DbError::from)?;
        if !lead {
            return Ok(0);
        }
        let dead: Vec<(String, i64)> = sqlx::query_as("SELECT name, seen_at FROM nodes WHERE seen_at < $1 AND name <> $2")
            .bind(now - cfg.node_timeout_ms)
            .bind(&me)
            .fetch_all(&mut *tx)
            .await
            .map_err(DbError::from)?;
        if !dead.is_empty() && !self.hub.liveness.health(now).healthy {
            // B1: this node's own intake is in doubt; judge nobody now.
            return Ok(0);
        }
        let mut marked = 0;
        for (node, seen_at) in dead {
            let docs = self.views.by_owner(tare_projections::DevicePresence::VIEW, &node, 100_000).await?;
            for doc in docs {
                let Ok(p) = serde_json::from_value::<tare_projections::PresenceDoc>(doc) else {
                    continue;
                };
                let last_seen = seen_at.max(p.at);
                if now < last_seen + cfg.threshold_ms {
                    continue;
                }
                tracing::warn!(device = %p.cabinet, %node, last_seen, "device of a dead gateway node silent: marked offline");
                self.aggregates
                    .cabinets
                    .execute(
                        &p.cabinet,
                        CabinetCommand::MarkSilent {
                            last_seen,
                            held_by: Some(node.clone()),
                            at: now,
                        },
                        self.meta(&p.cabinet, "liveness:orphans"),
                    )
                    .await
                    .map_err(ServiceError::from_command)?;
                self.hub.counters.silent_alerts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                marked += 1;
            }
        }
        tx.commit().await.map_err(DbError::from)?;
        Ok(marked)
    }

    /// Stops the background loops and closes the store.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Some(relay) = &self.relay {
            relay.release().await;
        }
        self.db.close().await;
    }

    fn meta(&self, correlation: &str, cause: &str) -> Meta {
        Meta::new(self.clock.now_ms(), correlation, cause)
    }

    /// The operator's coupon rule.
    pub fn coupon_policy(&self) -> CouponPolicy {
        *self.coupon_policy.borrow()
    }

    /// Sets the operator's coupon rule [O7].
    pub async fn set_coupon_policy(&self, policy: CouponPolicy) -> Result<(), ServiceError> {
        let value = serde_json::to_string(&policy).map_err(|e| ServiceError::Internal(e.to_string()))?;
        crate::on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO settings (key, value) VALUES ('coupon_policy', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(&value).execute(pool).await.map_err(DbError::from)?;
        });
        self.coupon_policy.send_replace(policy);
        Ok(())
    }

    /// Registers a product [C1].
    pub async fn register_product(&self, sku: Sku, name: String, unit_grams: Grams, price: Cents) -> Result<Product, ServiceError> {
        let at = self.clock.now_ms();
        let cmd = ProductCommand::Register {
            sku: sku.clone(),
            name,
            unit_grams,
            price,
            at,
        };
        self.aggregates
            .products
            .execute(sku.as_str(), cmd, self.meta(sku.as_str(), "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.aggregates
            .products
            .load(sku.as_str())
            .await
            .map_err(ServiceError::from_command)
    }

    /// Registers a cabinet with its planogram and stores its device secret [C1, D2].
    pub async fn register_cabinet(
        &self,
        id: CabinetId,
        kind: CabinetKind,
        location: GeoPoint,
        doors: Vec<DoorSpec>,
        device_secret: &str,
    ) -> Result<Cabinet, ServiceError> {
        if kind == CabinetKind::Locker {
            if let Some(i) = doors.iter().position(|d| !d.lanes.is_empty()) {
                return Err(ServiceError::Invalid {
                    field: format!("doors[{i}].lanes"),
                    message: "a locker compartment has no lanes".into(),
                });
            }
        }
        let mut plans = Vec::new();
        for (i, d) in doors.iter().enumerate() {
            let mut lanes = Vec::new();
            for (j, l) in d.lanes.iter().enumerate() {
                let p = self
                    .aggregates
                    .products
                    .load(l.sku.as_str())
                    .await
                    .map_err(ServiceError::from_command)?;
                if !p.exists() {
                    return Err(ServiceError::Invalid {
                        field: format!("doors[{i}].lanes[{j}].sku"),
                        message: format!("unknown product {}", l.sku),
                    });
                }
                lanes.push(LanePlan {
                    lane: l.lane,
                    sku: l.sku.clone(),
                    name: p.name.clone(),
                    unit_grams: p.unit_grams,
                    price: p.price,
                    capacity: l.capacity,
                    restock_threshold: l.restock_threshold,
                    tolerance: l.tolerance.unwrap_or_default(),
                });
            }
            plans.push(DoorPlan { door: d.door, lanes });
        }
        let key = id.to_string();
        let cmd = CabinetCommand::Register {
            id: id.clone(),
            kind,
            location,
            doors: plans,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .cabinets
            .execute(&key, cmd, self.meta(&key, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        crate::on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO device_credentials (cabinet, secret) VALUES ($1, $2) ON CONFLICT (cabinet) DO NOTHING")
                .bind(&key).bind(device_secret).execute(pool).await.map_err(DbError::from)?;
        });
        self.cabinet(&id).await
    }

    /// A cabinet's state (404 if unknown).
    pub async fn cabinet(&self, id: &CabinetId) -> Result<Cabinet, ServiceError> {
        let c = self
            .aggregates
            .cabinets
            .load(&id.to_string())
            .await
            .map_err(ServiceError::from_command)?;
        if c.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "cabinet_not_found",
                message: format!("cabinet {id} not found"),
            });
        }
        Ok(c)
    }

    /// Issues a command to a cabinet [D7]: recorded, then delivered and resent until the
    /// device acknowledges it or it expires (`ttl_ms` from now). Returns its id.
    pub async fn issue_command(
        &self,
        cabinet: &CabinetId,
        spec: tare_domain::command::CommandSpec,
        ttl_ms: i64,
        issued_by: &str,
    ) -> Result<String, ServiceError> {
        self.cabinet(cabinet).await?;
        let at = self.clock.now_ms();
        let cmd_id = format!("cmd-{}", uuid::Uuid::now_v7().simple());
        let step = tare_domain::command::CommandStep::Issue {
            cabinet: cabinet.clone(),
            spec,
            expires_at: at + ttl_ms,
            issued_by: issued_by.to_string(),
            at,
        };
        self.aggregates
            .commands
            .execute(&cmd_id, step, Meta::new(at, cmd_id.as_str(), issued_by))
            .await
            .map_err(ServiceError::from_command)?;
        Ok(cmd_id)
    }

    /// A device command's record.
    pub async fn command(&self, cmd_id: &str) -> Result<tare_domain::command::DeviceCommand, ServiceError> {
        let c = self.aggregates.commands.load(cmd_id).await.map_err(ServiceError::from_command)?;
        if c.spec.is_none() {
            return Err(ServiceError::NotFound {
                code: "command_not_found",
                message: format!("command {cmd_id} not found"),
            });
        }
        Ok(c)
    }

    /// Lets a device connect again, or shuts it out: its credentials are refused while it
    /// is disabled, and a live connection is closed now [D2].
    pub async fn set_device_access(&self, id: &CabinetId, enabled: bool, by: &str) -> Result<(), ServiceError> {
        self.cabinet(id).await?;
        let key = id.to_string();
        let flag = i32::from(!enabled);
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE device_credentials SET disabled = $1 WHERE cabinet = $2")
                .bind(flag).bind(&key).execute(pool).await.map_err(DbError::from)?;
        });
        let at = self.clock.now_ms();
        self.aggregates
            .cabinets
            .execute(
                &key,
                CabinetCommand::SetDeviceAccess {
                    enabled,
                    by: by.to_string(),
                    at,
                },
                self.meta(&key, "operator:device-access"),
            )
            .await
            .map_err(ServiceError::from_command)?;
        if !enabled {
            self.hub.kick(id).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// A device's secret (for signing checks at the gateway).
    pub async fn device_secret(&self, id: &CabinetId) -> Result<Option<String>, ServiceError> {
        let sql = "SELECT secret FROM device_credentials WHERE cabinet = $1 AND disabled = 0";
        let row: Option<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(id.to_string()).fetch_optional(pool).await.map_err(DbError::from)?);
        Ok(row.map(|r| r.0))
    }

    /// Creates a shopper with the account, atomically [A1].
    pub async fn create_shopper(
        &self,
        shopper_id: &str,
        phone: String,
        provider: ProviderKind,
        confirm_mode: ConfirmMode,
        token_sha256: String,
    ) -> Result<Shopper, ServiceError> {
        let cmd = ShopperCommand::Create {
            shopper_id: shopper_id.to_string(),
            phone,
            provider,
            confirm_mode,
            token_sha256,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, cmd, self.meta(shopper_id, "api"))
            .await
            .map_err(ServiceError::from_command)?;
        self.shopper(shopper_id).await
    }

    /// A shopper (404 if unknown).
    pub async fn shopper(&self, shopper_id: &str) -> Result<Shopper, ServiceError> {
        let s = self
            .aggregates
            .shoppers
            .load(shopper_id)
            .await
            .map_err(ServiceError::from_command)?;
        if s.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "shopper_not_found",
                message: "shopper not found".into(),
            });
        }
        Ok(s)
    }

    /// Puts a coupon in a shopper's wallet.
    pub async fn grant_coupon(&self, shopper_id: &str, coupon: Coupon) -> Result<(), ServiceError> {
        let cmd = ShopperCommand::GrantCoupon {
            coupon,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .shoppers
            .execute(shopper_id, cmd, self.meta(shopper_id, "api"))
            .await
            .map_err(ServiceError::from_command)
    }

    /// A scan [O1, O2]: takes the shopper's open-order slot, then the door, then creates
    /// the order (the saga takes it from there). Whatever step refuses, the earlier ones
    /// are undone and nothing else changes.
    pub async fn create_order(&self, shopper_id: &str, cabinet_id: &CabinetId, door: DoorNo) -> Result<Order, ServiceError> {
        let shopper = self.shopper(shopper_id).await?;
        let cabinet = self.cabinet(cabinet_id).await?;
        let door_state = cabinet.door(door).map_err(|e| ServiceError::NotFound {
            code: "door_not_found",
            message: e.to_string(),
        })?;
        let lanes: Vec<LanePlan> = door_state.lanes.values().map(|l| l.plan.clone()).collect();
        // Refuse an unavailable cabinet before touching the shopper (the door is checked
        // again, atomically, when it is taken).
        if cabinet.status != tare_domain::cabinet::DeviceStatus::Online {
            let e = tare_domain::cabinet::CabinetError::NotAvailable(match cabinet.status {
                tare_domain::cabinet::DeviceStatus::Offline => "offline",
                tare_domain::cabinet::DeviceStatus::Faulty => "faulty",
                _ => "pending_init",
            });
            return Err(ServiceError::from_command(CommandError::Rejected(e)));
        }
        if let Some(holder) = &door_state.holder {
            let still_busy = match holder {
                Holder::Order { order_id, .. } => {
                    let prev = self.aggregates.orders.load(order_id).await.map_err(ServiceError::from_command)?;
                    !(prev.state.is_terminal() || prev.state == tare_domain::order::OrderState::Charging)
                }
                _ => true,
            };
            if still_busy {
                return Err(ServiceError::from_command(CommandError::Rejected(
                    tare_domain::cabinet::CabinetError::DoorBusy,
                )));
            }
        }
        let (Some(provider), Some(confirm_mode)) = (shopper.provider, shopper.confirm_mode) else {
            return Err(ServiceError::Internal("shopper without provider".into()));
        };
        let order_id = uuid::Uuid::now_v7().to_string();
        let at = self.clock.now_ms();
        let meta = || self.meta(&order_id, "api:create_order");
        self.begin_shopper_order(shopper_id, &order_id, at).await?;
        let holder = Holder::Order {
            order_id: order_id.clone(),
            shopper_id: shopper_id.to_string(),
        };
        if let Err(e) = self.acquire_door(&cabinet, cabinet_id, door, holder, at, &order_id).await {
            let undo = ShopperCommand::EndOrder {
                order_id: order_id.clone(),
                outcome: "abandoned".into(),
                at,
            };
            if let Err(u) = self.aggregates.shoppers.execute(shopper_id, undo, meta()).await {
                tracing::error!(%order_id, error = %u, "could not release the shopper's order slot");
            }
            return Err(ServiceError::from_command(e));
        }
        let cmd = OrderCommand::Create {
            order_id: order_id.clone(),
            shopper_id: shopper_id.to_string(),
            cabinet: cabinet_id.clone(),
            door,
            provider,
            confirm_mode,
            lanes,
            planogram_version: cabinet.planogram_version,
            auth_deadline: at + self.saga.auth_timeout_ms,
            at,
        };
        self.aggregates
            .orders
            .execute(&order_id, cmd, meta())
            .await
            .map_err(ServiceError::from_command)?;
        self.order(&order_id).await
    }

    /// Runs one of the saga's (idempotent) effects now, ahead of the executor: used when a
    /// scan would otherwise be refused because an ended order's clean-up has not run yet.
    async fn run_effect_now(&self, key: String, effect: tare_sagas::Effect, at: tare_domain::UnixMs) -> crate::runner::EffectOutcome {
        self.effects
            .run(&crate::jobs::ClaimedJob {
                key,
                effect,
                attempts: 0,
                due_at: at,
            })
            .await
    }

    /// Takes a door. If the previous purchase on it has finished weighing but its
    /// door-release effect has not run yet, runs that (idempotent) effect now.
    async fn acquire_door(
        &self,
        cabinet: &Cabinet,
        cabinet_id: &CabinetId,
        door: DoorNo,
        holder: Holder,
        at: tare_domain::UnixMs,
        order_id: &str,
    ) -> Result<(), CommandError<tare_domain::cabinet::CabinetError>> {
        let acquire = || CabinetCommand::AcquireDoor {
            door,
            holder: holder.clone(),
            at,
        };
        let first = self
            .aggregates
            .cabinets
            .execute(&cabinet_id.to_string(), acquire(), self.meta(order_id, "api:create_order"))
            .await;
        let Err(CommandError::Rejected(tare_domain::cabinet::CabinetError::DoorBusy)) = first else {
            return first;
        };
        let fresh = self.aggregates.cabinets.load(&cabinet_id.to_string()).await?;
        let held_by = fresh
            .door(door)
            .ok()
            .and_then(|d| d.holder.clone())
            .or_else(|| cabinet.door(door).ok().and_then(|d| d.holder.clone()));
        if let Some(Holder::Order { order_id: previous, .. }) = held_by {
            let prev = self
                .aggregates
                .orders
                .load(&previous)
                .await
                .map_err(|e| CommandError::Store(e.to_string()))?;
            if prev.state.is_terminal() || prev.state == tare_domain::order::OrderState::Charging {
                let _ = self
                    .run_effect_now(
                        format!("order:{previous}:finish-door"),
                        tare_sagas::Effect::FinishDoorSession {
                            order_id: previous.clone(),
                        },
                        at,
                    )
                    .await;
                return self
                    .aggregates
                    .cabinets
                    .execute(&cabinet_id.to_string(), acquire(), self.meta(order_id, "api:create_order"))
                    .await;
            }
        }
        first
    }

    /// Takes the shopper's open-order slot. If an earlier order still holds it but has
    /// already ended (its slot is freed by an effect that may not have run yet), frees it
    /// now instead of refusing the shopper.
    async fn begin_shopper_order(&self, shopper_id: &str, order_id: &str, at: tare_domain::UnixMs) -> Result<(), ServiceError> {
        use crate::store::CommandError;
        use tare_domain::shopper::ShopperError;
        let meta = || self.meta(order_id, "api:create_order");
        let begin = || ShopperCommand::BeginOrder {
            order_id: order_id.to_string(),
            at,
        };
        match self.aggregates.shoppers.execute(shopper_id, begin(), meta()).await {
            Err(CommandError::Rejected(ShopperError::UnpaidOrder(previous))) => {
                let unpaid = || ServiceError::Conflict {
                    code: "unpaid_order",
                    message: format!("shopper has an unpaid order {previous}"),
                };
                // An order being created right now by another request does not exist yet.
                let prev = self.order(&previous).await.map_err(|_| unpaid())?;
                if !prev.state.is_terminal() {
                    return Err(ServiceError::Conflict {
                        code: "unpaid_order",
                        message: format!("shopper has an unpaid order {previous}"),
                    });
                }
                if matches!(
                    prev.state,
                    tare_domain::order::OrderState::Cancelled | tare_domain::order::OrderState::Abnormal
                ) {
                    // Its provider-side order must be gone before the next one is asked
                    // for (a provider limits open orders per shopper): run the saga's
                    // idempotent cancel now rather than wait for it.
                    let effect = tare_sagas::Effect::CancelPayment {
                        order_id: previous.clone(),
                        reason: "order_ended".into(),
                    };
                    if let crate::runner::EffectOutcome::Retry(e) | crate::runner::EffectOutcome::Bury(e) =
                        self.run_effect_now(format!("order:{previous}:cancel-payment"), effect, at).await
                    {
                        return Err(ServiceError::Conflict {
                            code: "previous_order_closing",
                            message: format!("the previous order is still closing at the provider: {e}"),
                        });
                    }
                }
                let end = ShopperCommand::EndOrder {
                    order_id: previous,
                    outcome: format!("{:?}", prev.state).to_lowercase(),
                    at,
                };
                self.aggregates
                    .shoppers
                    .execute(shopper_id, end, meta())
                    .await
                    .map_err(ServiceError::from_command)?;
                self.aggregates
                    .shoppers
                    .execute(shopper_id, begin(), meta())
                    .await
                    .map_err(ServiceError::from_command)
            }
            other => other.map_err(ServiceError::from_command),
        }
    }

    /// An order (404 if unknown).
    pub async fn order(&self, order_id: &str) -> Result<Order, ServiceError> {
        let o = self.aggregates.orders.load(order_id).await.map_err(ServiceError::from_command)?;
        if o.id.is_none() {
            return Err(ServiceError::NotFound {
                code: "order_not_found",
                message: "order not found".into(),
            });
        }
        Ok(o)
    }

    /// An order's payment (default state if not opened yet).
    pub async fn payment(&self, order_id: &str) -> Result<Payment, ServiceError> {
        self.aggregates.payments.load(order_id).await.map_err(ServiceError::from_command)
    }

    /// Applies a verified provider notification that the shopper authorized [P2].
    pub async fn provider_authorized(&self, order_id: &str, notification_id: &str) -> Result<(), ServiceError> {
        let cmd = tare_domain::payment::PaymentCommand::ConfirmAuthorization {
            notification_id: Some(notification_id.to_string()),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .payments
            .execute(order_id, cmd, self.meta(order_id, &format!("callback:{notification_id}")))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Applies a verified provider notification that money was collected [P2].
    pub async fn provider_collected(
        &self,
        order_id: &str,
        notification_id: &str,
        transaction_id: String,
        amount: Cents,
    ) -> Result<(), ServiceError> {
        let cmd = tare_domain::payment::PaymentCommand::RecordCollected {
            transaction_id,
            amount,
            notification_id: Some(notification_id.to_string()),
            at: self.clock.now_ms(),
        };
        self.aggregates
            .payments
            .execute(order_id, cmd, self.meta(order_id, &format!("callback:{notification_id}")))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Applies a verified provider notification that a deduction failed [P2].
    pub async fn provider_collection_failed(&self, order_id: &str, notification_id: &str, reason: String) -> Result<(), ServiceError> {
        let cmd = tare_domain::payment::PaymentCommand::RecordCollectionFailed {
            reason,
            at: self.clock.now_ms(),
        };
        self.aggregates
            .payments
            .execute(order_id, cmd, self.meta(order_id, &format!("callback:{notification_id}")))
            .await
            .map_err(ServiceError::from_command)
    }

    /// Orders of a shopper from the read model, newest first.
    pub async fn orders_of(&self, shopper_id: &str, limit: i64) -> Result<Vec<tare_projections::OrderSummary>, ServiceError> {
        let docs = self.views.by_owner("order_summary", shopper_id, 10_000).await?;
        let mut out: Vec<tare_projections::OrderSummary> = docs.into_iter().filter_map(|d| serde_json::from_value(d).ok()).collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.order_id.cmp(&a.order_id)));
        out.truncate(limit.max(0) as usize);
        Ok(out)
    }
}

async fn load_coupon_policy(db: &Db) -> Result<CouponPolicy, DbError> {
    let sql = "SELECT value FROM settings WHERE key = 'coupon_policy'";
    let row: Option<(String,)> = crate::on_db!(db, pool => sqlx::query_as(sql).fetch_optional(pool).await?);
    Ok(match row {
        Some((v,)) => serde_json::from_str(&v)?,
        None => CouponPolicy::default(),
    })
}
