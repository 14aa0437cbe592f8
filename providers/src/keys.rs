//! The provider keys [API.md "Provider keys"]: read from a directory (`{data}/keys` on the
//! embedded default, `--keys DIR`), generated on first start when absent. Private keys
//! are PEM PKCS#8 written 0600, public keys PEM SubjectPublicKeyInfo:
//!
//! ```text
//! wechat/merchant_private_key.pem   wechat/merchant_public_key.pem   wechat/merchant.json
//! wechat/platform_public_key.pem    wechat/platform.json             wechat/apiv3_key
//! wechat/platform_private_key.pem   (the sandbox's own)
//! alipay/app_private_key.pem        alipay/app_public_key.pem        alipay/app.json
//! alipay/alipay_public_key.pem      alipay/alipay_private_key.pem    (the sandbox's own)
//! ```
//!
//! The merchant's and the app's public keys are written too: the sandboxes verify the
//! platform's requests with them, as the real providers do with the keys merchants upload.
//! No key or secret is ever printed: every type here redacts itself in `Debug`.

pub use crate::crypto::PrivateKey;
use crate::crypto::{
    generate_rsa_key, parse_private_key, parse_public_key, private_key_pem, public_key_pem, random_alphanumeric, CryptoError,
};
use rand::Rng;
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why the keys could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should hold.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A key could not be made.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// `wechat/merchant.json`: who the platform is at WeChat Pay.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct WechatMerchant {
    /// Merchant id.
    pub mchid: String,
    /// The app id orders are made under (the same for create, complete and cancel).
    pub appid: String,
    /// The Pay Score service id.
    pub service_id: String,
    /// The serial number of the merchant's certificate (named in every request).
    pub serial_no: String,
}

/// `wechat/platform.json`: the WeChat Pay platform key's serial (or public-key id).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct WechatPlatform {
    /// Named in `Wechatpay-Serial` on every response and notification.
    pub serial_no: String,
}

/// The APIv3 key: 32 ASCII bytes, the AES-256-GCM key of notification resources.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

/// Everything WeChat Pay needs on both sides.
#[derive(Clone, Debug)]
pub struct WechatKeys {
    /// The merchant's identity.
    pub merchant: WechatMerchant,
    /// Signs the platform's requests.
    pub merchant_private_key: PrivateKey,
    /// Verifies them (the sandbox's copy of what the merchant uploaded).
    pub merchant_public_key: RsaPublicKey,
    /// The platform key's serial.
    pub platform: WechatPlatform,
    /// Verifies WeChat's responses and notifications.
    pub platform_public_key: RsaPublicKey,
    /// Signs them — the sandbox's own key (a real deployment has none).
    pub platform_private_key: Option<PrivateKey>,
    /// Decrypts notification resources.
    pub apiv3_key: ApiV3Key,
}

/// `alipay/app.json`: who the platform is at Alipay.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct AlipayApp {
    /// The app id (`app_id` of every request, checked on every notification).
    pub app_id: String,
    /// The merchant's Alipay user id (`seller_id`, checked on notifications).
    pub seller_id: String,
}

/// Everything Alipay needs on both sides.
#[derive(Clone, Debug)]
pub struct AlipayKeys {
    /// The app's identity.
    pub app: AlipayApp,
    /// Signs the platform's requests (RSA2).
    pub app_private_key: PrivateKey,
    /// Verifies them (the sandbox's copy of what the app uploaded).
    pub app_public_key: RsaPublicKey,
    /// Verifies Alipay's responses and notifications.
    pub alipay_public_key: RsaPublicKey,
    /// Signs them — the sandbox's own key (a real deployment has none).
    pub alipay_private_key: Option<PrivateKey>,
}

/// Both providers' keys.
#[derive(Clone, Debug)]
pub struct ProviderKeys {
    /// WeChat Pay.
    pub wechat: WechatKeys,
    /// Alipay.
    pub alipay: AlipayKeys,
}

