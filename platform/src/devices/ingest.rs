//! One uplink's way in: parse it per the contract, drop it if it is a duplicate or far
//! behind the device's sequence, note when the device was heard from, and hand it to its
//! kind's handler. A message the platform could not record is forgotten by the dedupe
//! window, so the device's resend of it gets through; a resend that arrives while the
//! first copy is still being recorded is neither applied nor acknowledged.

use super::dedupe::{Verdict, SEQ_WINDOW};
use super::{lock, DeviceHub};
use crate::store::{CommandError, Meta};
use std::sync::atomic::Ordering;
use tare_domain::cabinet::{Cabinet, CabinetCommand, CabinetError};
use tare_domain::{CabinetId, UnixMs};
use tare_protocol::{parse_uplink, ProtocolError, Uplink, UplinkBody, UplinkKind};

/// What happened to an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied (or recorded as telemetry).
    Accepted,
    /// A message id seen before: ignored.
    Duplicate,
}

/// Why an uplink was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// It broke the contract.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The cabinet is not registered.
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// The platform could not record it (the device should resend).
    #[error("store: {0}")]
    Store(String),
}

impl DeviceHub {
    /// Handles one uplink of `kind` from `cabinet` (already authenticated by the
    /// transport).
    pub async fn ingest(&self, cabinet: &CabinetId, kind: &str, payload: &[u8]) -> Result<IngestOutcome, IngestError> {
        let received_at = self.clock.now_ms();
        let up = parse_uplink(kind, payload).map_err(|e| self.refused(cabinet, kind, e))?;
        if !lock(&self.recent).contains_key(cabinet) {
            // First heard from since this node started: what the log holds of it is applied.
            let recorded = match self.log.get() {
                Some(db) => super::dedupe::recorded_messages(db, &cabinet.to_string())
                    .await
                    .map_err(|e| IngestError::Store(e.to_string()))?,
                None => Vec::new(),
            };
            lock(&self.recent)
                .entry(cabinet.clone())
                .or_insert_with(|| super::dedupe::RecentIds::seeded(&recorded));
        }
        let verdict = lock(&self.recent).entry(cabinet.clone()).or_default().judge(
            &up.envelope.id,
            up.envelope.seq,
            up.kind == UplinkKind::Boot,
            up.kind == UplinkKind::Status,
        );
        match verdict {
            Verdict::Fresh => {}
            Verdict::Duplicate => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return Ok(IngestOutcome::Duplicate);
            }
            // Acknowledging it now would lose the message if the first copy then fails:
            // the device is told to resend later, as for a store failure.
            Verdict::InFlight => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                return Err(IngestError::Store(format!(
                    "message {} is still being recorded; resend it",
                    up.envelope.id
                )));
            }
            Verdict::Stale(highest) => {
                let e = ProtocolError::invalid(
                    "seq",
                    format!(
                        "{} is more than {SEQ_WINDOW} behind the device's latest {highest} with no boot in between",
                        up.envelope.seq
                    ),
                );
                self.counters.reject("stale_seq");
                tracing::warn!(%cabinet, kind, error = %e, "device message refused");
                return Err(e.into());
            }
        }
        lock(&self.last_seen).insert(cabinet.clone(), received_at);
        let applied = self.apply(cabinet, &up, received_at).await;
        // Recorded: a resend is a duplicate. Not recorded: let a resend of it through.
        if let Some(r) = lock(&self.recent).get_mut(cabinet) {
            r.settle(&up.envelope.id, applied.is_ok());
        }
        match applied {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(IngestOutcome::Accepted)
            }
            Err(e) => {
                if let IngestError::UnknownDevice(_) = e {
                    self.counters.reject("unknown_device");
                }
                Err(e)
            }
        }
    }

    /// Counts and logs a message that broke the contract.
    fn refused(&self, cabinet: &CabinetId, kind: &str, e: ProtocolError) -> IngestError {
        self.counters.reject(e.reason());
        tracing::warn!(%cabinet, kind, error = %e, "device message refused");
        e.into()
    }

    /// Hands a parsed uplink to its kind's handler.
    async fn apply(&self, cabinet: &CabinetId, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        match &up.body {
            UplinkBody::Boot { fw, doors, lanes, .. } => self.on_boot(cabinet, up, fw, *doors, lanes, at).await,
            UplinkBody::Weight { .. } => self.on_weight(cabinet, up, at).await,
            UplinkBody::Door { door, state, cmd_id } => self.on_door(cabinet, up, *door, *state, cmd_id.clone(), at).await,
            UplinkBody::Ack {
                cmd_id,
                status,
                detail,
                result,
            } => self.on_ack(cabinet, up, cmd_id, *status, detail.clone(), result.clone(), at).await,
            UplinkBody::Time { device_send_ts } => {
                self.on_time(cabinet, *device_send_ts, at);
                Ok(())
            }
            UplinkBody::Compartment { compartment, event } => self.on_compartment(cabinet, up, *compartment, *event, at).await,
            UplinkBody::AdPlay { ad_id, duration_ms } => self.on_ad_play(cabinet, up, ad_id, *duration_ms, at).await,
            UplinkBody::Status { state } => self.on_status(cabinet, up, *state, at).await,
            UplinkBody::Heartbeat(hb) => self.on_heartbeat(cabinet, up, hb, at).await,
        }
    }

    pub(super) async fn load_cabinet(&self, cabinet: &CabinetId) -> Result<Cabinet, IngestError> {
        self.aggregates
            .cabinets
            .load(&cabinet.to_string())
            .await
            .map_err(|e| IngestError::Store(e.to_string()))
    }

    /// Issues a command to the device's cabinet on behalf of uplink `up`; a refusal is
    /// the device breaking the contract (an unknown door, …), counted as such.
    pub(super) async fn cabinet_cmd(&self, cabinet: &CabinetId, cmd: CabinetCommand, up: &Uplink, at: UnixMs) -> Result<(), IngestError> {
        let meta = Meta::new(at, cabinet.to_string(), format!("device:{}", up.envelope.id));
        match self.aggregates.cabinets.execute(&cabinet.to_string(), cmd, meta).await {
            Ok(()) => Ok(()),
            Err(CommandError::Rejected(CabinetError::NotFound)) => Err(IngestError::UnknownDevice(cabinet.to_string())),
            Err(CommandError::Rejected(e)) => {
                let e = match e {
                    CabinetError::Invalid { field, reason } => ProtocolError::Invalid { field, reason },
                    other => ProtocolError::invalid("door", other.to_string()),
                };
                self.counters.reject(e.reason());
                Err(e.into())
            }
            Err(e) => Err(IngestError::Store(e.to_string())),
        }
    }
}
