//! Personal data out of the log in clear [issue 14, item 6]: crypto-shredding.
//!
//! A shopper's phone number goes into the log sealed (AES-256-GCM) under a key of that
//! shopper's own, and the key lives outside the log (`personal_keys`). Erasing a shopper
//! destroys the key: the log stays whole and replays exactly as before — every event is
//! still there, and no projection reads personal data — but the sealed number can no
//! longer be read by anyone. The key table records when a key was destroyed, so "erased"
//! is told apart from "never had one".
//!
//! Sealed text is `v1:{nonce hex}:{ciphertext hex}`, bound (as associated data) to the
//! subject and the field, so a sealed value copied onto another shopper does not open.

use crate::db::{Db, DbError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::Rng;

/// Why personal data could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The sealed text is not ours, or was tampered with, or the key is not this one.
    #[error("sealed personal data does not open: {0}")]
    Corrupt(&'static str),
}

/// What opening sealed personal data found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The value.
    Clear(String),
    /// The subject was erased: the key is gone.
    Erased,
}

/// A subject's key: held, destroyed by an erasure, or never made.
enum KeyState {
    Held([u8; 32]),
    Erased,
    Missing,
}

/// The keys of personal data, one per subject (a shopper id).
#[derive(Clone)]
pub struct PersonalData {
    db: Db,
}

impl PersonalData {
    /// Keys in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The key of `subject`, made on first use; `None` once erased.
    async fn key(&self, subject: &str, create: bool) -> Result<Option<[u8; 32]>, DbError> {
        if create {
            let fresh: [u8; 32] = rand::rng().random();
            crate::on_db!(&self.db, pool => {
                sqlx::query("INSERT INTO personal_keys (subject, key) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING")
                    .bind(subject).bind(hex::encode(fresh)).execute(pool).await?;
            });
        }
        Ok(match self.key_state(subject).await? {
            KeyState::Held(k) => Some(k),
            KeyState::Erased | KeyState::Missing => None,
        })
    }

    async fn key_state(&self, subject: &str) -> Result<KeyState, DbError> {
        let sql = "SELECT key FROM personal_keys WHERE subject = $1";
        let row: Option<(Option<String>,)> = crate::on_db!(&self.db, pool => sqlx::query_as(sql).bind(subject).fetch_optional(pool).await?);
        Ok(match row {
            None => KeyState::Missing,
            Some((None,)) => KeyState::Erased,
            Some((Some(k),)) => match hex::decode(k).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) {
                Some(k) => KeyState::Held(k),
                None => KeyState::Missing,
            },
        })
    }

    /// Seals `field` of `subject` (making the subject's key if it has none). An erased
    /// subject gets no new key: sealing for it fails as corrupt.
    pub async fn seal(&self, subject: &str, field: &str, clear: &str) -> Result<String, PersonalDataError> {
        let key = self
            .key(subject, true)
            .await?
            .ok_or(PersonalDataError::Corrupt("the subject was erased"))?;
        let nonce: [u8; 12] = rand::rng().random();
        let aad = format!("{subject}/{field}");
        let sealed = Aes256Gcm::new(&key.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: clear.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PersonalDataError::Corrupt("encryption failed"))?;
        Ok(format!("v1:{}:{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// Opens `sealed` (from [`Self::seal`] for the same subject and field).
    pub async fn open(&self, subject: &str, field: &str, sealed: &str) -> Result<Opened, PersonalDataError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(nonce), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PersonalDataError::Corrupt("not v1 sealed text"));
        };
        let nonce = hex::decode(nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or(PersonalDataError::Corrupt("nonce"))?;
        let ct = hex::decode(ct).map_err(|_| PersonalDataError::Corrupt("ciphertext"))?;
        let key = match self.key_state(subject).await? {
            KeyState::Held(k) => k,
            KeyState::Erased => return Ok(Opened::Erased),
            KeyState::Missing => return Err(PersonalDataError::Corrupt("no key for this subject")),
        };
        let aad = format!("{subject}/{field}");
        let clear = Aes256Gcm::new(&key.into())
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PersonalDataError::Corrupt("authentication failed"))?;
        String::from_utf8(clear)
            .map(Opened::Clear)
            .map_err(|_| PersonalDataError::Corrupt("not UTF-8"))
    }

    /// Destroys `subject`'s key for good (again: nothing changes); true if it had one.
    pub async fn erase(&self, subject: &str, at: tare_domain::UnixMs) -> Result<bool, DbError> {
        let done = crate::on_db!(&self.db, pool => {
            sqlx::query("UPDATE personal_keys SET key = NULL, erased_at = $2 WHERE subject = $1 AND key IS NOT NULL")
                .bind(subject).bind(at).execute(pool).await?.rows_affected()
        });
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_data_opens_for_its_subject_only_until_erased() {
        let dir = std::env::temp_dir().join(format!("tare-pd-{}", uuid::Uuid::new_v4().simple()));
        let db = Db::open_sqlite(&dir).await.unwrap();
        let pd = PersonalData::new(db.clone());
        let sealed = pd.seal("s1", "phone", "13800000000").await.unwrap();
        assert!(!sealed.contains("13800000000"));
        assert_eq!(pd.open("s1", "phone", &sealed).await.unwrap(), Opened::Clear("13800000000".into()));
        assert!(
            matches!(pd.open("s2", "phone", &sealed).await, Err(PersonalDataError::Corrupt(_))),
            "another subject's"
        );
        assert!(
            matches!(pd.open("s1", "email", &sealed).await, Err(PersonalDataError::Corrupt(_))),
            "another field's"
        );
        assert!(pd.erase("s1", 5).await.unwrap());
        assert!(!pd.erase("s1", 6).await.unwrap(), "once");
        assert_eq!(pd.open("s1", "phone", &sealed).await.unwrap(), Opened::Erased);
        assert!(pd.seal("s1", "phone", "x").await.is_err(), "no new key for an erased subject");
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
