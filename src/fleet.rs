//! A virtual fleet and its shoppers, driven through the public HTTP API exactly as apps
//! and cabinets would: products and cabinets are registered over HTTP, each cabinet is a
//! [`VirtualCabinet`] talking the device contract through the hub, and shoppers scan,
//! confirm in the sandbox, take goods and close the door.

use crate::app::App;
use crate::in_process::{device_clock, InProcessTransport};
use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::{CabinetId, DoorNo, LaneNo};
use tare_sim::cabinet::{Faults, VirtualCabinet, VirtualCabinetSpec, VirtualLane};
use tare_sim::transport::{DeviceTransport, HttpTransport, MqttDeviceConfig, MqttTransport};

/// A small HTTP client for the API.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// `http://addr`.
    pub base: String,
    /// Operator token.
    pub admin: String,
}

impl ApiClient {
    /// A client for `app`.
    pub fn new(base: &str, admin: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            base: base.to_string(),
            admin: admin.to_string(),
        }
    }

    /// Sends `req`; a 429 (this client over its rate) is sent again after its
    /// `Retry-After`, as a well-behaved app would, up to a minute in all.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = req;
        let mut waited = Duration::ZERO;
        let resp = loop {
            let again = req.try_clone();
            let resp = req.send().await?;
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            match again {
                Some(a) if resp.status() == StatusCode::TOO_MANY_REQUESTS && waited < Duration::from_secs(60) => {
                    tokio::time::sleep(retry_after).await;
                    waited += retry_after;
                    req = a;
                }
                _ => break resp,
            }
        };
        let status = resp.status();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    /// `path` on the API, or `path` itself when it is a whole URL (a sandbox service's
    /// confirm page lives elsewhere).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// POST JSON with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.post(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// PUT JSON with a bearer token.
    pub async fn put(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.put(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// PATCH JSON with a bearer token.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.patch(self.url(path)).bearer_auth(token).json(body)).await
    }

    /// POST raw bytes (for malformed-input tests).
    pub async fn post_raw(&self, path: &str, token: &str, body: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send(self.http.get(self.url(path)).bearer_auth(token)).await
    }
}

/// A product of the demo catalogue: sku, name, unit grams, price in cents.
pub const CATALOGUE: [(&str, &str, f64, i64); 6] = [
    ("cola-330", "Cola 330ml", 348.0, 300),
    ("water-550", "Water 550ml", 571.0, 200),
    ("chips-70", "Potato chips 70g", 82.0, 650),
    ("gum-25", "Chewing gum", 27.5, 100),
    ("juice-300", "Orange juice 300ml", 325.0, 550),
    ("choc-45", "Chocolate bar", 48.0, 450),
];

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Cabinets.
    pub cabinets: usize,
    /// Doors per cabinet.
    pub doors: u8,
    /// Lanes per door.
    pub lanes: u8,
    /// Items per lane (also the capacity).
    pub capacity: u32,
    /// Load-cell noise, ± grams.
    pub noise_grams: f64,
    /// Seed.
    pub seed: u64,
    /// Product key of the cabinets.
    pub pk: String,
    /// How the virtual cabinets reach the platform.
    pub transport: FleetTransport,
    /// The products of every cabinet, door by door and lane by lane (skus of
    /// [`CATALOGUE`]), instead of a random pick per lane; `doors` and `lanes` are then
    /// read from it.
    pub layout: Option<Vec<Vec<&'static str>>>,
    /// Further nodes of a scaled-out platform to spread the fleet over: cabinet `i`
    /// connects to node `i mod (1 + more_nodes.len())` (the target first) and its
    /// shoppers use that node's API, as cabinets and apps behind a load balancer would.
    pub more_nodes: Vec<FleetNode>,
    /// MQTT over TLS with this client configuration (`tare_sim::transport::tls_trusting`),
    /// for a platform serving `--mqtts`; `None` is plain MQTT.
    pub mqtt_tls: Option<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>>,
}

impl FleetSpec {
    /// The MQTT endpoint cabinet `i` connects to: node `i mod n`, the target first.
    fn mqtt_of(&self, target: &FleetTarget, i: usize) -> Option<std::net::SocketAddr> {
        match i % (1 + self.more_nodes.len()) {
            0 => target.mqtt,
            k => Some(self.more_nodes[k - 1].mqtt),
        }
    }
}

