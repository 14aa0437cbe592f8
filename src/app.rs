//! One running Tare: the platform on its store, the payment providers' adapters (each
//! speaking its provider's protocol over HTTP, with the keys of the keys directory), the
//! providers' sandboxes mounted on the same listener on the embedded default, and the
//! HTTP API bound to an address (port 0 picks a free one). Tests start one per case.

use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::ProviderKind;
use tare_gateway::api::{ApiCounters, ApiState, HttpServer, MetricsServer};
use tare_gateway::mqtt::{MqttConfig, MqttEndpoint, MqttServer};
use tare_platform::clock::PlatformClock;
use tare_platform::Platform;
use tare_platform::{PlatformConfig, Roles, StoreConfig};
use tare_providers::alipay::{AlipayAdapter, AlipaySandbox};
use tare_providers::keys::ProviderKeys;
use tare_providers::sandbox::{Behaviour, Sandbox};
use tare_providers::wechat::{WechatAdapter, WechatSandbox};
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
    /// The provider keys' directory [API.md "Provider keys"], made on first start; `None`:
    /// `{data}/keys` on the embedded store, a fresh temporary directory otherwise.
    pub keys: Option<std::path::PathBuf>,
    /// Sandboxes to reuse (a restart keeps the "provider" alive); made fresh if `None`.
    pub sandboxes: Option<Sandboxes>,
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
    /// Where the providers are: `None` for the sandboxes on this node's own listener,
    /// otherwise their endpoints (`tare sandbox`, or the real providers).
    pub payments: Option<ProviderEndpoints>,
    /// The base URL the providers reach this node's callbacks at (`None`: this node's
    /// own HTTP address).
    pub public_url: Option<String>,
    /// How long an adapter waits for a provider's answer ([`PROVIDER_TIMEOUT`]).
    pub provider_timeout: std::time::Duration,
    /// Where alerts go: an operator's webhook (`serve --alert-webhook`), or `None` for
    /// the recording sandbox (`GET /sandbox/alerts`).
    pub alert_webhook: Option<String>,
    /// At most this many alerts a minute.
    pub alerts_per_minute: u32,
    /// At most this many orders a shopper may begin in an hour (`None`: no limit) [B8].
    pub max_opens_per_hour: Option<u32>,
    /// No new order for a shopper who disputed this many charges in 30 days [B8].
    pub max_disputes_per_month: Option<u32>,
    /// The largest refund an `operator` may make; above it an `admin` must.
    pub refund_limit: tare_domain::Cents,
    /// A listener serving `/metrics` without a token (`serve --metrics`); `None`: only
    /// the API's, behind a staff token.
    pub metrics: Option<String>,
    /// The HTTP edge's limits.
    pub http_limits: tare_gateway::api::guard::HttpLimits,
    /// The certificate and key of the TLS listeners (`--tls-cert`, `--tls-key`).
    pub tls: Option<tare_gateway::tls::TlsFiles>,
    /// Also serve the API over TLS here (`--https`; needs [`Self::tls`]).
    pub https: Option<String>,
    /// Also take device connections over MQTT over TLS here (`--mqtts`; needs
    /// [`Self::tls`]); shares the device limit and counters with `mqtt`.
    pub mqtts: Option<String>,
}

/// The default of [`AppConfig::refund_limit`]: 100.00 in cents, several times a typical
/// cabinet purchase.
pub const DEFAULT_REFUND_LIMIT_CENTS: i64 = 10_000;

/// Where a node's adapters find the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    /// WeChat Pay's API base (`https://api.mch.weixin.qq.com`, or
    /// `http://host:port/sandbox/wechat` of `tare sandbox`).
    pub wechat: String,
    /// Alipay's gateway (`https://openapi.alipay.com/gateway.do`, or
    /// `http://host:port/sandbox/alipay/gateway.do` of `tare sandbox`).
    pub alipay: String,
    /// Where shoppers reach the sandboxes' confirm page when it is not where the nodes
    /// reach the sandboxes (`http://localhost:8790` for a sandbox the nodes call
    /// `http://sandbox:8790`); `None`: the same place.
    pub confirm: Option<String>,
}

impl ProviderEndpoints {
    /// The endpoints of the sandboxes served at `base` (`tare sandbox`, or a node's own
    /// listener).
    pub fn sandboxes_at(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            wechat: format!("{base}/sandbox/wechat"),
            alipay: format!("{base}/sandbox/alipay/gateway.do"),
            confirm: None,
        }
    }
}

/// The two sandboxes, by provider.
pub type Sandboxes = HashMap<ProviderKind, Arc<dyn Sandbox>>;

