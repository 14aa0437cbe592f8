//! The projections runner and view reads. Each batch of feed events is folded into the
//! documents it touches and committed together with the projections' checkpoint, so a
//! crash never leaves a view with an update it will apply twice or one it lost [E2].

use crate::db::{Db, DbError};
use crate::feed::Feed;
use crate::runner::decode;
use serde_json::Value;
use std::collections::HashMap;
use tare_projections::Projection;

/// The checkpoint name of the projections.
pub const PROJECTIONS: &str = "projections";

/// Reads and writes view documents.
#[derive(Clone)]
pub struct Views {
    db: Db,
}

impl Views {
    /// Views in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One document.
    pub async fn get(&self, view: &str, id: &str) -> Result<Option<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 AND id = $2";
        let row: Option<(String,)> =
            crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).bind(id).fetch_optional(pool).await?);
        Ok(row.map(|(d,)| serde_json::from_str(&d)).transpose()?)
    }

    /// Documents of `view` owned by `owner`, by id.
    pub async fn by_owner(&self, view: &str, owner: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 AND owner = $2 ORDER BY id LIMIT $3";
        let rows: Vec<(String,)> =
            crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).bind(owner).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Documents of `view` whose owner starts with `prefix`, by owner then id (a range
    /// on the owner index, not a scan).
    pub async fn by_owner_prefix(&self, view: &str, prefix: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        // Every owner with the prefix sorts at or after it and before the prefix with its
        // last byte raised by one (prefixes here end in ASCII).
        let mut end = prefix.to_string();
        let last = end.pop().map_or('\u{1}', |c| char::from_u32(c as u32 + 1).unwrap_or(char::MAX));
        end.push(last);
        self.by_owner_range(view, prefix, &end, limit).await
    }

    /// Documents of `view` whose owner is in `[from, to)` (byte order), by owner then id.
    pub async fn by_owner_range(&self, view: &str, from: &str, to: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        // Byte order on both stores (PostgreSQL's locale collations skip punctuation).
        let sql = if self.db.is_postgres() {
            r#"SELECT doc FROM views WHERE view = $1 AND owner COLLATE "C" >= $2 AND owner COLLATE "C" < $3 ORDER BY owner COLLATE "C", id LIMIT $4"#
        } else {
            "SELECT doc FROM views WHERE view = $1 AND owner >= $2 AND owner < $3 ORDER BY owner, id LIMIT $4"
        };
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(view).bind(from).bind(to).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Up to `limit` documents of `view` (owned by `owner`, when given) whose id sorts
    /// after `after`, by id: a page of a listing, through the primary key or the owner
    /// index.
    pub async fn page(&self, view: &str, owner: Option<&str>, after: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        let collate = if self.db.is_postgres() { r#" COLLATE "C""# } else { "" };
        let by_owner = if owner.is_some() { "AND owner = $4 " } else { "" };
        let sql = format!("SELECT doc FROM views WHERE view = $1 AND id{collate} > $2 {by_owner}ORDER BY id{collate} LIMIT $3");
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => {
            let q = sqlx::query_as(&sql).bind(view).bind(after).bind(limit);
            let q = match owner { Some(o) => q.bind(o), None => q };
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Every document of `view`, by id.
    pub async fn all(&self, view: &str) -> Result<Vec<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 ORDER BY id";
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Drops every view document and the checkpoint, for a rebuild by replay.
    pub async fn reset(&self) -> Result<(), DbError> {
        crate::on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM views").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM checkpoints WHERE name = $1 OR name LIKE $2")
                .bind(PROJECTIONS).bind(format!("{PROJECTIONS}/%")).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// The planogram index the pricing saga reads [C2]: the lanes of each product, from the
/// `product_lanes` view.
pub struct ViewPlanograms(pub Views);

#[async_trait::async_trait]
impl tare_sagas::ports::PlanogramIndex for ViewPlanograms {
    async fn lanes_holding(
        &self,
        sku: &tare_domain::Sku,
    ) -> Result<Vec<(tare_domain::CabinetId, tare_domain::DoorNo, tare_domain::LaneNo)>, String> {
        let Some(doc) = self
            .0
            .get(tare_projections::ProductLanes::VIEW, sku.as_str())
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(vec![]);
        };
        let doc: tare_projections::ProductLanesDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        Ok(doc
            .lanes
            .into_iter()
            .filter_map(|(c, d, l)| {
                let cabinet = tare_domain::CabinetId::parse(&c).ok()?;
                let door = tare_domain::DoorNo::parse("door", i64::from(d)).ok()?;
                let lane = tare_domain::LaneNo::parse("lane", i64::from(l)).ok()?;
                Some((cabinet, door, lane))
            })
            .collect())
    }
}

/// A document's key within a batch: (view, id).
type DocKey = (&'static str, String);

/// One pass of the projections: folds up to `batch` events after the checkpoint.
pub async fn project_step(db: &Db, feed: &Feed, projections: &[Box<dyn Projection>], batch: i64) -> Result<usize, DbError> {
    let from: Option<(i64,)> = crate::on_db!(db, pool => sqlx::query_as("SELECT position FROM checkpoints WHERE name = $1").bind(PROJECTIONS).fetch_optional(pool).await?);
    let events = feed.read_after(from.map_or(0, |r| r.0), batch).await?;
    project_events(db, PROJECTIONS, &events, projections).await?;
    Ok(events.len())
}

/// Folds `events` (in feed order) into the views and moves checkpoint `name` past them,
/// in one transaction. Events at or before the checkpoint were applied already (a
/// redelivery, or another node got there first) and are skipped; on PostgreSQL the
/// checkpoint row is locked for the transaction, so two nodes handed the same event
/// apply it once. Returns how many events were applied.
pub async fn project_events(
    db: &Db,
    name: &str,
    events: &[crate::feed::FeedEvent],
    projections: &[Box<dyn Projection>],
) -> Result<usize, DbError> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    crate::on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
            .bind(name).execute(&mut *tx).await?;
        let lock = if db.is_postgres() { " FOR UPDATE" } else { "" };
        let (from,): (i64,) = sqlx::query_as(&format!("SELECT position FROM checkpoints WHERE name = $1{lock}"))
            .bind(name).fetch_one(&mut *tx).await?;
        let events: Vec<_> = events.iter().filter(|e| e.position > from).collect();
        if events.is_empty() {
            return Ok(0);
        }
        // Views rebuilt by replay already hold the events up to their floor.
        let floor_rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, position FROM checkpoints WHERE name LIKE $1")
            .bind(crate::replay::floors_pattern()).fetch_all(&mut *tx).await?;
        let floors = crate::replay::floors(floor_rows);
        // Documents touched in this batch, so later events see earlier writes.
        let mut cache: HashMap<DocKey, (Option<String>, Option<Value>)> = HashMap::new();
        for &ev in &events {
            let Some(event) = decode(ev) else { continue };
            let time = ev.time();
            for p in projections {
                if floors.get(p.name()).is_some_and(|f| ev.position <= *f) {
                    continue;
                }
                let mut docs = Vec::new();
                for id in p.touches(&ev.aggregate_id, &event) {
                    let k = (p.name(), id.clone());
                    if !cache.contains_key(&k) {
                        // Locked on PostgreSQL: partitions' consumers may touch one document at once.
                        let row: Option<(Option<String>, String)> = sqlx::query_as(&format!("SELECT owner, doc FROM views WHERE view = $1 AND id = $2{lock}"))
                            .bind(p.name()).bind(&id).fetch_optional(&mut *tx).await?;
                        let entry = match row {
                            Some((owner, doc)) => (owner, Some(serde_json::from_str(&doc)?)),
                            None => (None, None),
                        };
                        cache.insert(k.clone(), entry);
                    }
                    docs.push((id, cache.get(&k).and_then(|(_, d)| d.clone())));
                }
                for w in p.apply(&docs, &ev.aggregate_id, &event, ev.position, time) {
                    cache.insert((p.name(), w.id.clone()), (w.owner.clone(), Some(w.doc.clone())));
                    sqlx::query("INSERT INTO views (view, id, owner, doc, position) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (view, id) DO UPDATE SET owner = excluded.owner, doc = excluded.doc, position = excluded.position")
                        .bind(p.name()).bind(&w.id).bind(&w.owner).bind(serde_json::to_string(&w.doc)?).bind(ev.position)
                        .execute(&mut *tx).await?;
                }
            }
        }
        sqlx::query("UPDATE checkpoints SET position = $1 WHERE name = $2")
            .bind(last).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(events.len())
    })
}
