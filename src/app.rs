//! One running Tare: the platform on its store, a payment sandbox per provider, and the
//! HTTP API bound to an address (port 0 picks a free one). Tests start one per case.

use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_gateway::api::{ApiCounters, ApiState, HttpServer};
use tare_gateway::mqtt::{MqttConfig, MqttEndpoint, MqttServer};
use tare_gateway::sandbox::{SandboxBehaviour, SandboxProvider};
use tare_gateway::sandbox_service::{callback_key, RemoteProvider};
use tare_platform::clock::PlatformClock;
use tare_platform::Platform;
use tare_platform::{PlatformConfig, Roles, StoreConfig};
use tare_sagas::ports::PaymentProvider;
use tare_sagas::SagaConfig;

/// How to start an [`App`].
#[derive(Clone)]
pub struct AppConfig {
    /// Store.
    pub store: StoreConfig,
    /// HTTP listen address.
    pub http: String,
    /// MQTT device endpoint address (`None`: no MQTT listener).
    pub mqtt: Option<String>,
    /// MQTT endpoint settings.
    pub mqtt_config: MqttConfig,
    /// Saga timings.
    pub saga: SagaConfig,
    /// Clock.
    pub clock: PlatformClock,
    /// Operator token.
    pub admin_token: String,
    /// Sandboxes to reuse (a restart keeps the "provider" alive); made fresh if `None`.
    pub sandboxes: Option<HashMap<ProviderKind, Arc<SandboxProvider>>>,
    /// Gateway node name.
    pub node: String,
    /// PostgreSQL pool size.
    pub pg_max_connections: u32,
    /// Device liveness.
    pub liveness: tare_platform::devices::liveness::LivenessConfig,
    /// NATS JetStream (scaled out), or `None` for the embedded in-process feed.
    pub nats: Option<tare_platform::cluster::NatsConfig>,
    /// What this node does.
    pub roles: Roles,
    /// A payment sandbox service shared by the cluster (`tare sandbox`), instead of
    /// in-process sandboxes.
    pub payments: Option<RemotePayments>,
}

/// Where the shared sandbox service is and the secret its callback keys derive from.
#[derive(Debug, Clone)]
pub struct RemotePayments {
    /// `http://host:port` of `tare sandbox`.
    pub url: String,
    /// The sandbox secret (the same on every node and the sandbox).
    pub secret: String,
}

impl AppConfig {
    /// An embedded app on an SQLite store in `dir`, HTTP on a free loopback port.
    pub fn embedded(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            store: StoreConfig::Sqlite(dir.into()),
            http: "127.0.0.1:0".into(),
            mqtt: Some("127.0.0.1:0".into()),
            mqtt_config: MqttConfig::default(),
            saga: SagaConfig::default(),
            clock: PlatformClock::System,
            admin_token: random_token(),
            sandboxes: None,
            node: "node-1".into(),
            pg_max_connections: 10,
            liveness: tare_platform::devices::liveness::LivenessConfig::default(),
            nats: None,
            roles: Roles::ALL,
            payments: None,
        }
    }
}

/// A random hex token.
pub fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// The two sandboxes with their providers' documented differences: WeChat deducts
/// asynchronously (result by callback) and allows 3 open orders per shopper; Alipay
/// collects synchronously and allows 1 [P1].
pub fn default_sandboxes() -> HashMap<ProviderKind, Arc<SandboxProvider>> {
    sandboxes_with_keys(|_| random_token().into_bytes())
}

/// The two sandboxes, signing callbacks with the keys `key` gives per provider.
pub fn sandboxes_with_keys(key: impl Fn(ProviderKind) -> Vec<u8>) -> HashMap<ProviderKind, Arc<SandboxProvider>> {
    let wechat = SandboxBehaviour {
        async_collection: true,
        max_pending_per_shopper: 3,
        ..Default::default()
    };
    let alipay = SandboxBehaviour {
        async_collection: false,
        max_pending_per_shopper: 1,
        ..Default::default()
    };
    HashMap::from([
        (
            ProviderKind::Wechat,
            SandboxProvider::new(ProviderKind::Wechat, &key(ProviderKind::Wechat), wechat),
        ),
        (
            ProviderKind::Alipay,
            SandboxProvider::new(ProviderKind::Alipay, &key(ProviderKind::Alipay), alipay),
        ),
    ])
}

