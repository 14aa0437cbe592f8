//! Device commands across nodes [D7, B7]: the node that runs an effect hands a command
//! for a device held by another gateway node to that node over NATS request/reply.

use super::Nats;
use crate::devices::DeviceHub;
use crate::store::Aggregates;
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tare_domain::cabinet::DeviceStatus;
use tare_domain::{CabinetId, UnixMs};
use tare_sagas::ports::{DeviceLink, DeviceLinkError};
use tokio::sync::watch;

/// A device command handed from the node that runs the effect to the gateway node that
/// holds the device's connection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RoutedCommand {
    cabinet: String,
    cmd_id: String,
    #[serde(rename = "type")]
    type_name: String,
    args: serde_json::Value,
    expires_at: UnixMs,
}

/// The gateway node's answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RoutedReply {
    delivered: bool,
}

/// How long a node waits for the holding gateway node to take a command. A command not
/// taken is reported `NotConnected`, and the command's own resend covers it [D7].
const ROUTE_TIMEOUT: Duration = Duration::from_secs(2);

/// The device link of a scaled-out node [D7]: a device connected here gets the command
/// from the local hub; otherwise the cabinet's last `DeviceConnected` names the gateway
/// node that holds it, and the command goes there over NATS (request/reply, so a door
/// command is never queued for an absent device [B7]).
pub struct RoutedDevices {
    hub: Arc<DeviceHub>,
    aggregates: Arc<Aggregates>,
    nats: Arc<Nats>,
}

impl RoutedDevices {
    /// Routes through `nats` what `hub` does not hold.
    pub fn new(hub: Arc<DeviceHub>, aggregates: Arc<Aggregates>, nats: Arc<Nats>) -> Self {
        Self { hub, aggregates, nats }
    }
}

#[async_trait::async_trait]
impl DeviceLink for RoutedDevices {
    async fn send_command(
        &self,
        cabinet: &CabinetId,
        cmd_id: &str,
        type_name: &str,
        args: serde_json::Value,
        expires_at: UnixMs,
    ) -> Result<(), DeviceLinkError> {
        if self.hub.is_attached(cabinet) {
            return self.hub.send_command(cabinet, cmd_id, type_name, args, expires_at).await;
        }
        let not_connected = || DeviceLinkError::NotConnected(cabinet.to_string());
        let state = self
            .aggregates
            .cabinets
            .load(&cabinet.to_string())
            .await
            .map_err(|_| not_connected())?;
        let connected = matches!(state.status, DeviceStatus::Online | DeviceStatus::PendingInit);
        let Some(node) = state.node.filter(|n| connected && *n != self.hub.node()) else {
            return Err(not_connected());
        };
        let body = serde_json::to_vec(&RoutedCommand {
            cabinet: cabinet.to_string(),
            cmd_id: cmd_id.to_string(),
            type_name: type_name.to_string(),
            args,
            expires_at,
        })
        .map_err(|_| not_connected())?;
        let reply = tokio::time::timeout(
            ROUTE_TIMEOUT,
            self.nats.client.request(self.nats.gateway_subject(&node), body.into()),
        )
        .await
        .map_err(|_| not_connected())?
        .map_err(|e| {
            tracing::debug!(%cabinet, %node, error = %e, "gateway node did not take the command");
            not_connected()
        })?;
        match serde_json::from_slice::<RoutedReply>(&reply.payload) {
            Ok(RoutedReply { delivered: true }) => {
                self.nats.counters.commands_routed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(not_connected()),
        }
    }
}

/// On a gateway node: takes commands other nodes route here and hands them to the local
/// hub, answering whether the device's connection took it.
pub async fn serve_routed_commands(nats: Arc<Nats>, hub: Arc<DeviceHub>, mut shutdown: watch::Receiver<bool>) {
    let subject = nats.gateway_subject(hub.node());
    let mut sub = match nats.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot take routed commands");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let delivered = match serde_json::from_slice::<RoutedCommand>(&msg.payload) {
            Ok(c) => match CabinetId::parse(&c.cabinet) {
                Ok(cabinet) => hub
                    .send_command(&cabinet, &c.cmd_id, &c.type_name, c.args, c.expires_at)
                    .await
                    .is_ok(),
                Err(_) => false,
            },
            Err(e) => {
                tracing::warn!(error = %e, "undecodable routed command");
                false
            }
        };
        if let Some(reply) = msg.reply {
            let body = serde_json::to_vec(&RoutedReply { delivered }).unwrap_or_default();
            let _ = nats.client.publish(reply, body.into()).await;
        }
    }
}
