//! Replaying the log into the read models [E2]: every projection folded from the first
//! event, in feed order, in memory — to rebuild views in place (`tare replay`), or to
//! check the live ones against what the log says they must be (`tare replay --verify`).
//! The same log always folds to the same documents, byte for byte: the projections are
//! pure, the feed's order is fixed, and documents are stored as their JSON text.
//!
//! A rebuilt view is installed with its own floor (`projections/view/{name}`): the live
//! runners skip, for that view, every event the rebuild already folded, so a view can be
//! dropped and rebuilt while the others keep their place.

use crate::db::{Db, DbError};
use crate::feed::Feed;
use crate::runner::decode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use tare_projections::Projection;

/// Events read from the feed at a time.
const READ_BATCH: i64 = 5_000;

/// Rows written per statement when a rebuild is installed.
const WRITE_BATCH: usize = 500;

/// The floor of view `view`: events at or before it are in the view already.
pub fn view_floor(view: &str) -> String {
    format!("{}/view/{view}", crate::views::PROJECTIONS)
}

/// A document as stored: its owner, its JSON text, and the position of the event that
/// last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    /// The listing key.
    pub owner: Option<String>,
    /// The document's JSON text.
    pub doc: String,
    /// The feed position that last wrote it.
    pub position: i64,
}

/// `(view, id)`.
pub type DocKey = (String, String);

/// Views folded from the log.
#[derive(Debug, Default)]
pub struct Rebuild {
    /// Every document, by view and id.
    pub docs: BTreeMap<DocKey, StoredDoc>,
    /// The last feed position folded.
    pub through: i64,
    /// Events read.
    pub events: u64,
}

/// One way the live views differ from the log's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The log makes a document the live view lacks.
    Missing(DocKey, StoredDoc),
    /// The live view has a document the log does not make.
    Extra(DocKey, StoredDoc),
    /// Both have it, not the same.
    Differs {
        /// Which.
        key: DocKey,
        /// The live one.
        live: StoredDoc,
        /// The log's.
        rebuilt: StoredDoc,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing((v, id), d) => write!(f, "missing {v}/{id}: the log makes {}", d.doc),
            Self::Extra((v, id), d) => write!(f, "extra {v}/{id}: the log makes nothing, the view has {}", d.doc),
            Self::Differs {
                key: (v, id),
                live,
                rebuilt,
            } => {
                write!(
                    f,
                    "differs {v}/{id}:\n  live (owner {:?}, position {}): {}\n  log  (owner {:?}, position {}): {}",
                    live.owner, live.position, live.doc, rebuilt.owner, rebuilt.position, rebuilt.doc
                )
            }
        }
    }
}

