//! Device identity checks from PROTOCOL.md [D2]: the MQTT CONNECT credentials and the
//! signed headers of the HTTP device API. Pure functions over the secret and the
//! platform clock, so the MQTT listener, the HTTP device API and the simulator that signs
//! share one definition of "signed".

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tare_domain::{CabinetId, UnixMs};

/// How far a device's signed timestamp may be from the platform clock (5 minutes).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The HTTP device API's header naming the device (`{pk}.{dn}`).
pub const DEVICE_HEADER: &str = "x-tare-device";
/// The HTTP device API's header with the signed Unix-ms timestamp.
pub const TIMESTAMP_HEADER: &str = "x-tare-timestamp";
/// The HTTP device API's header with the signature.
pub const SIGNATURE_HEADER: &str = "x-tare-signature";

/// Why a device was not let in. Each is counted by [`DeviceAuthError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceAuthError {
    /// Credentials are not in the contract's shape.
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The client id and the username name different devices.
    #[error("client id `{client_id}` does not match username device `{username_device}`")]
    IdentityMismatch {
        /// MQTT client id.
        client_id: String,
        /// Device named in the username.
        username_device: String,
    },
    /// The signed timestamp is too far from the platform clock.
    #[error("timestamp {ts} is {skew_ms} ms from the platform clock (limit {MAX_CLOCK_SKEW_MS})")]
    StaleTimestamp {
        /// The device's timestamp.
        ts: i64,
        /// Difference to the platform clock.
        skew_ms: i64,
    },
    /// No such device, or it is disabled.
    #[error("unknown or disabled device {0}")]
    UnknownDevice(String),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
}

impl DeviceAuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "auth_malformed",
            Self::IdentityMismatch { .. } => "auth_identity_mismatch",
            Self::StaleTimestamp { .. } => "auth_stale_timestamp",
            Self::UnknownDevice(_) => "auth_unknown_device",
            Self::BadSignature => "auth_bad_signature",
        }
    }
}

/// `hex(HMAC-SHA256(secret, message))`, lower case.
pub fn sign(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a hex signature.
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(given) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// The MQTT username a device presents at `ts`: `{pk}.{dn}|{ts}`.
pub fn mqtt_username(device: &CabinetId, ts: UnixMs) -> String {
    format!("{device}|{ts}")
}

/// The canonical string the HTTP device API signs: `{ts}\n{METHOD}\n{path}\n{hex sha256 of body}`.
pub fn http_string_to_sign(ts: i64, method: &str, path: &str, body: &[u8]) -> String {
    format!(
        "{ts}\n{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        hex::encode(Sha256::digest(body))
    )
}

/// What a CONNECT claims, parsed and checked for shape and freshness (the signature is
/// checked once the secret is known: [`MqttClaim::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttClaim {
    /// The device.
    pub device: CabinetId,
    /// The signed timestamp.
    pub ts: i64,
    username: String,
    password: String,
}

