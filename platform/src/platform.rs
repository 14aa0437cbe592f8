//! The assembled platform: [`Platform::start`] opens the store, builds the aggregates,
//! the device hub and the effect executor, and spawns the background loops (sequencer,
//! saga runner, projections, effects and timers, liveness; scaled out: the relay and the
//! partition consumers); [`Platform::stop`] stops them. The operations the API calls are in
//! [`crate::service`].

use crate::clock::PlatformClock;
use crate::config::{PlatformConfig, Roles, StoreConfig};
use crate::db::{Db, DbError};
use crate::devices::telemetry::TelemetryBuffer;
use crate::devices::DeviceHub;
use crate::effect_lanes::EffectLanes;
use crate::feed::Feed;
use crate::jobs::Jobs;
use crate::runner::{saga_step, EffectCounters, Effects, WatchedSettings};
use crate::service::catalogue::load_coupon_policy;
use crate::store::{Aggregates, Meta};
use crate::views::{project_step, Views};
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::coupon::CouponPolicy;
use tare_domain::UnixMs;
use tare_sagas::ports::{EffectPorts, PaymentProvider};
use tare_sagas::SagaConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running platform. Its subsystems are private to this crate: the edges use the
/// service operations ([`crate::service`]), the device transports use [`Platform::devices`],
/// and monitoring reads [`Platform::metrics`].
pub struct Platform {
    /// The store.
    pub(crate) db: Db,
    /// Aggregates.
    pub(crate) aggregates: Arc<Aggregates>,
    /// The global feed.
    pub(crate) feed: Feed,
    /// Durable effects.
    pub(crate) jobs: Jobs,
    /// Read models.
    pub(crate) views: Views,
    /// The keys of personal data, outside the log (crypto-shredding).
    pub(crate) personal: crate::personal_data::PersonalData,
    /// The device hub.
    pub(crate) hub: Arc<DeviceHub>,
    /// The weight history [D6].
    pub(crate) history: Arc<crate::weight_history::WeightHistory>,
    /// Effect context (providers, devices, counters).
    pub(crate) effects: Arc<Effects>,
    /// The effect executor, on a node that runs the sagas.
    effect_lanes: std::sync::OnceLock<Arc<EffectLanes>>,
    /// The clock.
    pub(crate) clock: PlatformClock,
    /// Saga timings.
    pub(crate) saga: SagaConfig,
    /// The open-frequency risk rule [B8].
    pub(crate) max_opens_per_hour: Option<u32>,
    /// The dispute-rate risk rule [B8].
    pub(crate) max_disputes_per_month: Option<u32>,
    /// The recording alert sandbox, when no webhook is configured.
    alert_outbox: Option<Arc<crate::alerts::AlertOutbox>>,
    /// NATS, when scaled out.
    pub(crate) nats: Option<Arc<crate::cluster::Nats>>,
    /// The feed relay to JetStream, when scaled out.
    pub(crate) relay: Option<Arc<crate::cluster::Relay>>,
    /// What this node does.
    pub(crate) roles: Roles,
    pub(crate) coupon_policy: watch::Sender<CouponPolicy>,
    shutdown: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// What wakes a background loop besides shutdown, the clock and its idle poll.
enum Wake {
    /// Every commit in this process, and changes of the receiver if given; after a pass
    /// that did work, waits this many milliseconds before the next (0: none), so that one
    /// pass takes what many commits wrote.
    Commits(Option<watch::Receiver<u64>>, u64),
    /// Changes of this receiver only.
    Only(watch::Receiver<u64>),
}

/// How long the projections gather commits after a pass that did work.
const PROJECTIONS_GATHER_MS: u64 = 10;

/// How long the saga gathers commits after a pass that did work (every hop of a purchase
/// may wait this long: kept short).
const SAGA_GATHER_MS: u64 = 2;

/// How long a loop idles before looking again when nothing woke it.
const IDLE_POLL_MS: u64 = 50;

/// Effects one node holds at once (claimed, running or waiting behind their order's
/// running effect).
const MAX_HELD_EFFECTS: usize = 256;

/// PostgreSQL's feed sequencer idles shorter: a commit it was woken for is numbered only
/// once the transactions older than it have ended, usually a few milliseconds later.
const SEQUENCER_IDLE_MS: u64 = 5;

/// Where alerts go: the operator's webhook, or the recording sandbox (returned too, for
/// `GET /sandbox/alerts`); either behind the per-minute limit.
fn alert_sink(cfg: &PlatformConfig) -> (Arc<dyn tare_sagas::ports::AlertSink>, Option<Arc<crate::alerts::AlertOutbox>>) {
    let outbox = Arc::new(crate::alerts::AlertOutbox::default());
    let alerts: Arc<dyn tare_sagas::ports::AlertSink> = match &cfg.alert_webhook {
        Some(url) => Arc::new(crate::alerts::RateLimited::new(
            crate::alerts::WebhookSink::new(url.clone(), std::time::Duration::from_secs(5)),
            cfg.alerts_per_minute,
        )),
        None => Arc::new(crate::alerts::RateLimited::new(
            crate::alerts::SharedOutbox(outbox.clone()),
            cfg.alerts_per_minute,
        )),
    };
    (alerts, cfg.alert_webhook.is_none().then_some(outbox))
}

/// Connects to NATS when scaled out (which needs PostgreSQL), with the event stream
/// bound to this store ([`crate::cluster::Nats::bind_to_store`]).
async fn connect_nats(
    cfg: Option<&crate::cluster::NatsConfig>,
    db: &Db,
    feed: &Feed,
) -> Result<Option<Arc<crate::cluster::Nats>>, DbError> {
    let Some(n) = cfg else { return Ok(None) };
    if !db.is_postgres() {
        return Err(DbError::Config("NATS (scaled out) needs the PostgreSQL store".into()));
    }
    let nats = crate::cluster::Nats::connect(n).await.map_err(|e| DbError::Config(e.to_string()))?;
    let store_id = db.store_id().await?;
    nats.bind_to_store(&store_id, feed.head().await?)
        .await
        .map_err(|e| DbError::Config(e.to_string()))?;
    Ok(Some(nats))
}

impl Platform {
    /// Opens the store, builds everything and starts the background loops.
    pub async fn start(cfg: PlatformConfig, providers: Vec<Arc<dyn PaymentProvider>>) -> Result<Arc<Self>, DbError> {
        let db = match &cfg.store {
            StoreConfig::Sqlite(dir) => Db::open_sqlite(dir).await?,
            StoreConfig::Postgres(url) => Db::open_postgres(url, cfg.pg_max_connections).await?,
        };
        let feed = Feed::new(db.clone());
        let nats = connect_nats(cfg.nats.as_ref(), &db, &feed).await?;
        let relay = nats
            .as_ref()
            .map(|n| Arc::new(crate::cluster::Relay::new(n.clone(), feed.clone(), db.clone())));
        let aggregates = Arc::new(Aggregates::new(&db, cfg.nats.is_none()));
        let telemetry = Arc::new(TelemetryBuffer::default());
        let telemetry_buffer = telemetry.clone();
        let hub = Arc::new(DeviceHub::new(
            aggregates.clone(),
            telemetry.clone(),
            cfg.clock.clone(),
            cfg.node.clone(),
            cfg.liveness,
        ));
        let sqlite_dir = match &cfg.store {
            StoreConfig::Sqlite(dir) => Some(dir.as_path()),
            StoreConfig::Postgres(_) => None,
        };
        let history = crate::weight_history::WeightHistory::open(&db, sqlite_dir).await?;
        hub.set_history(history.clone());
        hub.set_log(db.clone());
        let policy = load_coupon_policy(&db).await?;
        let (coupon_policy, policy_rx) = watch::channel(policy);
        // Scaled out, a command for a device held by another gateway node goes there.
        let devices: Arc<dyn tare_sagas::ports::DeviceLink> = match &nats {
            Some(n) => Arc::new(crate::cluster::RoutedDevices::new(hub.clone(), aggregates.clone(), n.clone())),
            None => hub.clone(),
        };
        let (alerts, alert_outbox) = alert_sink(&cfg);
        let effects = Arc::new(Effects {
            ports: EffectPorts {
                orders: aggregates.orders.clone(),
                payments: aggregates.payments.clone(),
                cabinets: aggregates.cabinets.clone(),
                shoppers: aggregates.shoppers.clone(),
                commands: aggregates.commands.clone(),
                anomalies: aggregates.anomalies.clone(),
                restocks: aggregates.restocks.clone(),
                campaigns: aggregates.campaigns.clone(),
                products: aggregates.products.clone(),
                planograms: Arc::new(crate::views::ViewPlanograms(Views::new(db.clone()))),
                alerts,
                providers: providers.into_iter().map(|p| (p.kind(), p)).collect::<HashMap<_, _>>(),
                devices,
                telemetry,
                settings: Arc::new(WatchedSettings(policy_rx)),
                clock: Arc::new(cfg.clock.clone()),
            },
            cfg: cfg.saga,
            counters: EffectCounters::default(),
            platform: std::sync::OnceLock::new(),
        });
        let scaled_out = nats.is_some();
        let platform = Arc::new(Self {
            feed,
            nats,
            relay,
            roles: cfg.roles,
            jobs: Jobs::new(db.clone()).shared(scaled_out),
            views: Views::new(db.clone()),
            personal: crate::personal_data::PersonalData::new(db.clone()),
            db,
            aggregates,
            hub,
            history,
            effects,
            effect_lanes: std::sync::OnceLock::new(),
            clock: cfg.clock.clone(),
            saga: cfg.saga,
            alert_outbox,
            max_opens_per_hour: cfg.max_opens_per_hour,
            max_disputes_per_month: cfg.max_disputes_per_month,
            coupon_policy,
            shutdown: watch::channel(false).0,
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let _ = platform.effects.platform.set(Arc::downgrade(&platform));
        if cfg.roles.sagas {
            platform.arm_nightly_bills().await?;
        }
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
            let clock = platform.clock.clone();
            let writer = platform.history.clone().run(move || clock.now_ms(), platform.shutdown.subscribe());
            platform.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(tokio::spawn(writer));
        }
        Ok(platform)
    }

    fn spawn_loops(self: &Arc<Self>, concurrency: usize) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let roles = self.roles;
        if self.db.is_postgres() {
            let p = self.clone();
            // A commit wakes it, but an event is numbered only once every older
            // transaction has ended: look again soon rather than at the idle poll.
            tasks.push(self.spawn_loop_woken("feed-sequencer", None, SEQUENCER_IDLE_MS, move || {
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
                    let sequenced = self.feed.sequenced();
                    let cursor = Arc::new(crate::runner::Cursor::unknown());
                    let wake = Wake::Commits(Some(sequenced), SAGA_GATHER_MS);
                    tasks.push(self.spawn_loop_on("order-saga", wake, IDLE_POLL_MS, move || {
                        let (p, cursor) = (p.clone(), cursor.clone());
                        async move { saga_step(&p.feed, &p.jobs, &p.saga, p.clock.now_ms(), 500, &cursor).await }
                    }));
                }
                if roles.projections {
                    let p = self.clone();
                    let sequenced = self.feed.sequenced();
                    let cursor = Arc::new(crate::runner::Cursor::unknown());
                    // Views may trail a few milliseconds: gathering the events of many
                    // commits into one pass spares the single writer most of the passes
                    // (each a handful of statements), which purchases need.
                    let wake = Wake::Commits(Some(sequenced), PROJECTIONS_GATHER_MS);
                    tasks.push(self.spawn_loop_on("projections", wake, IDLE_POLL_MS, move || {
                        let (p, cursor) = (p.clone(), cursor.clone());
                        async move {
                            let projections = tare_projections::all();
                            project_step(&p.db, &p.feed, &projections, 500, &cursor).await
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
            let scheduled = self.jobs.scheduled();
            let lanes = EffectLanes::new(
                self.effects.clone(),
                self.jobs.clone(),
                self.clock.clone(),
                concurrency,
                MAX_HELD_EFFECTS,
            );
            let _ = self.effect_lanes.set(lanes.clone());
            // Woken by jobs scheduled (not by every commit: a commit schedules nothing
            // until the saga has read it) and by lanes making room.
            tasks.push(self.spawn_loop_on("effects", Wake::Only(scheduled), IDLE_POLL_MS, move || {
                let lanes = lanes.clone();
                async move { lanes.claim().await }
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
        self.spawn_loop_woken(name, None, IDLE_POLL_MS, step)
    }

    /// [`Self::spawn_loop`] that also wakes when `also` changes (jobs scheduled, events
    /// sequenced) and idles `idle_ms` at most.
    fn spawn_loop_woken<F, Fut, E>(
        self: &Arc<Self>,
        name: &'static str,
        also: Option<watch::Receiver<u64>>,
        idle_ms: u64,
        step: F,
    ) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<usize, E>> + Send,
        E: std::fmt::Display,
    {
        self.spawn_loop_on(name, Wake::Commits(also, 0), idle_ms, step)
    }

    /// Runs `step` until shutdown; when a step did nothing, waits for what `wake` names,
    /// a clock move, or `idle_ms`.
    fn spawn_loop_on<F, Fut, E>(self: &Arc<Self>, name: &'static str, wake: Wake, idle_ms: u64, step: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<usize, E>> + Send,
        E: std::fmt::Display,
    {
        let (mut also, on_commits, gather_ms) = match wake {
            Wake::Commits(also, ms) => (also, true, ms),
            Wake::Only(rx) => (Some(rx), false, 0),
        };
        let mut shutdown = self.shutdown.subscribe();
        let mut commits = self.aggregates.commits();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let worked = match step().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::error!(loop_name = name, error = %e, "background step failed");
                        false
                    }
                };
                if worked && gather_ms == 0 {
                    continue;
                }
                if worked {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(gather_ms)) => continue,
                    }
                }
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = commits.changed(), if on_commits => {}
                    _ = async {
                        match also.as_mut() {
                            // A sender gone never wakes anyone again (no busy loop).
                            Some(rx) => {
                                if rx.changed().await.is_err() {
                                    std::future::pending::<()>().await
                                }
                            }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                    _ = clock.nap(idle_ms) => {}
                }
            }
        })
    }

    /// Stops the background loops and closes the store.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Some(lanes) = self.effect_lanes.get() {
            lanes.stop().await;
        }
        if let Some(relay) = &self.relay {
            relay.release().await;
        }
        self.db.close().await;
    }

    pub(crate) fn meta(&self, correlation: &str, cause: &str) -> Meta {
        Meta::new(self.clock.now_ms(), correlation, cause)
    }

    /// The device edge: the hub every transport (MQTT listener, HTTP device API,
    /// in-process devices) attaches connections to and hands uplinks to.
    pub fn devices(&self) -> &Arc<DeviceHub> {
        &self.hub
    }

    /// What the recording alert sandbox holds (`None` when alerts go to a webhook).
    pub fn sent_alerts(&self) -> Option<Vec<tare_sagas::alerts::Alert>> {
        self.alert_outbox.as_ref().map(|o| o.sent())
    }

    /// The platform's clock (a test clock in tests).
    pub fn clock(&self) -> &PlatformClock {
        &self.clock
    }

    /// Now, by the platform's clock (Unix ms).
    pub fn now_ms(&self) -> UnixMs {
        self.clock.now_ms()
    }

    /// What this node does.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        self.hub.node()
    }

    /// The store itself, for what must write beside the platform: the benchmarks' raw
    /// baselines and the global feed's concurrency test.
    pub fn store(&self) -> &Db {
        &self.db
    }
}
