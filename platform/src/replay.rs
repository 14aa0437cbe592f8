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

/// A document while folding: owner, value, the position that last wrote it.
type FoldedDoc = (Option<String>, Value, i64);

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

/// An event's time from its metadata text (`time`, a number or cqrs-es's string), or 0:
/// what [`crate::feed::FeedEvent::time`] reads.
fn event_time(metadata: &str) -> i64 {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        time: Option<Value>,
    }
    match serde_json::from_str::<Meta>(metadata).ok().and_then(|m| m.time) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A row of the feed joined with its event, as text: position, aggregate type and id,
/// payload, metadata.
type FeedRow = (i64, String, String, String, String);

/// Aborts a task when dropped (a fold that fails stops its reader).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
    let mut docs: BTreeMap<DocKey, FoldedDoc> = BTreeMap::new();
    let (mut at, mut events) = (0_i64, 0_u64);
    let cast = if db.is_postgres() { "::text" } else { "" };
    // The rows as text, each payload decoded straight into its event type.
    let sql = format!(
        "SELECT f.position, f.aggregate_type, f.aggregate_id, e.payload{cast}, e.metadata{cast} \
         FROM feed f JOIN events e ON e.aggregate_type = f.aggregate_type AND e.aggregate_id = f.aggregate_id AND e.sequence = f.sequence \
         WHERE f.position > $1 AND f.position <= $2 ORDER BY f.position LIMIT $3"
    );
    // Pages are read by a task of their own while the previous one is folded: the store's
    // reads and the folding overlap (two pages in flight at most).
    let (tx, mut pages) = tokio::sync::mpsc::channel::<Result<Vec<FeedRow>, DbError>>(2);
    let reader = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut at = 0_i64;
            while at < through {
                let page: Result<Vec<FeedRow>, DbError> = crate::on_read_db!(&db, pool => sqlx::query_as(&sql).bind(at).bind(through).bind(READ_BATCH).fetch_all(pool).await.map_err(DbError::from));
                let last = page.as_ref().ok().and_then(|rows| rows.last().map(|r| r.0));
                let failed = page.is_err();
                if tx.send(page).await.is_err() || failed {
                    return;
                }
                match last {
                    Some(last) => at = last,
                    None => return,
                }
            }
        })
    };
    let _abort_reader = AbortOnDrop(reader);
    while let Some(page) = pages.recv().await {
        let rows = page?;
        let Some(last) = rows.last().map(|r| r.0) else { break };
        for (position, aggregate_type, aggregate_id, payload, metadata) in rows {
            events += 1;
            let event = match tare_domain::AnyEvent::decode_str(&aggregate_type, &payload) {
                Some(Ok(e)) => e,
                Some(Err(err)) => {
                    tracing::error!(position, error = %err, "undecodable event skipped");
                    continue;
                }
                None => continue,
            };
            let time = event_time(&metadata);
            for p in projections {
                // (A projection may write without reading: the ledger appends.)
                let ids = p.touches(&aggregate_id, &event);
                // The touched documents are taken out of the map (not copied) and put back
                // when the projection writes nothing for them.
                let mut taken: Vec<(String, Option<FoldedDoc>)> = ids
                    .into_iter()
                    .map(|id| {
                        let doc = docs.remove(&(p.name().to_string(), id.clone()));
                        (id, doc)
                    })
                    .collect();
                let touched: Vec<(String, Option<Value>)> = taken
                    .iter_mut()
                    .map(|(id, d)| (id.clone(), d.as_mut().map(|(_, v, _)| std::mem::take(v))))
                    .collect();
                let writes = p.apply(&touched, &aggregate_id, &event, position, time);
                for ((id, old), (_, value)) in taken.into_iter().zip(touched) {
                    if let (Some((owner, _, at)), Some(value)) = (old, value) {
                        if !writes.iter().any(|w| w.id == id) {
                            docs.insert((p.name().to_string(), id), (owner, value, at));
                        }
                    }
                }
                for w in writes {
                    docs.insert((p.name().to_string(), w.id), (w.owner, w.doc, position));
                }
            }
        }
        at = last;
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
