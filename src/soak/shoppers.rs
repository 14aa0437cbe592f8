//! The soak's people: one shopper per cabinet buying one or two items at a time, and an
//! operator refunding paid orders — in full, in part, or twice at once (a double click
//! that must not refund more than was charged). What they saw is the [`Tally`].

use crate::fleet::{ApiClient, Fleet, Purchase};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tare_domain::{DoorNo, LaneNo};

/// A device cadence task, aborted when dropped.
pub struct Cadence(pub tokio::task::JoinHandle<()>);

impl Drop for Cadence {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shop's staff once the shoppers have gone: every second, any door standing open
/// (one that opened for an order after its shopper gave up waiting) is shut, until
/// aborted. Nothing is taken; the order settles from the weights as after any close.
pub async fn close_doors_left_open(fleet: Arc<Fleet>) {
    loop {
        for c in &fleet.cabinets {
            for d in c.doors() {
                if c.is_open(d) {
                    let _ = c.close(d).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A refund an operator asked for, and what the API answered.
#[derive(Debug, Clone)]
pub struct RefundAsk {
    /// The order.
    pub order_id: String,
    /// The amounts asked, in the order sent (two at once for a double click).
    pub amounts: Vec<i64>,
    /// The statuses answered (0 when the request got no answer).
    pub statuses: Vec<u16>,
}

/// What one shopper's attempt took off the shelves, lane by lane (the shelf's own
/// count before less after), and the order it was for when the shopper learned it.
#[derive(Debug, Clone)]
pub struct Takes {
    /// The cabinet's index in the fleet.
    pub cab: usize,
    /// The order (unknown when the scan's answer was lost).
    pub order_id: Option<String>,
    /// Items taken by (door, lane).
    pub taken: BTreeMap<(DoorNo, LaneNo), u32>,
}

/// What the shoppers and the operator saw.
#[derive(Default)]
pub struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    /// Every attempt that took something.
    pub takes: Mutex<Vec<Takes>>,
    /// Purchases seen through to the end (the order in its end state).
    pub done: Mutex<Vec<Purchase>>,
    /// Why attempts failed (the first 2,000).
    pub errors: Mutex<Vec<String>>,
    /// Refunds asked.
    pub refunds: Mutex<Vec<RefundAsk>>,
}

impl Tally {
    /// Purchases seen through to the end.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Attempts that failed (an outage, a door that never opened, …).
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() < 2000 {
            e.push(why);
        }
    }
}

/// One or two lanes of `door` that still hold goods, one item each.
fn takes(fleet: &Fleet, rng: &mut StdRng, cab: usize, door: DoorNo) -> Vec<(LaneNo, u32)> {
    let mut lanes: Vec<LaneNo> = fleet.cabinets[cab]
        .counts()
        .iter()
        .filter(|((d, _), c)| *d == door && **c > 0)
        .map(|((_, l), _)| *l)
        .collect();
    let n = rng.random_range(1..=2).min(lanes.len());
    let mut out = Vec::new();
    for _ in 0..n {
        let l = lanes.swap_remove(rng.random_range(0..lanes.len()));
        out.push((l, 1));
    }
    out
}

/// The shopper of cabinet `cab`: buys until `stop` or the cabinet is empty. An attempt
/// cut off by an outage is counted and tried again once a door left open is closed.
pub async fn shopper(fleet: Arc<Fleet>, cab: usize, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    const MODES: [(&str, &str); 4] = [
        ("wechat", "once"),
        ("alipay", "each_time"),
        ("wechat", "each_time"),
        ("alipay", "once"),
    ];
    let mode = MODES[cab % MODES.len()];
    let phone = format!("139{:08}", cab);
    let shopper = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match fleet.new_shopper(&phone, mode.0, mode.1).await {
            Ok(s) => break s,
            Err(e) => {
                tally.fail(format!("shopper {phone}: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(cab as u64));
    while !stop.load(Ordering::Relaxed) {
        let first = DoorNo::of(rng.random_range(1..=2));
        let other = DoorNo::of(3 - first.get());
        let (door, t) = match takes(&fleet, &mut rng, cab, first) {
            t if !t.is_empty() => (first, t),
            _ => (other, takes(&fleet, &mut rng, cab, other)),
        };
        if t.is_empty() {
            return; // Sold out.
        }
        let before = fleet.cabinets[cab].counts();
        let attempt = attempt(&fleet, &shopper, cab, door, &t).await;
        let after = fleet.cabinets[cab].counts();
        let taken: BTreeMap<_, _> = before
            .iter()
            .filter_map(|(k, b)| Some((*k, b.checked_sub(*after.get(k)?)?)).filter(|(_, n)| *n > 0))
            .collect();
        let order_id = match &attempt {
            Ok(p) => Some(p.order_id.clone()),
            Err((id, _)) => id.clone(),
        };
        if !taken.is_empty() {
            tally
                .takes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Takes { cab, order_id, taken });
        }
        match attempt {
            Ok(p) => {
                tally.done.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                tally.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err((_, e)) => {
                tally.fail(format!("{}: {e}", fleet.cabinets[cab].id()));
                // A door the outage left open is closed by the shopper, as in a shop.
                for d in [DoorNo::of(1), DoorNo::of(2)] {
                    if fleet.cabinets[cab].wait_open(d, Duration::from_secs(2)).await {
                        while fleet.cabinets[cab].close(d).await.is_err() && !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One purchase: scan, confirm, take, close, then the order's end, asked of the
/// cabinet's node and then of any node that answers. A close the device could not send
/// (its connection was down) is sent again until it goes out, as firmware keeps a QoS 1
/// event until it is acknowledged. On failure: the order id when known, and why.
async fn attempt(
    fleet: &Fleet,
    shopper: &crate::fleet::ShopperHandle,
    cab: usize,
    door: DoorNo,
    takes: &[(LaneNo, u32)],
) -> Result<Purchase, (Option<String>, anyhow::Error)> {
    let vc = &fleet.cabinets[cab];
    let (order_id, taken) = match fleet.shop(shopper, cab, door, takes).await {
        Ok(x) => x,
        Err(e) => {
            // `Fleet::shop` fails at the close only after the shelf was emptied and the
            // door marked shut on the device: its `closed` is still owed to the platform.
            if e.to_string().starts_with("close:") {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while vc.close(door).await.is_err() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            return Err((None, e));
        }
    };
    let clients = std::iter::once(fleet.client_for(cab))
        .chain(std::iter::once(&fleet.client))
        .chain(fleet.more_clients.iter());
    let mut last = None;
    for client in clients {
        match fleet
            .wait_terminal_via(client, &order_id, &shopper.token, Duration::from_secs(30))
            .await
        {
            Ok(order) => return Ok(Purchase { order_id, taken, order }),
            Err(e) => last = Some(e),
        }
    }
    Err((Some(order_id), last.unwrap_or_else(|| anyhow::anyhow!("no node answered"))))
}

/// An operator refunding a paid order every `every`, through whichever node answers:
/// in turn the whole total, half of it, and 60 % twice at once (only one may pass).
pub async fn refunder(clients: Vec<ApiClient>, every: Duration, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut next = 0usize;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let pick = {
            let done = tally.done.lock().unwrap_or_else(|e| e.into_inner());
            // Each paid order at most once, in the order they were seen.
            let mut pick = None;
            while next < done.len() && pick.is_none() {
                let p = &done[next];
                next += 1;
                let total = p.order["total_cents"].as_i64().unwrap_or(0);
                if p.order["state"] == "paid" && total > 1 && rng.random_bool(0.5) {
                    pick = Some((p.order_id.clone(), total));
                }
            }
            pick
        };
        let Some((order_id, total)) = pick else { continue };
        let amounts = match turn % 3 {
            0 => vec![total],
            1 => vec![total / 2],
            _ => vec![total * 6 / 10, total * 6 / 10],
        };
        turn += 1;
        let client = &clients[rng.random_range(0..clients.len())];
        let path = format!("/api/v1/orders/{order_id}/refunds");
        let asks = amounts.iter().map(|a| {
            let body = json!({"amount_cents": a, "reason": "soak: the shopper asked"});
            let (client, path) = (client, path.clone());
            async move {
                client
                    .post(&path, &client.admin, &body)
                    .await
                    .map(|(st, _)| st.as_u16())
                    .unwrap_or(0)
            }
        });
        let statuses = futures::future::join_all(asks).await;
        tally.refunds.lock().unwrap_or_else(|e| e.into_inner()).push(RefundAsk {
            order_id,
            amounts,
            statuses,
        });
    }
}