/// One more node of a scaled-out platform (see [`FleetSpec::more_nodes`]).
#[derive(Debug, Clone)]
pub struct FleetNode {
    /// `http://host:port` of its API.
    pub base_url: String,
    /// Its MQTT device endpoint.
    pub mqtt: std::net::SocketAddr,
}

/// Where a fleet is registered (HTTP API) and connects (MQTT, HTTP, or in-process).
#[derive(Clone)]
pub struct FleetTarget {
    /// `http://host:port` of the API.
    pub base_url: String,
    /// Operator token.
    pub admin_token: String,
    /// The MQTT device endpoint.
    pub mqtt: Option<std::net::SocketAddr>,
    /// The clock devices sign and stamp with.
    pub clock: tare_platform::clock::PlatformClock,
    /// The device hub, when the platform runs in this process.
    pub hub: Option<Arc<tare_platform::devices::DeviceHub>>,
    /// The secret of a `tare sandbox` whose confirm page the shoppers tap (`tare sandbox
    /// --secret`); `None` when the sandboxes are the platform's own.
    pub sandbox_secret: Option<String>,
}

impl FleetTarget {
    /// The app in this process.
    pub fn of(app: &App) -> Self {
        Self {
            base_url: app.base_url.clone(),
            admin_token: app.admin_token.clone(),
            mqtt: app.mqtt.as_ref().map(|m| m.addr),
            clock: app.platform.clock().clone(),
            hub: Some(app.platform.devices().clone()),
            sandbox_secret: None,
        }
    }
}

type Plan = BTreeMap<(DoorNo, LaneNo), (String, i64)>;

/// How a fleet's virtual cabinets connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetTransport {
    /// Over real MQTT to the app's MQTT endpoint (what field devices do).
    Mqtt,
    /// Over the HTTP device API (signed uplinks, long-polled commands).
    Http,
    /// In-process into the device hub (same bytes; applied before `send` returns).
    InProcess,
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            cabinets: 3,
            doors: 2,
            lanes: 3,
            capacity: 20,
            noise_grams: 1.0,
            seed: 7,
            pk: "wc1".into(),
            transport: FleetTransport::Mqtt,
            layout: None,
            more_nodes: Vec::new(),
            mqtt_tls: None,
        }
    }
}

/// A shopper's credentials.
#[derive(Debug, Clone)]
pub struct ShopperHandle {
    /// Id.
    pub id: String,
    /// Bearer token.
    pub token: String,
}

/// The provisioned fleet.
pub struct Fleet {
    /// The API client.
    pub client: ApiClient,
    /// The cabinets.
    pub cabinets: Vec<Arc<VirtualCabinet>>,
    /// Lane → (sku, price) per cabinet index.
    pub planogram: Vec<BTreeMap<(DoorNo, LaneNo), (String, i64)>>,
    /// The API of each further node the fleet is spread over ([`FleetSpec::more_nodes`]);
    /// empty: every cabinet's shoppers use `client`.
    pub more_clients: Vec<ApiClient>,
    /// What a shopper taps a `tare sandbox`'s confirm page with ([`FleetTarget::sandbox_secret`]).
    pub sandbox_secret: Option<String>,
}

/// What a shopper really took from one lane: (door, lane, sku, qty, unit price in cents).
pub type Taken = (DoorNo, LaneNo, String, u32, i64);

/// What one purchase did.
#[derive(Debug, Clone)]
pub struct Purchase {
    /// Order id.
    pub order_id: String,
    /// What the shopper really took: (door, lane, sku, qty, unit price).
    pub taken: Vec<Taken>,
    /// The order at its end.
    pub order: Value,
}

impl Purchase {
    /// Σ qty × price of what was really taken.
    pub fn true_subtotal(&self) -> i64 {
        self.taken.iter().map(|(_, _, _, q, p)| i64::from(*q) * p).sum()
    }
}