/// Folds the feed up to position `through` (inclusive) into `projections`, in memory;
/// `progress(position, events)` is called after each batch read.
pub async fn fold(
    db: &Db,
    projections: &[Box<dyn Projection>],
    through: i64,
    mut progress: impl FnMut(i64, u64),
) -> Result<Rebuild, DbError> {
    let feed = Feed::new(db.clone());
    let mut docs: BTreeMap<DocKey, (Option<String>, Value, i64)> = BTreeMap::new();
    let (mut at, mut events) = (0_i64, 0_u64);
    while at < through {
        let batch = feed.read_after(at, READ_BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else { break };
        for ev in batch.iter().take_while(|e| e.position <= through) {
            events += 1;
            let Some(event) = decode(ev) else { continue };
            let time = ev.time();
            for p in projections {
                let touched: Vec<(String, Option<Value>)> = p
                    .touches(&ev.aggregate_id, &event)
                    .into_iter()
                    .map(|id| {
                        let doc = docs.get(&(p.name().to_string(), id.clone())).map(|(_, d, _)| d.clone());
                        (id, doc)
                    })
                    .collect();
                for w in p.apply(&touched, &ev.aggregate_id, &event, ev.position, time) {
                    docs.insert((p.name().to_string(), w.id), (w.owner, w.doc, ev.position));
                }
            }
        }
        at = last.min(through);
        progress(at, events);
    }
    let docs = docs
        .into_iter()
        .map(|(k, (owner, doc, position))| {
            Ok((
                k,
                StoredDoc {
                    owner,
                    doc: serde_json::to_string(&doc)?,
                    position,
                },
            ))
        })
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(Rebuild { docs, through: at, events })
}

/// The live documents of `views`.
pub async fn live(db: &Db, views: &BTreeSet<String>) -> Result<BTreeMap<DocKey, StoredDoc>, DbError> {
    let sql = "SELECT view, id, owner, doc, position FROM views ORDER BY view, id";
    let rows: Vec<(String, String, Option<String>, String, i64)> =
        crate::on_read_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
    Ok(rows
        .into_iter()
        .filter(|r| views.contains(&r.0))
        .map(|(view, id, owner, doc, position)| ((view, id), StoredDoc { owner, doc, position }))
        .collect())
}

/// Where the live views stand: the single node's projections checkpoint, or (scaled
/// out, where each partition has its own) the head of the feed — verify a cluster once
/// its nodes caught up.
pub async fn live_position(db: &Db) -> Result<i64, DbError> {
    let sql = "SELECT position FROM checkpoints WHERE name = $1";
    let row: Option<(i64,)> = crate::on_db!(db, pool => sqlx::query_as(sql).bind(crate::views::PROJECTIONS).fetch_optional(pool).await?);
    match row {
        Some((p,)) => Ok(p),
        None => Feed::new(db.clone()).head().await,
    }
}

/// How the live views differ from the log's, document by document.
pub fn differences(live: &BTreeMap<DocKey, StoredDoc>, rebuilt: &BTreeMap<DocKey, StoredDoc>) -> Vec<Difference> {
    let mut out = Vec::new();
    for (k, r) in rebuilt {
        match live.get(k) {
            None => out.push(Difference::Missing(k.clone(), r.clone())),
            Some(l) if l != r => out.push(Difference::Differs {
                key: k.clone(),
                live: l.clone(),
                rebuilt: r.clone(),
            }),
            Some(_) => {}
        }
    }
    for (k, l) in live {
        if !rebuilt.contains_key(k) {
            out.push(Difference::Extra(k.clone(), l.clone()));
        }
    }
    out
}

/// Replaces `views` with their rebuilt documents and sets each view's floor to the
/// rebuild's position, in one transaction.
pub async fn install(db: &Db, rebuild: &Rebuild, views: &BTreeSet<String>) -> Result<(), DbError> {
    let rows: Vec<(&DocKey, &StoredDoc)> = rebuild.docs.iter().filter(|((v, _), _)| views.contains(v)).collect();
    crate::on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        if db.is_postgres() {
            // Wait for the projection transactions in flight and hold new ones back, so
            // none applies to these views an event the rebuild folded.
            sqlx::query("SELECT position FROM checkpoints WHERE name = $1 OR name LIKE $2 FOR UPDATE")
                .bind(crate::views::PROJECTIONS).bind(format!("{}/%", crate::views::PROJECTIONS)).fetch_all(&mut *tx).await?;
        }
        for v in views {
            sqlx::query("DELETE FROM views WHERE view = $1").bind(v).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position")
                .bind(view_floor(v)).bind(rebuild.through).execute(&mut *tx).await?;
        }
        for chunk in rows.chunks(WRITE_BATCH) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO views (view, id, owner, doc, position) ");
            q.push_values(chunk, |mut b, ((view, id), d)| {
                b.push_bind(view.as_str()).push_bind(id.as_str()).push_bind(d.owner.as_deref()).push_bind(d.doc.as_str()).push_bind(d.position);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// The `LIKE` pattern of the views' floors.
pub(crate) fn floors_pattern() -> String {
    format!("{}%", view_floor(""))
}

/// The floors of rebuilt views by view name, from their checkpoint rows.
pub(crate) fn floors(rows: Vec<(String, i64)>) -> BTreeMap<String, i64> {
    let prefix = view_floor("");
    rows.into_iter()
        .filter_map(|(name, p)| name.strip_prefix(prefix.as_str()).map(|v| (v.to_string(), p)))
        .collect()
}
