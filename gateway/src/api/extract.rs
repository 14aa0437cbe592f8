//! Extractors: a JSON body whose errors name the offending field, and the two kinds of
//! bearer token (operator, shopper).

use super::{ApiError, ApiState};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A JSON body. Syntax errors are 400 `malformed_json`; type, range and unknown-field
/// errors are 422 with the field's path.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<ApiState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::Malformed(e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::Malformed(format!("body is not valid JSON: {inner}")));
            }
            let msg = inner.to_string();
            // serde reports an unknown field as "unknown field `x`, expected …".
            let field = match msg.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
                // serde_path_to_error's path already ends with the unknown field.
                Some((name, _)) if path == "." => name.to_string(),
                Some(_) => path,
                None if path == "." => missing_field(&msg).unwrap_or_else(|| "body".to_string()),
                None => match missing_field(&msg) {
                    Some(f) => format!("{path}.{f}"),
                    None => path,
                },
            };
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Err(ApiError::Invalid { field, message: msg })
        }
    }
}

fn missing_field(msg: &str) -> Option<String> {
    msg.strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f.to_string())
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let h = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid authorization header".into()))?;
    h.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("expected `Bearer <token>`".into()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 hex of a token (what the shopper aggregate stores).
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator (admin token).
    Operator,
    /// A shopper.
    Shopper(String),
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) {
            return Ok(Self::Operator);
        }
        // Shopper tokens are `{shopper_id}.{secret}`; only their hash is stored.
        let invalid = || ApiError::Unauthorized("invalid token".into());
        let (shopper_id, _) = token.split_once('.').ok_or_else(invalid)?;
        let shopper = state.platform.shopper(shopper_id).await.map_err(|_| invalid())?;
        if constant_time_eq(token_sha256(token).as_bytes(), shopper.token_sha256.as_bytes()) {
            Ok(Self::Shopper(shopper_id.to_string()))
        } else {
            Err(invalid())
        }
    }
}

/// An operator (403 for a shopper token).
pub struct Operator;

impl FromRequestParts<Arc<ApiState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Operator => Ok(Self),
            Caller::Shopper(_) => Err(ApiError::Forbidden("operators only".into())),
        }
    }
}

/// A shopper (403 for the operator token).
pub struct ShopperCaller(pub String);

impl FromRequestParts<Arc<ApiState>> for ShopperCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Shopper(id) => Ok(Self(id)),
            Caller::Operator => Err(ApiError::Forbidden("shoppers only".into())),
        }
    }
}
