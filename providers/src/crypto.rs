//! The providers' cryptography, in one place: RSA PKCS#1 v1.5 signatures over SHA-256
//! (WeChat's WECHATPAY2-SHA256-RSA2048 and Alipay's RSA2, both base64), AEAD_AES_256_GCM
//! (WeChat notification resources), PEM keys (PKCS#8 private, SubjectPublicKeyInfo
//! public) and random nonces.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::distr::{Alphanumeric, SampleString};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A PEM file could not be read as the key it should hold.
    #[error("key: {0}")]
    Key(String),
    /// Ciphertext that does not decrypt under the key (wrong key, tampered, truncated).
    #[error("ciphertext does not decrypt")]
    Decrypt,
    /// Not base64.
    #[error("not base64")]
    Base64,
}

/// A private RSA key that signs and never prints itself.
///
/// Signing is ring's (BoringSSL's assembly Montgomery multiplication): every request the
/// platform sends a provider is signed, and the `rsa` crate's portable big integers took
/// half the CPU of a purchase (`perf`, `tare bench purchase`); ring signs the same
/// PKCS#1 v1.5 SHA-256 signature several times faster. The `rsa` crate's key stays for
/// PEM files and the public half.
#[derive(Clone)]
pub struct PrivateKey {
    rsa: RsaPrivateKey,
    signer: Arc<RsaKeyPair>,
}

impl PrivateKey {
    /// Prepares `rsa` for signing (ring checks the key's consistency once, here).
    pub fn new(rsa: RsaPrivateKey) -> Result<Self, CryptoError> {
        let der = rsa.to_pkcs8_der().map_err(|e| CryptoError::Key(e.to_string()))?;
        let signer = RsaKeyPair::from_pkcs8(der.as_bytes()).map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(Self {
            rsa,
            signer: Arc::new(signer),
        })
    }

    /// The key.
    pub fn rsa(&self) -> &RsaPrivateKey {
        &self.rsa
    }

    /// Its public half.
    pub fn public(&self) -> RsaPublicKey {
        RsaPublicKey::from(&self.rsa)
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.rsa == other.rsa
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// `base64(RSA_PKCS1v15_sign(SHA256, key, message))`.
pub fn rsa_sign(key: &PrivateKey, message: &[u8]) -> String {
    let mut signature = vec![0; key.signer.public().modulus_len()];
    // ring fails only on a buffer of the wrong length or a broken RNG; the buffer is the
    // modulus's length, and an RNG that cannot give bytes leaves nothing to do but stop.
    key.signer
        .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
        .expect("RSA signing with a checked key and a modulus-sized buffer");
    B64.encode(signature)
}

/// Checks a base64 PKCS#1 v1.5 SHA-256 signature of `message` (false for anything that is
/// not one, never an error: a refusal is all a caller can do with it).
pub fn rsa_verify(key: &RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(bytes) = B64.decode(signature_b64.trim()) else {
        return false;
    };
    // ring's verification is several times faster than the `rsa` crate's (it was 6 % of
    // the platform's CPU at the purchase benchmark's peak); ring takes 2048 bits and up,
    // and a smaller key (none the providers issue) is still checked, by `rsa`.
    if key.size() >= 256 {
        let components = ring::signature::RsaPublicKeyComponents {
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        };
        return components
            .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message, &bytes)
            .is_ok();
    }
    let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key.clone()).verify(message, &signature).is_ok()
}

/// AEAD_AES_256_GCM encryption as WeChat does it: `base64(ciphertext ‖ 16-byte tag)`.
pub fn aes_gcm_encrypt(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> String {
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad })
        .unwrap_or_default();
    B64.encode(sealed)
}

