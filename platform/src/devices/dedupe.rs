//! Duplicates and stale sequence numbers [D8]: each device's last message ids, and the
//! highest `seq` since its last boot.

/// Message ids remembered per device to drop duplicates.
const RECENT_IDS_PER_DEVICE: usize = 128;

/// How far behind a device's latest `seq` a message may be and still be applied (as a
/// late message). Further back, without a `boot` in between, it is refused as `stale_seq`:
/// the contract restarts `seq` only after a reboot, which the device announces.
pub const SEQ_WINDOW: u64 = 1000;

/// What the dedupe window says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// First time seen: apply it.
    Fresh,
    /// An id seen before and recorded: ignore it.
    Duplicate,
    /// An id whose first copy is still being recorded (a resend on a new connection
    /// while the store is slow): neither applied again nor acknowledged, since the first
    /// copy may yet fail.
    InFlight,
    /// More than [`SEQ_WINDOW`] behind this highest `seq` with no boot since.
    Stale(u64),
}

/// The last message ids of one device, as 64-bit hashes in a ring: a fixed 1 KiB per
/// active device, so 100,000 connected cabinets cost about 100 MiB at most for dedupe
/// (resends come within seconds; a longer memory would buy nothing).
pub(super) struct RecentIds {
    ring: Box<[u64; RECENT_IDS_PER_DEVICE]>,
    next: usize,
    len: usize,
    /// Ids being recorded now (usually none or one): a resend of one of these must not
    /// be taken as recorded.
    in_flight: Vec<u64>,
    /// Highest `seq` seen since the device's last boot.
    highest_seq: Option<u64>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self {
            ring: Box::new([0; RECENT_IDS_PER_DEVICE]),
            next: 0,
            len: 0,
            in_flight: Vec::new(),
            highest_seq: None,
        }
    }
}

fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // A fixed-key hasher: stable within the process, which is all a dedupe window needs.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(id.as_bytes());
    h.finish()
}

impl RecentIds {
    /// Judges message `id` with `seq`, and remembers it as in flight if fresh (until
    /// [`Self::settle`]). A boot restarts the
    /// sequence; the last will (`status`) is composed at connect time, so its `seq` is old
    /// by design and is not held to the window.
    pub(super) fn judge(&mut self, id: &str, seq: u64, boot: bool, will: bool) -> Verdict {
        if boot {
            self.highest_seq = None;
        }
        if let Some(h) = self.highest_seq {
            if !will && seq.saturating_add(SEQ_WINDOW) < h {
                return Verdict::Stale(h);
            }
        }
        if !self.insert(id) {
            return if self.in_flight.contains(&id_hash(id)) {
                Verdict::InFlight
            } else {
                Verdict::Duplicate
            };
        }
        self.in_flight.push(id_hash(id));
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));
        Verdict::Fresh
    }

    /// Records `id`; false if it was already there.
    fn insert(&mut self, id: &str) -> bool {
        let h = id_hash(id);
        if self.ring[..self.len].contains(&h) {
            return false;
        }
        self.ring[self.next] = h;
        self.next = (self.next + 1) % RECENT_IDS_PER_DEVICE;
        self.len = (self.len + 1).min(RECENT_IDS_PER_DEVICE);
        true
    }

    /// Ends the recording of fresh message `id`: if `recorded`, a resend is a
    /// duplicate from now on; if not, `id` is forgotten so a resend gets through.
    pub(super) fn settle(&mut self, id: &str, recorded: bool) {
        let h = id_hash(id);
        self.in_flight.retain(|x| *x != h);
        if !recorded {
            if let Some(slot) = self.ring[..self.len].iter_mut().find(|x| **x == h) {
                *slot = 0;
            }
        }
    }
}