/// A running app.
pub struct App {
    /// The platform.
    pub platform: Arc<Platform>,
    /// The HTTP server.
    pub http: HttpServer,
    /// The MQTT device endpoint, if one was asked for.
    pub mqtt: Option<MqttServer>,
    /// `http://addr`.
    pub base_url: String,
    /// The sandboxes.
    pub sandboxes: HashMap<ProviderKind, Arc<SandboxProvider>>,
    /// Operator token.
    pub admin_token: String,
}

impl App {
    /// Starts the platform and the HTTP API.
    pub async fn start(cfg: AppConfig) -> anyhow::Result<Self> {
        let (sandboxes, providers, callback_keys) = match &cfg.payments {
            Some(remote) => {
                let kinds = [ProviderKind::Wechat, ProviderKind::Alipay];
                let providers: Vec<Arc<dyn PaymentProvider>> = kinds
                    .iter()
                    .map(|k| RemoteProvider::new(*k, &remote.url) as Arc<dyn PaymentProvider>)
                    .collect();
                let keys = kinds.iter().map(|k| (*k, callback_key(&remote.secret, *k))).collect();
                (HashMap::new(), providers, keys)
            }
            None => {
                let sandboxes = cfg.sandboxes.clone().unwrap_or_else(default_sandboxes);
                let providers: Vec<Arc<dyn PaymentProvider>> = sandboxes.values().map(|s| s.clone() as Arc<dyn PaymentProvider>).collect();
                let keys = sandboxes.iter().map(|(k, s)| (*k, s.key().to_vec())).collect();
                (sandboxes, providers, keys)
            }
        };
        let pcfg = PlatformConfig {
            store: cfg.store.clone(),
            saga: cfg.saga,
            node: cfg.node.clone(),
            clock: cfg.clock.clone(),
            effect_concurrency: 32,
            pg_max_connections: cfg.pg_max_connections,
            liveness: cfg.liveness,
            nats: cfg.nats.clone(),
            roles: cfg.roles,
        };
        let platform = Platform::start(pcfg, providers).await.context("starting the platform")?;
        // Only a gateway node holds device connections.
        let mqtt_addr = cfg.mqtt.as_ref().filter(|_| cfg.roles.gateway);
        let endpoint = mqtt_addr.map(|_| {
            MqttEndpoint::new(
                platform.devices().clone(),
                platform.clone(),
                platform.clock().clone(),
                cfg.mqtt_config.clone(),
            )
        });
        let state = Arc::new(ApiState {
            platform: platform.clone(),
            admin_token: cfg.admin_token.clone(),
            callback_keys,
            sandboxes: sandboxes.clone(),
            counters: ApiCounters::default(),
            mqtt: endpoint.clone(),
            device_http: tare_gateway::api::device::DeviceHttp::new(cfg.mqtt_config.rate),
        });
        let http = HttpServer::start(&cfg.http, state)
            .await
            .with_context(|| format!("binding {}", cfg.http))?;
        let mqtt = match (mqtt_addr, endpoint) {
            (Some(addr), Some(endpoint)) => Some(
                MqttServer::start(addr, endpoint)
                    .await
                    .with_context(|| format!("binding MQTT {addr}"))?,
            ),
            _ => None,
        };
        let base_url = format!("http://{}", http.addr);
        for s in sandboxes.values() {
            s.set_callback_base(&base_url);
        }
        Ok(Self {
            platform,
            http,
            mqtt,
            base_url,
            sandboxes,
            admin_token: cfg.admin_token,
        })
    }

    /// Stops the device endpoint and the HTTP API, then the platform.
    pub async fn stop(self) {
        if let Some(m) = self.mqtt {
            m.stop().await;
        }
        self.http.stop().await;
        self.platform.stop().await;
    }
}