impl Fleet {
    /// Registers the catalogue and `spec.cabinets` cabinets over HTTP and connects a
    /// virtual cabinet for each; returns once every cabinet is online.
    pub async fn provision(app: &App, spec: &FleetSpec) -> anyhow::Result<Self> {
        Self::provision_at(&FleetTarget::of(app), spec).await
    }

    /// Registers and connects a fleet on the platform at `target` (another process, for
    /// `tare sim`).
    pub async fn provision_at(target: &FleetTarget, spec: &FleetSpec) -> anyhow::Result<Self> {
        let client = ApiClient::new(&target.base_url, &target.admin_token);
        for (sku, name, grams, price) in CATALOGUE {
            let (st, body) = client
                .post(
                    "/api/v1/products",
                    &client.admin,
                    &json!({"sku": sku, "name": name, "unit_grams": grams, "price_cents": price}),
                )
                .await?;
            if st != StatusCode::CREATED && st != StatusCode::CONFLICT {
                bail!("product {sku}: {st} {body}");
            }
        }
        // Layouts first (deterministic from the seed), then registration and connection
        // of up to 32 cabinets at a time.
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut layouts = Vec::new();
        for i in 0..spec.cabinets {
            let dn = format!("SN{:05}", i + 1);
            let mut doors = Vec::new();
            let mut vdoors = Vec::new();
            let mut plan = BTreeMap::new();
            let skus: Vec<Vec<&str>> = match &spec.layout {
                Some(layout) => layout.clone(),
                None => (0..spec.doors)
                    .map(|_| (0..spec.lanes).map(|_| CATALOGUE[rng.random_range(0..CATALOGUE.len())].0).collect())
                    .collect(),
            };
            for (d, door_skus) in (1..).zip(&skus) {
                let mut lanes = Vec::new();
                let mut vlanes = Vec::new();
                for (l, want) in (1..).zip(door_skus) {
                    let (sku, _, grams, price) = *CATALOGUE
                        .iter()
                        .find(|p| p.0 == *want)
                        .ok_or_else(|| anyhow!("{want} is not in the catalogue"))?;
                    lanes.push(json!({"lane": l, "sku": sku, "capacity": spec.capacity, "restock_threshold": spec.capacity / 5}));
                    vlanes.push(VirtualLane {
                        lane: LaneNo::of(l),
                        unit_grams: grams,
                        count: spec.capacity,
                    });
                    plan.insert((DoorNo::of(d), LaneNo::of(l)), (sku.to_string(), price));
                }
                doors.push(json!({"door": d, "lanes": lanes}));
                vdoors.push((DoorNo::of(d), vlanes));
            }
            let body = json!({"pk": spec.pk, "dn": dn, "kind": "weight", "location": {"lat": 31.23 + i as f64 * 0.001, "lng": 121.47}, "doors": doors});
            layouts.push((i, dn, body, vdoors, plan));
        }
        let connected: Vec<anyhow::Result<(Arc<VirtualCabinet>, Plan)>> = futures::stream::iter(layouts)
            .map(|(i, dn, body, vdoors, plan)| {
                let client = &client;
                async move {
                    let (st, resp) = client.post("/api/v1/cabinets", &client.admin, &body).await?;
                    if st != StatusCode::CREATED {
                        bail!("cabinet {dn}: {st} {resp}");
                    }
                    let id = CabinetId::new(&spec.pk, &dn)?;
                    let secret = resp["device_secret"].as_str().unwrap_or_default().to_string();
                    let transport: Arc<dyn DeviceTransport> = match (spec.transport, spec.mqtt_of(target, i), &target.hub) {
                        (FleetTransport::Mqtt, Some(mqtt), _) => MqttTransport::new(
                            id.clone(),
                            secret,
                            device_clock(&target.clock),
                            MqttDeviceConfig {
                                host: mqtt.ip().to_string(),
                                port: mqtt.port(),
                                keep_alive: Duration::from_secs(30),
                                tls: spec.mqtt_tls.clone(),
                            },
                        ),
                        (FleetTransport::Mqtt, None, _) => bail!("an MQTT fleet needs the platform's MQTT address"),
                        (FleetTransport::Http, _, _) => {
                            HttpTransport::new(id.clone(), secret, device_clock(&target.clock), &target.base_url)
                        }
                        (FleetTransport::InProcess, _, Some(hub)) => InProcessTransport::new(hub.clone(), id.clone()),
                        (FleetTransport::InProcess, _, None) => bail!("an in-process fleet needs the platform in this process"),
                    };
                    let vc = VirtualCabinet::new(
                        VirtualCabinetSpec {
                            id: id.clone(),
                            doors: vdoors,
                            noise_grams: spec.noise_grams,
                            seed: spec.seed.wrapping_add(i as u64),
                            faults: Faults::default(),
                            compartments: Vec::new(),
                        },
                        transport,
                        device_clock(&target.clock),
                    );
                    vc.connect().await.map_err(|e| anyhow!("connecting {id}: {e}"))?;
                    Ok((vc, plan))
                }
            })
            .buffered(32)
            .collect()
            .await;
        let (cabinets, planogram): (Vec<_>, Vec<_>) = connected.into_iter().collect::<anyhow::Result<Vec<_>>>()?.into_iter().unzip();
        let fleet = Self {
            client,
            cabinets,
            planogram,
            more_clients: spec
                .more_nodes
                .iter()
                .map(|n| ApiClient::new(&n.base_url, &target.admin_token))
                .collect(),
            sandbox_secret: target.sandbox_secret.clone(),
        };
        for c in &fleet.cabinets {
            fleet.wait_status(c.id(), "online", Duration::from_secs(10)).await?;
        }
        Ok(fleet)
    }

