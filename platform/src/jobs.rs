//! Durable effects and timers. A saga's decisions are stored here in the same
//! transaction as its feed checkpoint; the effect executor claims due rows with a lease
//! (so a crashed worker's claims come back), runs them, and marks them done.
//!
//! A key is scheduled once: re-deciding a redelivered event inserts nothing new. Done
//! rows are kept (status `done`) for the same reason and for the saga log.

use crate::db::{Db, DbError};
use tare_domain::UnixMs;
use tare_sagas::{Effect, Scheduled};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// Its key.
    pub key: String,
    /// What to do.
    pub effect: Effect,
    /// How many times it failed before.
    pub attempts: i64,
    /// When it was due.
    pub due_at: UnixMs,
}

/// Job counts by status (for metrics and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Waiting (due or not).
    pub pending: i64,
    /// Done.
    pub done: i64,
    /// Given up (dead letters).
    pub dead: i64,
}

/// A buried effect (a dead letter).
#[derive(Debug, Clone, PartialEq)]
pub struct BuriedJob {
    /// Its key.
    pub key: String,
    /// The effect, as stored.
    pub effect: serde_json::Value,
    /// Why it was given up.
    pub error: String,
    /// Failed attempts before.
    pub attempts: i64,
    /// When it was given up.
    pub buried_at: UnixMs,
}