/// How long an adapter waits for a provider's answer before the outcome counts as
/// unknown (the saga then queries): inside WeChat's and Alipay's own limits.
pub const PROVIDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
            keys: None,
            sandboxes: None,
            node: "node-1".into(),
            pg_max_connections: 10,
            liveness: tare_platform::devices::liveness::LivenessConfig::default(),
            nats: None,
            roles: Roles::ALL,
            payments: None,
            public_url: None,
            provider_timeout: PROVIDER_TIMEOUT,
            alert_webhook: None,
            alerts_per_minute: tare_platform::config::ALERTS_PER_MINUTE,
            max_opens_per_hour: None,
            max_disputes_per_month: None,
            refund_limit: tare_domain::Cents::new(DEFAULT_REFUND_LIMIT_CENTS),
            metrics: None,
            http_limits: tare_gateway::api::guard::HttpLimits::default(),
            tls: None,
            https: None,
            mqtts: None,
        }
    }

    /// The keys directory this config uses.
    pub fn keys_dir(&self) -> std::path::PathBuf {
        match (&self.keys, &self.store) {
            (Some(dir), _) => dir.clone(),
            (None, StoreConfig::Sqlite(data)) => data.join("keys"),
            (None, StoreConfig::Postgres(_)) => std::env::temp_dir().join(format!("tare-keys-{}", uuid::Uuid::new_v4().simple())),
        }
    }
}

/// A random hex token.
pub fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// The two sandboxes, playing the providers with the keys in `keys`, with their
/// documented differences: WeChat allows 3 open service orders per shopper, Alipay 1
/// [P1].
pub fn sandboxes(keys: &ProviderKeys) -> anyhow::Result<Sandboxes> {
    let wechat = WechatSandbox::new(
        keys.wechat.clone(),
        Behaviour {
            max_pending_per_shopper: 3,
            ..Behaviour::default()
        },
    )
    .context("the WeChat sandbox needs wechat/platform_private_key.pem")?;
    let alipay = AlipaySandbox::new(
        keys.alipay.clone(),
        Behaviour {
            max_pending_per_shopper: 1,
            ..Behaviour::default()
        },
    )
    .context("the Alipay sandbox needs alipay/alipay_private_key.pem")?;
    Ok(HashMap::from([
        (ProviderKind::Wechat, wechat as Arc<dyn Sandbox>),
        (ProviderKind::Alipay, alipay as Arc<dyn Sandbox>),
    ]))
}

/// The adapters, speaking each provider's protocol to `endpoints`, asking for
/// notifications at `{callbacks}/callbacks/{provider}`, giving up on an answer after
/// `timeout` (the outcome is then unknown, and the saga asks again with the same key).
pub fn adapters(
    keys: &ProviderKeys,
    endpoints: &ProviderEndpoints,
    callbacks: &str,
    timeout: std::time::Duration,
) -> Vec<Arc<dyn PaymentProvider>> {
    let callbacks = callbacks.trim_end_matches('/');
    let mut wechat = WechatAdapter::new(
        &endpoints.wechat,
        keys.wechat.clone(),
        &format!("{callbacks}/callbacks/wechat"),
        timeout,
    );
    let mut alipay = AlipayAdapter::new(
        &endpoints.alipay,
        keys.alipay.clone(),
        &format!("{callbacks}/callbacks/alipay"),
        timeout,
    );
    if let Some(confirm) = &endpoints.confirm {
        let confirm = confirm.trim_end_matches('/');
        wechat = wechat.with_confirm_base(&format!("{confirm}/sandbox/wechat"));
        alipay = alipay.with_confirm_base(&format!("{confirm}/sandbox/alipay"));
    }
    vec![Arc::new(wechat), Arc::new(alipay)]
}