    /// Polls a cabinet until its status is `want`.
    pub async fn wait_status(&self, id: &CabinetId, want: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (_, c) = self.client.get(&format!("/api/v1/cabinets/{id}"), &self.client.admin).await?;
            if c["status"] == want {
                return Ok(c);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("cabinet {id} is {} not {want}", c["status"]);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates a shopper.
    pub async fn new_shopper(&self, phone: &str, provider: &str, confirm_mode: &str) -> anyhow::Result<ShopperHandle> {
        let (st, b) = self
            .client
            .post(
                "/api/v1/shoppers",
                "",
                &json!({"phone": phone, "provider": provider, "confirm_mode": confirm_mode}),
            )
            .await?;
        if st != StatusCode::CREATED {
            bail!("shopper: {st} {b}");
        }
        Ok(ShopperHandle {
            id: b["shopper_id"].as_str().context("shopper_id")?.to_string(),
            token: b["token"].as_str().context("token")?.to_string(),
        })
    }

    /// Scans `door` of cabinet `cab`, confirms if asked, waits for the door, takes
    /// `takes` (lane, qty), closes, and waits for the order to end.
    pub async fn purchase(&self, shopper: &ShopperHandle, cab: usize, door: DoorNo, takes: &[(LaneNo, u32)]) -> anyhow::Result<Purchase> {
        let (order_id, taken) = self.shop(shopper, cab, door, takes).await?;
        let order = self
            .wait_terminal_via(self.client_for(cab), &order_id, &shopper.token, Duration::from_secs(30))
            .await?;
        Ok(Purchase { order_id, taken, order })
    }

    /// The shopper's part of a purchase — scan, confirm, take, close — without waiting
    /// for the platform to finish it: for orders that are meant to stay open (a charge
    /// that keeps failing). Returns the order id and what was taken.
    pub async fn shop(
        &self,
        shopper: &ShopperHandle,
        cab: usize,
        door: DoorNo,
        takes: &[(LaneNo, u32)],
    ) -> anyhow::Result<(String, Vec<Taken>)> {
        let vc = &self.cabinets[cab];
        let client = self.client_for(cab);
        let (st, created) = client
            .post(
                "/api/v1/orders",
                &shopper.token,
                &json!({"cabinet": vc.id().to_string(), "door": door.get()}),
            )
            .await?;
        if st != StatusCode::CREATED {
            bail!("scan refused: {st} {created}");
        }
        let order_id = created["order_id"].as_str().context("order_id")?.to_string();
        let confirm = match created["confirm_url"].as_str() {
            Some(u) => Some(u.to_string()),
            None => self.confirm_url(client, &order_id, &shopper.token).await?,
        };
        if let Some(url) = confirm {
            // The platform's own sandbox knows the shopper by their token; a `tare
            // sandbox` elsewhere wants its secret (it stands in for the provider's app).
            let (path, token) = match url.strip_prefix(&client.base) {
                Some(p) => (p.to_string(), shopper.token.as_str()),
                None => (url.clone(), self.sandbox_secret.as_deref().unwrap_or(&shopper.token)),
            };
            let (st, b) = client.post(&path, token, &json!({})).await?;
            // The platform's confirm page answers 200; `tare sandbox`'s own, 204.
            if !st.is_success() {
                bail!("confirm: {st} {b}");
            }
        }
        if !vc.wait_open(door, Duration::from_secs(15)).await {
            let (_, o) = client.get(&format!("/api/v1/orders/{order_id}"), &shopper.token).await?;
            bail!(
                "door {} of {} never opened for order {order_id}: {} {}",
                door.get(),
                vc.id(),
                o["state"],
                o["payment"]
            );
        }
        let mut taken = Vec::new();
        for (lane, qty) in takes {
            let got = vc.take(door, *lane, *qty).await.map_err(|e| anyhow!("take: {e}"))?;
            if got > 0 {
                let (sku, price) = self.planogram[cab].get(&(door, *lane)).cloned().context("lane in planogram")?;
                taken.push((door, *lane, sku, got, price));
            }
        }
        vc.close(door).await.map_err(|e| anyhow!("close: {e}"))?;
        Ok((order_id, taken))
    }

    /// Where the shopper confirms, when the order's reply did not say yet (the provider
    /// was slow to answer): asked again, as an app would, until the payment is past
    /// opening (`None`: nothing to confirm — authorized at once, or the order ended).
    async fn confirm_url(&self, client: &ApiClient, order_id: &str, token: &str) -> anyhow::Result<Option<String>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut every = Duration::from_millis(10);
        loop {
            let (_, o) = client.get(&format!("/api/v1/orders/{order_id}"), token).await?;
            if let Some(url) = o["payment"]["confirm_url"].as_str() {
                return Ok(Some(url.to_string()));
            }
            let opening = o["state"] == "authorizing" && o["payment"]["state"].as_str().is_none_or(|s| s == "pending");
            if !opening || tokio::time::Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(200));
        }
    }

