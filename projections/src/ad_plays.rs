//! Ad plays [M5]: how often and how long each ad played on each cabinet, one document
//! per (ad, cabinet) listed by ad, so a campaign shows its ads' plays across its cabinets
//! in one indexed read. Folded from the cabinets' `AdPlayed` events (each device message
//! once: the cabinet drops a repeated message id).

use crate::{DocWrite, Projection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tare_domain::cabinet::CabinetEvent;
use tare_domain::{AnyEvent, UnixMs};

/// One ad's plays on one cabinet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AdPlaysDoc {
    /// The ad.
    pub ad_id: String,
    /// The cabinet.
    pub cabinet: String,
    /// Plays.
    pub plays: u64,
    /// Time on screen in all (ms).
    pub played_ms: u64,
    /// The last play.
    pub last_at: UnixMs,
}

/// Plays by ad and cabinet.
pub struct AdPlays;

impl AdPlays {
    /// The view's name.
    pub const VIEW: &'static str = "ad_plays";

    /// The document id of `ad_id`'s plays on `cabinet`.
    pub fn doc_id(ad_id: &str, cabinet: &str) -> String {
        format!("{ad_id}/{cabinet}")
    }
}

impl Projection for AdPlays {
    fn name(&self) -> &'static str {
        Self::VIEW
    }

    fn touches(&self, aggregate_id: &str, event: &AnyEvent) -> Vec<String> {
        match event {
            AnyEvent::Cabinet(CabinetEvent::AdPlayed { ad_id, .. }) => vec![Self::doc_id(ad_id, aggregate_id)],
            _ => vec![],
        }
    }

    fn apply(
        &self,
        docs: &[(String, Option<Value>)],
        aggregate_id: &str,
        event: &AnyEvent,
        _position: i64,
        _time: UnixMs,
    ) -> Vec<DocWrite> {
        let AnyEvent::Cabinet(CabinetEvent::AdPlayed {
            ad_id, duration_ms, at, ..
        }) = event
        else {
            return vec![];
        };
        let mut d: AdPlaysDoc = docs
            .first()
            .and_then(|(_, d)| d.clone())
            .and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default();
        d.ad_id = ad_id.clone();
        d.cabinet = aggregate_id.to_string();
        d.plays += 1;
        d.played_ms = d.played_ms.saturating_add(*duration_ms);
        d.last_at = d.last_at.max(*at);
        vec![DocWrite {
            id: Self::doc_id(ad_id, aggregate_id),
            owner: Some(ad_id.clone()),
            doc: serde_json::to_value(&d).unwrap_or(Value::Null),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn played(ad: &str, ms: u64, at: UnixMs) -> AnyEvent {
        AnyEvent::Cabinet(CabinetEvent::AdPlayed {
            ad_id: ad.into(),
            duration_ms: ms,
            msg_id: format!("m{at}"),
            at,
        })
    }

    #[test]
    fn plays_add_up_per_ad_and_cabinet_and_are_listed_by_ad() {
        let p = AdPlays;
        assert_eq!(p.touches("wc.c1", &played("a1", 15_000, 1)), vec!["a1/wc.c1".to_string()]);
        let first = p.apply(&[("a1/wc.c1".into(), None)], "wc.c1", &played("a1", 15_000, 1), 1, 1);
        assert_eq!(first[0].owner.as_deref(), Some("a1"));
        let second = p.apply(
            &[("a1/wc.c1".into(), Some(first[0].doc.clone()))],
            "wc.c1",
            &played("a1", 10_000, 5),
            2,
            5,
        );
        let d: AdPlaysDoc = serde_json::from_value(second[0].doc.clone()).unwrap();
        assert_eq!(
            d,
            AdPlaysDoc {
                ad_id: "a1".into(),
                cabinet: "wc.c1".into(),
                plays: 2,
                played_ms: 25_000,
                last_at: 5,
            }
        );
        let other = AnyEvent::Cabinet(CabinetEvent::DeviceDisconnected { at: 9 });
        assert!(p.touches("wc.c1", &other).is_empty());
    }
}