/// `http://addr` as another process reaches it: an unspecified address (`0.0.0.0`, `::`)
/// becomes loopback.
fn reachable(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// A running app.
pub struct App {
    /// The platform.
    pub platform: Arc<Platform>,
    /// The HTTP server.
    pub http: HttpServer,
    /// The MQTT device endpoint, if one was asked for.
    pub mqtt: Option<MqttServer>,
    /// The MQTT-over-TLS endpoint, if one was asked for (`serve --mqtts`).
    pub mqtts: Option<MqttServer>,
    /// `http://addr`.
    pub base_url: String,
    /// The sandboxes on this node's listener (none when the providers are elsewhere).
    pub sandboxes: Sandboxes,
    /// The provider keys in use.
    pub provider_keys: Arc<ProviderKeys>,
    /// Where they are (what a provider, or a test crafting notifications, uses too).
    pub keys_dir: std::path::PathBuf,
    /// Operator token.
    pub admin_token: String,
    /// The token-free metrics listener, if one was asked for (`serve --metrics`).
    pub metrics: Option<MetricsServer>,
}

impl App {
    /// Starts the platform and the HTTP API.
    pub async fn start(cfg: AppConfig) -> anyhow::Result<Self> {
        let keys_dir = cfg.keys_dir();
        let keys = ProviderKeys::load_or_generate(&keys_dir).with_context(|| format!("provider keys in {}", keys_dir.display()))?;
        let keys = Arc::new(keys);
        // The listener first: the adapters need its address (the sandboxes and the
        // callbacks are on it).
        let listener = tokio::net::TcpListener::bind(&cfg.http)
            .await
            .with_context(|| format!("binding {}", cfg.http))?;
        let local = reachable(listener.local_addr()?);
        let public = cfg.public_url.clone().unwrap_or_else(|| local.clone());
        let (sandboxes, endpoints) = match &cfg.payments {
            Some(endpoints) => (HashMap::new(), endpoints.clone()),
            None => {
                let sandboxes = match cfg.sandboxes.clone() {
                    Some(s) => s,
                    None => sandboxes(&keys)?,
                };
                (sandboxes, ProviderEndpoints::sandboxes_at(&local))
            }
        };
        let providers = adapters(&keys, &endpoints, &public, cfg.provider_timeout);
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
            alert_webhook: cfg.alert_webhook.clone(),
            alerts_per_minute: cfg.alerts_per_minute,
            max_opens_per_hour: cfg.max_opens_per_hour,
            max_disputes_per_month: cfg.max_disputes_per_month,
        };
        let platform = Platform::start(pcfg, providers).await.context("starting the platform")?;
        // TLS first: a bad certificate stops the start with its reason, before anything runs.
        let tls = match &cfg.tls {
            Some(files) => Some(files.acceptor().context("--tls-cert / --tls-key")?),
            None if cfg.https.is_some() || cfg.mqtts.is_some() => {
                anyhow::bail!("--https and --mqtts need --tls-cert and --tls-key")
            }
            None => None,
        };
        // Only a gateway node holds device connections.
        let mqtt_addr = cfg.mqtt.as_ref().filter(|_| cfg.roles.gateway);
        let mqtts_addr = cfg.mqtts.as_ref().filter(|_| cfg.roles.gateway);
        let endpoint = (mqtt_addr.is_some() || mqtts_addr.is_some()).then(|| {
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
            refund_limit: cfg.refund_limit,
            http_limits: cfg.http_limits,
            provider_keys: keys.clone(),
            sandboxes: sandboxes.clone(),
            counters: ApiCounters::default(),
            mqtt: endpoint.clone(),
            device_http: tare_gateway::api::device::DeviceHttp::new(cfg.mqtt_config.rate),
        });
        let metrics = match &cfg.metrics {
            Some(addr) => Some(
                MetricsServer::start(addr, state.clone())
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?,
            ),
            None => None,
        };
        let mut http = HttpServer::serve(listener, state).context("serving HTTP")?;
        if let (Some(addr), Some(tls)) = (&cfg.https, &tls) {
            http.serve_tls(addr, tls.clone())
                .await
                .with_context(|| format!("binding HTTPS {addr}"))?;
        }
        let mqtt = match (mqtt_addr, &endpoint) {
            (Some(addr), Some(endpoint)) => Some(
                MqttServer::start(addr, endpoint.clone())
                    .await
                    .with_context(|| format!("binding MQTT {addr}"))?,
            ),
            _ => None,
        };
        let mqtts = match (mqtts_addr, endpoint, tls) {
            (Some(addr), Some(endpoint), Some(tls)) => Some(
                MqttServer::start_tls(addr, endpoint, tls)
                    .await
                    .with_context(|| format!("binding MQTT over TLS {addr}"))?,
            ),
            _ => None,
        };
        let base_url = format!("http://{}", http.addr);
        Ok(Self {
            platform,
            http,
            mqtt,
            mqtts,
            base_url,
            sandboxes,
            provider_keys: keys,
            keys_dir,
            admin_token: cfg.admin_token,
            metrics,
        })
    }

    /// Stops the device endpoint and the HTTP API, then the platform.
    pub async fn stop(self) {
        // Both at once: they share the endpoint, and each waits for all its connections.
        let stop = |m: Option<MqttServer>| async move {
            if let Some(m) = m {
                m.stop().await;
            }
        };
        futures::join!(stop(self.mqtt), stop(self.mqtts));
        if let Some(m) = self.metrics {
            m.stop().await;
        }
        self.http.stop().await;
        self.platform.stop().await;
    }
}