impl MqttClaim {
    /// Parses client id, username and password and checks the timestamp window.
    pub fn parse(client_id: &str, username: Option<&str>, password: Option<&str>, now: UnixMs) -> Result<Self, DeviceAuthError> {
        let (Some(username), Some(password)) = (username, password) else {
            return Err(DeviceAuthError::Malformed("username and password are required".into()));
        };
        let (name, ts) = username
            .split_once('|')
            .ok_or_else(|| DeviceAuthError::Malformed("username must be `{pk}.{dn}|{ts}`".into()))?;
        let ts: i64 = ts
            .parse()
            .map_err(|_| DeviceAuthError::Malformed(format!("username timestamp `{ts}` is not Unix milliseconds")))?;
        if name != client_id {
            return Err(DeviceAuthError::IdentityMismatch {
                client_id: client_id.to_string(),
                username_device: name.to_string(),
            });
        }
        let device = CabinetId::parse(name).map_err(|e| DeviceAuthError::Malformed(format!("client id `{name}`: {e}")))?;
        check_skew(ts, now)?;
        Ok(Self {
            device,
            ts,
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// Checks the password against `secret`.
    pub fn verify(&self, secret: &str) -> Result<(), DeviceAuthError> {
        if verify(secret, &self.username, &self.password) {
            Ok(())
        } else {
            Err(DeviceAuthError::BadSignature)
        }
    }
}

/// Checks a signed timestamp against the platform clock.
pub fn check_skew(ts: i64, now: UnixMs) -> Result<(), DeviceAuthError> {
    // `abs_diff` cannot overflow, whatever a device sends (even `i64::MIN`).
    let skew = now.abs_diff(ts);
    if skew > MAX_CLOCK_SKEW_MS.unsigned_abs() {
        return Err(DeviceAuthError::StaleTimestamp {
            ts,
            skew_ms: i64::try_from(skew).unwrap_or(i64::MAX),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> CabinetId {
        CabinetId::parse("pk1.dn1").unwrap()
    }

    #[test]
    fn a_correctly_signed_connect_passes() {
        let now = 1_764_000_000_000;
        let user = mqtt_username(&dev(), now);
        let pass = sign("s3cret", &user);
        let claim = MqttClaim::parse("pk1.dn1", Some(&user), Some(&pass), now + 1000).unwrap();
        assert_eq!(claim.device, dev());
        assert_eq!(claim.verify("s3cret"), Ok(()));
        assert_eq!(claim.verify("other"), Err(DeviceAuthError::BadSignature));
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let now = 1_764_000_000_000;
        let user = mqtt_username(&dev(), now);
        let pass = sign("s", &user);
        let e = MqttClaim::parse("pk1.dn2", Some(&user), Some(&pass), now).unwrap_err();
        assert_eq!(e.reason(), "auth_identity_mismatch");
        let e = MqttClaim::parse("pk1.dn1", Some(&user), Some(&pass), now + MAX_CLOCK_SKEW_MS + 1).unwrap_err();
        assert_eq!(e.reason(), "auth_stale_timestamp");
        let e = MqttClaim::parse("pk1.dn1", Some("pk1.dn1"), Some(&pass), now).unwrap_err();
        assert_eq!(e.reason(), "auth_malformed");
        let e = MqttClaim::parse("pk1.dn1", Some("pk1.dn1|soon"), Some(&pass), now).unwrap_err();
        assert_eq!(e.reason(), "auth_malformed");
        let e = MqttClaim::parse("pk1.dn1", None, None, now).unwrap_err();
        assert_eq!(e.reason(), "auth_malformed");
        let claim = MqttClaim::parse("pk1.dn1", Some(&user), Some("zz-not-hex"), now).unwrap();
        assert_eq!(claim.verify("s"), Err(DeviceAuthError::BadSignature));
    }

    /// The worked examples in docs/protocol.md.
    #[test]
    fn the_documented_examples_hold() {
        let dev = CabinetId::parse("wc1.cab-001").unwrap();
        let user = mqtt_username(&dev, 1_764_000_000_123);
        assert_eq!(user, "wc1.cab-001|1764000000123");
        assert_eq!(
            sign("s3cret", &user),
            "ea1265db462f052157577f94b6489302fc5be8e59318a52913855e28dd4288c7"
        );
        let body = br#"{"id":"01J9Z","seq":7,"ts":1764000000123,"temp_c":4.5,"battery":96,"net":80,"heating":false,"doors":[{"door":1,"state":"closed"}]}"#;
        let s = http_string_to_sign(1_764_000_000_123, "POST", "/device/v1/up/heartbeat", body);
        assert!(s.ends_with("0c92e37f0b386688736fdabf8732cdd7e87b03aa052a194b6acb7a2df5687932"));
        assert_eq!(
            sign("s3cret", &s),
            "97091f9c80a798f716fe0d545bd79cbe215770375027724318edd0d50e5367f4"
        );
    }

    #[test]
    fn an_absurd_timestamp_is_stale_not_a_crash() {
        let now = 1_764_000_000_000;
        assert_eq!(check_skew(i64::MIN, now).unwrap_err().reason(), "auth_stale_timestamp");
        assert_eq!(check_skew(i64::MAX, now).unwrap_err().reason(), "auth_stale_timestamp");
        assert!(check_skew(now - MAX_CLOCK_SKEW_MS, now).is_ok());
    }

    #[test]
    fn the_http_string_to_sign_is_the_contracts() {
        let s = http_string_to_sign(5, "post", "/device/v1/up/heartbeat", b"");
        assert_eq!(
            s,
            "5\nPOST\n/device/v1/up/heartbeat\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