    /// Polls an order until it reaches an end state (paid, cancelled, abnormal, …), as a
    /// shopper's app would: soon at first, then less often (5 ms doubling to 200 ms), so
    /// that hundreds of shoppers waiting at once do not become the platform's load.
    pub async fn wait_terminal(&self, order_id: &str, token: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_terminal_via(&self.client, order_id, token, timeout).await
    }

    /// [`Self::wait_terminal`], asking `client`'s node.
    pub async fn wait_terminal_via(&self, client: &ApiClient, order_id: &str, token: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut every = Duration::from_millis(5);
        loop {
            let (_, o) = client.get(&format!("/api/v1/orders/{order_id}"), token).await?;
            let state = o["state"].as_str().unwrap_or_default();
            if matches!(state, "paid" | "cancelled" | "abnormal" | "refunded" | "partially_refunded") {
                return Ok(o);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("order {order_id} still {state}");
            }
            tokio::time::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(200));
        }
    }

    /// The API cabinet `cab`'s shoppers use: its node's ([`FleetSpec::more_nodes`]).
    pub fn client_for(&self, cab: usize) -> &ApiClient {
        match cab % (1 + self.more_clients.len()) {
            0 => &self.client,
            k => &self.more_clients[k - 1],
        }
    }

    /// A random take for a door: 1–3 lanes, 1–3 items each (bounded by stock).
    pub fn random_takes(&self, rng: &mut StdRng, cab: usize, door: DoorNo) -> Vec<(LaneNo, u32)> {
        let counts = self.cabinets[cab].counts();
        let lanes: Vec<(LaneNo, u32)> = counts
            .iter()
            .filter(|((d, _), c)| *d == door && **c > 0)
            .map(|((_, l), c)| (*l, *c))
            .collect();
        let mut takes = Vec::new();
        for (lane, stock) in lanes {
            if rng.random_bool(0.5) {
                takes.push((lane, rng.random_range(1..=3u32).min(stock)));
            }
        }
        takes
    }
}