/// The ids of the device messages behind `cabinet`'s newest [`RECENT_IDS_PER_DEVICE`]
/// events: every message that changed state is recorded as its events' causation
/// (`device:{id}`), in the same commit as the change. Seeding a device's window from them
/// when it is first heard from makes a resend (or a replay) of an applied message a
/// duplicate after a restart or on another node, as it was in the memory of the node that
/// applied it.
pub(super) async fn recorded_messages(db: &crate::db::Db, cabinet: &str) -> Result<Vec<String>, crate::db::DbError> {
    use tare_domain::cabinet::Cabinet;
    let limit = RECENT_IDS_PER_DEVICE as i64;
    let rows: Vec<(Option<String>,)> = match db {
        crate::db::Db::Sqlite { read, .. } => {
            sqlx::query_as(
                "SELECT json_extract(metadata, '$.causation_id') FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT $3",
            )
            .bind(<Cabinet as cqrs_es::Aggregate>::TYPE)
            .bind(cabinet)
            .bind(limit)
            .fetch_all(read)
            .await?
        }
        crate::db::Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT metadata->>'causation_id' FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT $3",
            )
            .bind(<Cabinet as cqrs_es::Aggregate>::TYPE)
            .bind(cabinet)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|(c,)| c?.strip_prefix("device:").map(str::to_string))
        .collect())
}

impl RecentIds {
    /// A window that already holds `recorded` (oldest last, as [`recorded_messages`]
    /// returns them) as applied.
    pub(super) fn seeded(recorded: &[String]) -> Self {
        let mut r = Self::default();
        for id in recorded.iter().rev() {
            r.insert(id);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_stale_sequences_are_told_apart() {
        let mut r = RecentIds::default();
        assert_eq!(r.judge("a", 5_000, false, false), Verdict::Fresh);
        r.settle("a", true);
        assert_eq!(r.judge("a", 5_000, false, false), Verdict::Duplicate);
        assert_eq!(r.judge("b", 4_000, false, false), Verdict::Fresh, "late but within the window");
        assert_eq!(r.judge("c", 3_999, false, false), Verdict::Stale(5_000));
        assert_eq!(r.judge("w", 0, false, true), Verdict::Fresh, "the will's seq is old by design");
        assert_eq!(r.judge("d", 0, true, false), Verdict::Fresh, "a boot restarts the sequence");
        r.settle("d", false);
        assert_eq!(r.judge("d", 1, false, false), Verdict::Fresh, "forgotten: a resend gets through");
    }

    #[test]
    fn a_resend_while_the_first_copy_is_being_recorded_is_not_taken_as_recorded() {
        let mut r = RecentIds::default();
        assert_eq!(r.judge("closed", 7, false, false), Verdict::Fresh);
        assert_eq!(r.judge("closed", 7, false, false), Verdict::InFlight, "the first copy may yet fail");
        r.settle("closed", false);
        assert_eq!(
            r.judge("closed", 7, false, false),
            Verdict::Fresh,
            "the first copy failed: the resend is applied"
        );
        r.settle("closed", true);
        assert_eq!(r.judge("closed", 7, false, false), Verdict::Duplicate);
    }

    #[test]
    fn a_seeded_window_knows_what_the_log_holds() {
        let mut r = RecentIds::seeded(&["newest".to_string(), "older".to_string()]);
        assert_eq!(r.judge("older", 1, false, false), Verdict::Duplicate);
        assert_eq!(
            r.judge("newest", 2, true, false),
            Verdict::Duplicate,
            "a replayed boot is a duplicate"
        );
        assert_eq!(r.judge("fresh", 3, false, false), Verdict::Fresh);
    }

    #[test]
    fn the_ring_forgets_the_oldest() {
        let mut r = RecentIds::default();
        for i in 0..=RECENT_IDS_PER_DEVICE {
            assert_eq!(r.judge(&format!("m{i}"), i as u64, false, false), Verdict::Fresh);
            r.settle(&format!("m{i}"), true);
        }
        assert_eq!(r.judge("m0", 0, false, false), Verdict::Fresh, "pushed out of the ring");
        assert_eq!(r.judge(&format!("m{RECENT_IDS_PER_DEVICE}"), 0, false, false), Verdict::Duplicate);
    }
}
