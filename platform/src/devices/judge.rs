//! Judging silent devices [D5, B1]: the sweep of this node's devices and, scaled out,
//! the devices of gateway nodes that stopped. Run by the platform's liveness loop.

use crate::db::{Db, DbError};
use crate::service::ServiceError;
use crate::Platform;
use tare_domain::cabinet::CabinetCommand;
use tare_domain::CabinetId;

impl Platform {
    /// After a restart, the cabinets this node last held as connected are tracked from
    /// now: a device whose connection died with the old process and never comes back is
    /// recorded offline once the threshold passes, instead of staying `online` forever.
    pub(crate) async fn resume_liveness(&self) -> Result<(), DbError> {
        let sql = "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'cabinet'";
        let ids: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await.map_err(DbError::from)?);
        let now = self.clock.now_ms();
        for (id,) in ids {
            let Ok(cabinet) = self.aggregates.cabinets.load(&id).await else {
                continue;
            };
            let connected = cabinet.is_connected();
            if let (true, Some(node), Ok(cid)) = (connected, &cabinet.node, CabinetId::parse(&id)) {
                if *node == self.hub.node() && !self.hub.is_attached(&cid) {
                    self.hub.liveness().connected(&cid, now);
                }
            }
        }
        Ok(())
    }

    /// Runs one liveness sweep now [D5, B1]: devices silent past the threshold are
    /// recorded offline (`DeviceWentSilent`, the operators' alert) if the platform is
    /// healthy; otherwise they show `unknown` until it is, and are then recomputed.
    pub async fn sweep_liveness(&self) -> Result<crate::devices::liveness::Sweep, ServiceError> {
        let now = self.clock.now_ms();
        let sweep = self.hub.liveness().sweep(now);
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
            self.hub.counters().silent_alerts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let cfg = self.hub.liveness().config();
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
        if !dead.is_empty() && !self.hub.liveness().health(now).healthy {
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
                self.hub.counters().silent_alerts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                marked += 1;
            }
        }
        tx.commit().await.map_err(DbError::from)?;
        Ok(marked)
    }
}