/// The job table.
#[derive(Clone)]
pub struct Jobs {
    db: Db,
    /// Several nodes claim from this table (scaled out): a lane's effects are claimed one
    /// at a time, each once the one before it is done.
    shared: bool,
    /// Bumped after jobs are scheduled: the effects loop wakes on it at once instead of
    /// at its next idle poll (a saga step's effect would otherwise wait up to the poll
    /// interval — most of a purchase's latency when the fleet is quiet).
    scheduled: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl Jobs {
    /// Jobs in `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            shared: false,
            scheduled: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// These jobs, claimed by several nodes when `shared` (scaled out): only the first
    /// pending effect of a lane (an order, a command, …) may then be claimed, so one
    /// order's effects never run side by side on two nodes, out of order (a door's close
    /// recorded before its opening).
    pub fn shared(self, shared: bool) -> Self {
        Self { shared, ..self }
    }

    /// Changes whenever jobs have been scheduled (by this process).
    pub fn scheduled(&self) -> tokio::sync::watch::Receiver<u64> {
        self.scheduled.subscribe()
    }

    /// Wakes whoever waits on [`Self::scheduled`]: jobs were scheduled, or (the executor
    /// having had no room to claim) a lane just made some.
    pub fn nudge(&self) {
        self.scheduled.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Inserts `jobs`, each with the feed position of the event that caused it (which
    /// orders an order's effects), keeping existing keys, and moves consumer `name`'s
    /// checkpoint to `position`, atomically. Returns whether the checkpoint moved (false:
    /// these events were decided before, and nothing new was scheduled).
    pub async fn schedule_with_checkpoint(
        &self,
        name: &str,
        position: i64,
        jobs: &[(i64, Scheduled)],
        now: UnixMs,
    ) -> Result<bool, DbError> {
        let encoded: Vec<(String, i64, String, i64, &str)> = jobs
            .iter()
            .map(|(source, j)| {
                Ok((
                    j.key.clone(),
                    j.due_at,
                    serde_json::to_string(&j.effect)?,
                    *source,
                    j.effect.serial_key(),
                ))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let moved = crate::on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            // One statement per hundred jobs, not one per job.
            for chunk in encoded.chunks(100) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO jobs (key, due_at, effect, source, updated_at, lane) ");
                q.push_values(chunk, |mut b, (key, due_at, effect, source, lane)| {
                    b.push_bind(key).push_bind(due_at).push_bind(effect).push_bind(source).push_bind(now).push_bind(*lane);
                });
                q.push(" ON CONFLICT (key) DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            // Never backwards: a redelivered (older) event's jobs are already there, and
            // a slower node finishing late must not rewind a checkpoint another moved on.
            let moved = sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE checkpoints.position < excluded.position")
                .bind(name).bind(position)
                .execute(&mut *tx).await?
                .rows_affected() > 0;
            tx.commit().await?;
            moved
        });
        if !encoded.is_empty() {
            self.nudge();
        }
        Ok(moved)
    }

    /// Inserts `jobs` outside any saga (the platform's own timers), keeping existing
    /// keys: arming the same timer twice, or on every node, schedules it once.
    pub async fn schedule(&self, jobs: &[Scheduled], now: UnixMs) -> Result<(), DbError> {
        for j in jobs {
            let effect = serde_json::to_string(&j.effect)?;
            crate::on_db!(&self.db, pool => {
                sqlx::query("INSERT INTO jobs (key, due_at, effect, source, updated_at, lane) VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (key) DO NOTHING")
                    .bind(&j.key).bind(j.due_at).bind(&effect).bind(now).bind(j.effect.serial_key())
                    .execute(pool).await?;
            });
        }
        if !jobs.is_empty() {
            self.nudge();
        }
        Ok(())
    }

    /// Claims up to `limit` due jobs for `lease_ms` (a claim that is not completed in
    /// time is claimed again by whoever looks next).
    pub async fn claim_due(&self, now: UnixMs, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedJob>, DbError> {
        let rows: Vec<(String, String, i64, i64, i64)> = match &self.db {
            Db::Sqlite { write, .. } => {
                sqlx::query_as(
                    "UPDATE jobs SET locked_until = $1 WHERE key IN (SELECT key FROM jobs WHERE status = 'pending' AND due_at <= $2 AND locked_until <= $3 ORDER BY due_at, source, key LIMIT $4) RETURNING key, effect, attempts, due_at, COALESCE(source, 0)",
                )
                .bind(now + lease_ms).bind(now).bind(now).bind(limit)
                .fetch_all(write)
                .await?
            }
            Db::Postgres(pool) if self.shared => {
                // Only a lane's first pending effect: one running (leased) on another node,
                // or claimed there a moment ago, holds back the rest of its lane.
                sqlx::query_as(
                    "UPDATE jobs SET locked_until = $1 WHERE key IN (SELECT key FROM jobs j WHERE status = 'pending' AND due_at <= $2 AND locked_until <= $3 \
                     AND (lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e WHERE e.lane = j.lane AND e.status = 'pending' \
                          AND (e.due_at, COALESCE(e.source, 0), e.key) < (j.due_at, COALESCE(j.source, 0), j.key))) \
                     ORDER BY due_at, source, key LIMIT $4 FOR UPDATE OF j SKIP LOCKED) RETURNING key, effect, attempts::bigint, due_at, COALESCE(source, 0)",
                )
                .bind(now + lease_ms).bind(now).bind(now).bind(limit)
                .fetch_all(pool)
                .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "UPDATE jobs SET locked_until = $1 WHERE key IN (SELECT key FROM jobs WHERE status = 'pending' AND due_at <= $2 AND locked_until <= $3 ORDER BY due_at, source, key LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING key, effect, attempts::bigint, due_at, COALESCE(source, 0)",
                )
                .bind(now + lease_ms).bind(now).bind(now).bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut rows = rows;
        rows.sort_by(|a, b| (a.3, a.4, &a.0).cmp(&(b.3, b.4, &b.0)));
        for (key, effect, attempts, due_at, _source) in rows {
            match serde_json::from_str(&effect) {
                Ok(effect) => out.push(ClaimedJob {
                    key,
                    effect,
                    attempts,
                    due_at,
                }),
                Err(e) => {
                    // A row this build cannot read: park it rather than loop on it.
                    tracing::error!(%key, error = %e, "undecodable job parked");
                    self.finish(&key, "dead", Some(&e.to_string()), now).await?;
                }
            }
        }
        Ok(out)
    }

    async fn finish(&self, key: &str, status: &str, error: Option<&str>, now: UnixMs) -> Result<(), DbError> {
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE jobs SET status = $1, last_error = $2, updated_at = $3, locked_until = 0 WHERE key = $4")
                .bind(status).bind(error).bind(now).bind(key)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes up to `limit` effects done before `before`; returns how many. A done row
    /// only keeps a replayed saga step from scheduling its effect again, and the sagas
    /// never read further back than their checkpoints: past the retention it is history
    /// the log already tells, and left alone it would grow the table without end.
    pub async fn prune_done(&self, before: UnixMs, limit: i64) -> Result<u64, DbError> {
        let sql = "DELETE FROM jobs WHERE key IN (SELECT key FROM jobs WHERE status = 'done' AND updated_at < $1 LIMIT $2)";
        let n = crate::on_db!(&self.db, pool => sqlx::query(sql).bind(before).bind(limit).execute(pool).await?.rows_affected());
        Ok(n)
    }

    /// Marks `keys` done, a few hundred to a statement.
    pub async fn complete_many(&self, keys: &[String], now: UnixMs) -> Result<(), DbError> {
        for chunk in keys.chunks(500) {
            crate::on_db!(&self.db, pool => {
                let mut q = sqlx::QueryBuilder::new("UPDATE jobs SET status = 'done', last_error = NULL, locked_until = 0, updated_at = ");
                q.push_bind(now).push(" WHERE key IN (");
                let mut keys = q.separated(", ");
                for k in chunk {
                    keys.push_bind(k.as_str());
                }
                q.push(")");
                q.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Gives a job up (a dead letter an operator can see and retry).
    pub async fn bury(&self, key: &str, error: &str, now: UnixMs) -> Result<(), DbError> {
        self.finish(key, "dead", Some(error), now).await
    }

    /// Runs the job again at `due_at`; `failed` counts it as a failed attempt.
    pub async fn defer(&self, key: &str, due_at: UnixMs, failed: Option<&str>, now: UnixMs) -> Result<(), DbError> {
        let inc = i64::from(failed.is_some());
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE jobs SET due_at = $1, attempts = attempts + $2, last_error = $3, updated_at = $4, locked_until = 0 WHERE key = $5")
                .bind(due_at).bind(inc).bind(failed).bind(now).bind(key)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Gives a claimed job back unrun (its claimer is stopping): it can be claimed again
    /// at once, with no attempt counted.
    pub async fn release(&self, key: &str) -> Result<(), DbError> {
        crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE jobs SET locked_until = 0 WHERE key = $1 AND status = 'pending'")
                .bind(key)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// The earliest due time of a pending job.
    pub async fn next_due(&self) -> Result<Option<UnixMs>, DbError> {
        let sql = "SELECT MIN(due_at) FROM jobs WHERE status = 'pending'";
        let (t,): (Option<i64>,) = crate::on_db!(&self.db, pool => sqlx::query_as(sql).fetch_one(pool).await?);
        Ok(t)
    }

    /// Counts by status.
    pub async fn counts(&self) -> Result<JobCounts, DbError> {
        self.counts_where("SELECT status, COUNT(*) FROM jobs GROUP BY status").await
    }

    /// The pending and dead jobs only (`done` stays 0): what `/metrics` shows on every
    /// scrape, read through the `(status, due_at)` index, so its cost follows the work
    /// outstanding rather than the history of every effect ever run.
    pub async fn open_counts(&self) -> Result<JobCounts, DbError> {
        self.counts_where("SELECT status, COUNT(*) FROM jobs WHERE status IN ('pending', 'dead') GROUP BY status")
            .await
    }

    async fn counts_where(&self, sql: &str) -> Result<JobCounts, DbError> {
        let rows: Vec<(String, i64)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        let mut c = JobCounts::default();
        for (s, n) in rows {
            match s.as_str() {
                "pending" => c.pending = n,
                "done" => c.done = n,
                _ => c.dead += n,
            }
        }
        Ok(c)
    }

    /// The buried effects (dead letters), newest first: what failed for good, and why.
    pub async fn buried(&self, limit: i64) -> Result<Vec<BuriedJob>, DbError> {
        let sql = "SELECT key, effect, COALESCE(last_error, ''), attempts, updated_at FROM jobs WHERE status = 'dead' ORDER BY updated_at DESC, key LIMIT $1";
        let rows: Vec<(String, String, String, i64, i64)> =
            crate::on_db!(&self.db, pool => sqlx::query_as(sql).bind(limit).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(key, effect, error, attempts, at)| BuriedJob {
                key,
                effect: serde_json::from_str(&effect).unwrap_or(serde_json::Value::String(effect)),
                error,
                attempts,
                buried_at: at,
            })
            .collect())
    }

    /// Brings a buried effect back to run now (an operator's "retry"); false if `key` is
    /// not a buried effect.
    pub async fn revive(&self, key: &str, now: UnixMs) -> Result<bool, DbError> {
        let sql = "UPDATE jobs SET status = 'pending', due_at = $1, locked_until = 0, updated_at = $1 WHERE key = $2 AND status = 'dead'";
        let n = crate::on_db!(&self.db, pool => sqlx::query(sql).bind(now).bind(key).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Where job `key` stands, for people (`done`, `pending due 1800000000000, 2
    /// attempts, last error: …`); `None` when no such job is stored.
    pub async fn describe(&self, key: &str) -> Result<Option<String>, DbError> {
        let sql = "SELECT status, due_at, CAST(attempts AS BIGINT), last_error FROM jobs WHERE key = $1";
        let row: Option<(String, i64, i64, Option<String>)> =
            crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(key).fetch_optional(pool).await?);
        Ok(row.map(|(status, due_at, attempts, err)| {
            let mut s = status.clone();
            if status == "pending" {
                s.push_str(&format!(" due {due_at}"));
            }
            if attempts > 0 {
                s.push_str(&format!(", {attempts} attempt(s)"));
            }
            if let Some(e) = err {
                s.push_str(&format!(", last error: {e}"));
            }
            s
        }))
    }

    /// Consumer `name`'s checkpoint (0 if it never ran).
    pub async fn checkpoint(&self, name: &str) -> Result<i64, DbError> {
        let sql = "SELECT position FROM checkpoints WHERE name = $1";
        let row: Option<(i64,)> = crate::on_db!(&self.db, pool => sqlx::query_as(sql).bind(name).fetch_optional(pool).await?);
        Ok(row.map_or(0, |r| r.0))
    }

    /// [`Self::checkpoint`] through the read pool: for monitoring, which must not queue
    /// behind the embedded store's one writer.
    pub async fn checkpoint_for_metrics(&self, name: &str) -> Result<i64, DbError> {
        let sql = "SELECT position FROM checkpoints WHERE name = $1";
        let row: Option<(i64,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(name).fetch_optional(pool).await?);
        Ok(row.map_or(0, |r| r.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, order: &str) -> Scheduled {
        Scheduled::at(key.into(), 100, Effect::CheckDoorLeftOpen { order_id: order.into() })
    }

    fn keys(jobs: &[ClaimedJob]) -> Vec<&str> {
        jobs.iter().map(|j| j.key.as_str()).collect()
    }

    #[tokio::test]
    async fn nodes_sharing_the_table_claim_a_lane_one_effect_at_a_time() {
        let admin = std::env::var("TARE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let url = crate::db::create_scratch_postgres(&admin, "tare_jobs").await.unwrap();
        let db = Db::open_postgres(&url, 4).await.unwrap();
        let (node_a, node_b) = (Jobs::new(db.clone()).shared(true), Jobs::new(db.clone()).shared(true));
        // Order o1's door opened (position 1), then closed (2); order o2's one effect (3).
        let scheduled = [
            (1, check("o1-opened", "o1")),
            (2, check("o1-closed", "o1")),
            (3, check("o2-opened", "o2")),
        ];
        node_a.schedule_with_checkpoint("saga", 3, &scheduled, 100).await.unwrap();
        // Node A takes each lane's first effect; o1's close waits for its opening.
        let a = node_a.claim_due(200, 10, 30_000).await.unwrap();
        assert_eq!(keys(&a), ["o1-opened", "o2-opened"]);
        // Node B finds nothing it may run while A holds o1's opening.
        assert!(node_b.claim_due(200, 10, 30_000).await.unwrap().is_empty());
        // Once the opening is done, the close is anyone's, and runs after it.
        node_a.complete_many(&["o1-opened".to_string()], 300).await.unwrap();
        assert_eq!(keys(&node_b.claim_due(300, 10, 30_000).await.unwrap()), ["o1-closed"]);
        // A single node (not shared) claims a lane's effects together, to run in turn.
        node_a
            .schedule_with_checkpoint("saga", 5, &[(4, check("o3-a", "o3")), (5, check("o3-b", "o3"))], 400)
            .await
            .unwrap();
        assert_eq!(
            keys(&Jobs::new(db.clone()).claim_due(400, 10, 30_000).await.unwrap()),
            ["o3-a", "o3-b"]
        );
        // Done effects past the retention are pruned, a bounded batch at a time; what is
        // pending, or done since, stays.
        node_a.complete_many(&["o2-opened".to_string()], 350).await.unwrap();
        assert_eq!(node_a.prune_done(320, 10).await.unwrap(), 1, "o1-opened, done at 300");
        assert_eq!(node_a.prune_done(400, 10).await.unwrap(), 1, "o2-opened, done at 350");
        assert_eq!(node_a.prune_done(400, 10).await.unwrap(), 0);
        let c = node_a.counts().await.unwrap();
        assert_eq!((c.done, c.pending), (0, 3), "{c:?}");
        db.close().await;
        crate::db::drop_scratch_postgres(&admin, &url).await.unwrap();
    }
}