impl ProviderKeys {
    /// Reads the keys under `dir`, first making any that are missing (a new deployment's
    /// first start). Files that exist are never overwritten.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        generate_missing(dir)?;
        Self::load(dir)
    }

    /// Reads the keys under `dir` (every file must exist; the sandboxes' own private keys
    /// may be absent).
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let w = dir.join("wechat");
        let a = dir.join("alipay");
        let apiv3 = read(&w.join("apiv3_key"))?;
        let apiv3: [u8; 32] = apiv3.trim_end().as_bytes().try_into().map_err(|_| KeyError::Invalid {
            path: w.join("apiv3_key"),
            reason: "must be 32 ASCII bytes".into(),
        })?;
        Ok(Self {
            wechat: WechatKeys {
                merchant: read_json(&w.join("merchant.json"))?,
                merchant_private_key: read_private(&w.join("merchant_private_key.pem"))?,
                merchant_public_key: read_public(&w.join("merchant_public_key.pem"))?,
                platform: read_json(&w.join("platform.json"))?,
                platform_public_key: read_public(&w.join("platform_public_key.pem"))?,
                platform_private_key: read_optional_private(&w.join("platform_private_key.pem"))?,
                apiv3_key: ApiV3Key(apiv3),
            },
            alipay: AlipayKeys {
                app: read_json(&a.join("app.json"))?,
                app_private_key: read_private(&a.join("app_private_key.pem"))?,
                app_public_key: read_public(&a.join("app_public_key.pem"))?,
                alipay_public_key: read_public(&a.join("alipay_public_key.pem"))?,
                alipay_private_key: read_optional_private(&a.join("alipay_private_key.pem"))?,
            },
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn invalid(path: &Path, reason: impl fmt::Display) -> KeyError {
    KeyError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, KeyError> {
    serde_json::from_str(&read(path)?).map_err(|e| invalid(path, e))
}

fn read_private(path: &Path) -> Result<PrivateKey, KeyError> {
    parse_private_key(&read(path)?)
        .and_then(PrivateKey::new)
        .map_err(|e| invalid(path, e))
}

fn read_optional_private(path: &Path) -> Result<Option<PrivateKey>, KeyError> {
    if path.exists() {
        read_private(path).map(Some)
    } else {
        Ok(None)
    }
}

fn read_public(path: &Path) -> Result<RsaPublicKey, KeyError> {
    parse_public_key(&read(path)?).map_err(|e| invalid(path, e))
}

/// Writes `contents` to `path` unless it exists; private material is made 0600.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), KeyError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))
}

/// A key pair's files: both made when both are missing (a first start); the public half
/// derived when only it is missing; left alone when only the private key is missing — a
/// real deployment holds the provider's public key and never its private one.
fn key_pair(dir: &Path, private: &str, public: &str) -> Result<(), KeyError> {
    let (private_path, public_path) = (dir.join(private), dir.join(public));
    match (private_path.exists(), public_path.exists()) {
        (false, false) => {
            let k = generate_rsa_key()?;
            write_new(&private_path, &private_key_pem(&k)?, true)?;
            write_new(&public_path, &public_key_pem(&RsaPublicKey::from(&k))?, false)
        }
        (true, false) => {
            let k = read_private(&private_path)?;
            write_new(&public_path, &public_key_pem(&k.public())?, false)
        }
        _ => Ok(()),
    }
}

fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

fn generate_missing(dir: &Path) -> Result<(), KeyError> {
    let w = dir.join("wechat");
    let a = dir.join("alipay");
    key_pair(&w, "merchant_private_key.pem", "merchant_public_key.pem")?;
    key_pair(&w, "platform_private_key.pem", "platform_public_key.pem")?;
    let merchant = WechatMerchant {
        mchid: format!("19{}", digits(8)),
        appid: format!("wx{}", hex::encode(rand::rng().random::<[u8; 8]>())),
        service_id: hex::encode(rand::rng().random::<[u8; 16]>()).to_uppercase(),
        serial_no: hex::encode(rand::rng().random::<[u8; 20]>()).to_uppercase(),
    };
    write_new(&w.join("merchant.json"), &pretty(&merchant)?, false)?;
    let platform = WechatPlatform {
        serial_no: format!("PUB_KEY_ID_{}", digits(32)),
    };
    write_new(&w.join("platform.json"), &pretty(&platform)?, false)?;
    write_new(&w.join("apiv3_key"), &random_alphanumeric(32), true)?;
    key_pair(&a, "app_private_key.pem", "app_public_key.pem")?;
    key_pair(&a, "alipay_private_key.pem", "alipay_public_key.pem")?;
    let app = AlipayApp {
        app_id: format!("2021{}", digits(12)),
        seller_id: format!("2088{}", digits(12)),
    };
    write_new(&a.join("app.json"), &pretty(&app)?, false)
}

fn pretty<T: Serialize>(v: &T) -> Result<String, KeyError> {
    serde_json::to_string_pretty(v).map_err(|e| invalid(Path::new("<json>"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_read_back_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ProviderKeys::load_or_generate(dir.path()).unwrap();
        let again = ProviderKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(keys.wechat.merchant, again.wechat.merchant, "a second start keeps the keys");
        assert_eq!(keys.wechat.apiv3_key, again.wechat.apiv3_key);
        assert_eq!(keys.wechat.merchant_public_key, keys.wechat.merchant_private_key.public());
        assert_eq!(
            keys.alipay.alipay_public_key,
            keys.alipay.alipay_private_key.as_ref().unwrap().public()
        );
        assert_eq!(keys.wechat.merchant.mchid.len(), 10);
        assert_eq!(keys.wechat.merchant.appid.len(), 18);
        let printed = format!("{keys:?}");
        assert!(printed.contains("<redacted>"));
        let apiv3 = std::str::from_utf8(keys.wechat.apiv3_key.bytes()).unwrap();
        assert!(!printed.contains(apiv3), "the APIv3 key is not printed");
        assert!(!printed.contains("BEGIN"), "no PEM is printed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("wechat/merchant_private_key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private keys are the owner's only");
        }
        // Without the sandboxes' own keys (a real deployment) the rest still loads, and a
        // start does not invent a private key for the provider's public one.
        std::fs::remove_file(dir.path().join("wechat/platform_private_key.pem")).unwrap();
        let real = ProviderKeys::load_or_generate(dir.path()).unwrap();
        assert!(real.wechat.platform_private_key.is_none());
        assert_eq!(real.wechat.platform_public_key, keys.wechat.platform_public_key);
        std::fs::write(dir.path().join("wechat/apiv3_key"), "short").unwrap();
        assert!(matches!(ProviderKeys::load(dir.path()), Err(KeyError::Invalid { .. })));
    }
}