/// Opens an AEAD_AES_256_GCM resource (`nonce` is 12 bytes, `ciphertext_b64` holds the
/// ciphertext followed by its 16-byte tag).
pub fn aes_gcm_decrypt(key: &[u8; 32], nonce: &[u8], aad: &[u8], ciphertext_b64: &str) -> Result<Vec<u8>, CryptoError> {
    if nonce.len() != 12 {
        return Err(CryptoError::Decrypt);
    }
    let sealed = B64.decode(ciphertext_b64.trim()).map_err(|_| CryptoError::Base64)?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: &sealed, aad })
        .map_err(|_| CryptoError::Decrypt)
}

/// A random string of `len` ASCII letters and digits (nonces, ids, keys).
pub fn random_alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// A new 2048-bit RSA key.
pub fn generate_rsa_key() -> Result<RsaPrivateKey, CryptoError> {
    RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| CryptoError::Key(e.to_string()))
}

/// A private key as PEM PKCS#8.
pub fn private_key_pem(key: &RsaPrivateKey) -> Result<String, CryptoError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| CryptoError::Key(e.to_string()))
}

/// A public key as PEM SubjectPublicKeyInfo.
pub fn public_key_pem(key: &RsaPublicKey) -> Result<String, CryptoError> {
    key.to_public_key_pem(LineEnding::LF).map_err(|e| CryptoError::Key(e.to_string()))
}

/// Reads a PEM PKCS#8 private key.
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, CryptoError> {
    RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| CryptoError::Key(e.to_string()))
}

/// Reads a PEM SubjectPublicKeyInfo public key.
pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, CryptoError> {
    RsaPublicKey::from_public_key_pem(pem).map_err(|e| CryptoError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The round-trip vector of PAYMENTS.md §1.8 (made with Python's `cryptography`).
    #[test]
    fn the_documented_aes_gcm_vector_decrypts() {
        let key = b"0123456789abcdef0123456789abcdef";
        let ct = "+tSNe9jYKTLcPceTpMy0myvwjl+M2cuve78gkshBSWaJ6YeOjpltppIEqnSHjsTjPoLSoL76ZilLdnwbny2OoNhQ9VMU7UNoKGNm6aZbny9e89WmoraLdw==";
        let plain = aes_gcm_decrypt(key, b"abcdef012345", b"payscore", ct).unwrap();
        assert_eq!(
            plain,
            br#"{"out_order_no":"T1","state":"DOING","state_description":"USER_CONFIRM"}"#
        );
        assert_eq!(aes_gcm_encrypt(key, b"abcdef012345", b"payscore", &plain), ct);
        assert_eq!(aes_gcm_decrypt(key, b"abcdef012345", b"other", ct), Err(CryptoError::Decrypt));
        assert_eq!(
            aes_gcm_decrypt(b"0123456789abcdef0123456789abcdeX", b"abcdef012345", b"payscore", ct),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            aes_gcm_decrypt(key, b"abcdef012345", b"payscore", &ct[..40]),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn rsa_signatures_verify_and_nothing_else_does() {
        let key = PrivateKey::new(generate_rsa_key().unwrap()).unwrap();
        let public = key.public();
        let sig = rsa_sign(&key, b"GET\n/v3/certificates\n1554208460\nNONCE\n\n");
        assert!(rsa_verify(&public, b"GET\n/v3/certificates\n1554208460\nNONCE\n\n", &sig));
        assert!(!rsa_verify(&public, b"GET\n/v3/certificates\n1554208461\nNONCE\n\n", &sig));
        assert!(!rsa_verify(&public, b"x", "not base64!"));
        assert!(!rsa_verify(&public, b"x", "AAAA"));
        let other = RsaPublicKey::from(&generate_rsa_key().unwrap());
        assert!(!rsa_verify(&other, b"GET\n/v3/certificates\n1554208460\nNONCE\n\n", &sig));
        // PEM round trips.
        let back = parse_private_key(&private_key_pem(key.rsa()).unwrap()).unwrap();
        assert_eq!(&back, key.rsa());
        assert_eq!(parse_public_key(&public_key_pem(&public).unwrap()).unwrap(), public);
        assert!(parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    }
}
