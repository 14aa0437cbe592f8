//! Who is calling and what they may do [API.md "Auth"]: the bearer token resolved to a
//! member of staff (the environment's admin token, or a named operator's token) or a
//! shopper; the roles' powers; an operator's cabinet scope; and the middleware that runs
//! a staff request as its actor, so every event it causes records who did it.
//!
//! The powers, in one place:
//! - `admin`: everything.
//! - `operator`: everything but managing operators, writing off a charge, the coupon
//!   policy, and refunds above the platform's limit ([`ApiState::refund_limit`]).
//! - `auditor`: reads only (`GET`).
//!
//! An operator with a cabinet scope reaches only requests that name a cabinet of its
//! scope: in the path (`/api/v1/cabinets/{id}/…`), in `?cabinet=`, or through an order
//! (`/api/v1/orders/{id}`, its refunds). Anything else spans the fleet and is refused.

use super::{ApiError, ApiState};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tare_domain::operator::{CabinetScope, Role};
use tare_domain::Cents;
use tare_platform::service::ServiceError;

/// The operator id of the environment's admin token (`TARE_ADMIN_TOKEN`).
pub const ROOT_ADMIN: &str = "admin";

/// A member of staff, authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// `admin` for the environment's token, else `op_…`.
    pub operator_id: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The cabinets they reach.
    pub scope: CabinetScope,
}

impl Staff {
    fn root() -> Self {
        Self {
            operator_id: ROOT_ADMIN.into(),
            name: ROOT_ADMIN.into(),
            role: Role::Admin,
            scope: CabinetScope::fleet(),
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A member of staff.
    Staff(Staff),
    /// A shopper.
    Shopper(String),
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

/// Equality whose time does not depend on where the inputs differ (tokens, secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 hex of a token (what the shopper and operator accounts store).
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh secret for a token: 24 random bytes, hex.
pub fn token_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// The id part of a token the platform issued (`{id}.{48 hex}`), where the id is 32
/// lowercase hex digits after `prefix`; `None` for anything else, which is refused
/// without a store read.
fn issued_id<'t>(token: &'t str, prefix: &str) -> Option<&'t str> {
    let (id, secret) = token.split_once('.')?;
    let hex32 = id.strip_prefix(prefix)?;
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex32.len() == 32 && lower_hex(hex32) && secret.len() == 48 && lower_hex(secret)).then_some(id)
}

/// The prefix of operator ids (and so of their tokens).
pub const OPERATOR_PREFIX: &str = "op_";

async fn resolve(token: &str, state: &ApiState) -> Result<Caller, ApiError> {
    if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) {
        return Ok(Caller::Staff(Staff::root()));
    }
    let invalid = || ApiError::Unauthorized("invalid token".into());
    // Only an unknown id is a bad token: a store that cannot be read is the store's
    // answer (503 `store_unavailable`), or an app would log its shopper out mid-outage.
    let unknown_or = |e: ServiceError| match e {
        ServiceError::NotFound { .. } => invalid(),
        other => ApiError::from(other),
    };
    if let Some(id) = issued_id(token, OPERATOR_PREFIX) {
        let a = state.platform.operator_account(id).await.map_err(unknown_or)?;
        if !constant_time_eq(token_sha256(token).as_bytes(), a.token_sha256.as_bytes()) {
            return Err(invalid());
        }
        if a.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("token revoked".into()));
        }
        let role = a.role.ok_or_else(invalid)?;
        return Ok(Caller::Staff(Staff {
            operator_id: id.to_string(),
            name: a.name,
            role,
            scope: a.scope,
        }));
    }
    let id = issued_id(token, "").ok_or_else(invalid)?;
    let shopper = state.platform.shopper(id).await.map_err(unknown_or)?;
    if constant_time_eq(token_sha256(token).as_bytes(), shopper.token_sha256.as_bytes()) {
        Ok(Caller::Shopper(id.to_string()))
    } else {
        Err(invalid())
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let caller = resolve(bearer(parts)?, state).await?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Runs a staff member's request as their actor ([`tare_platform::actor`]): their
/// operator id, so the events it causes record who did it. Requests with another token, or none, pass
/// through untouched (their extractors answer for them).
pub async fn act_as_staff(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let staff = match bearer(&parts) {
        Ok(t) if t.starts_with(OPERATOR_PREFIX) || constant_time_eq(t.as_bytes(), state.admin_token.as_bytes()) => {
            match Caller::from_request_parts(&mut parts, &state).await {
                Ok(Caller::Staff(s)) => Some(s),
                _ => None,
            }
        }
        _ => None,
    };
    let req = Request::from_parts(parts, body);
    match staff {
        Some(s) => tare_platform::actor::acting_as(s.operator_id, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// A member of staff whose role and scope allow this request (403 otherwise, and for a
/// shopper's token).
pub struct Operator(pub Staff);

impl FromRequestParts<Arc<ApiState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let staff = match Caller::from_request_parts(parts, state).await? {
            Caller::Staff(s) => s,
            Caller::Shopper(_) => return Err(ApiError::Forbidden("operators only".into())),
        };
        let path = parts.uri.path();
        if staff.role != Role::Admin && admin_only(&parts.method, path) {
            return Err(ApiError::Forbidden(format!(
                "{} is for admins; {} is {}",
                path,
                staff.name,
                staff.role.as_str()
            )));
        }
        if staff.role == Role::Auditor && !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(ApiError::Forbidden(format!("{} is an auditor: read-only", staff.name)));
        }
        if !staff.scope.is_fleet() {
            check_scope(&staff, parts, state).await?;
        }
        Ok(Self(staff))
    }
}

/// Requests only an admin may make.
fn admin_only(method: &Method, path: &str) -> bool {
    path.starts_with("/api/v1/operators")
        || (*method == Method::PUT && path == "/api/v1/coupon-policy")
        || (*method == Method::POST && path.starts_with("/api/v1/dead-letters/charges/") && path.ends_with("/settle"))
}

/// A scoped operator's request must name a cabinet of its scope (see the module doc).
async fn check_scope(staff: &Staff, parts: &Parts, state: &ApiState) -> Result<(), ApiError> {
    let out = |cabinet: &str| ApiError::Forbidden(format!("cabinet {cabinet} is outside {}'s scope", staff.name));
    let mut named = false;
    let segments: Vec<&str> = parts.uri.path().trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "cabinets", id, ..] if *id != "nearby" => {
            if !staff.scope.contains(id) {
                return Err(out(id));
            }
            named = true;
        }
        ["api", "v1", "orders", order_id] | ["api", "v1", "orders", order_id, "refunds"] => {
            let order = state.platform.order(order_id).await?;
            let cabinet = order.cabinet.map(|c| c.to_string()).unwrap_or_default();
            if !staff.scope.contains(&cabinet) {
                return Err(out(&cabinet));
            }
            named = true;
        }
        _ => {}
    }
    let query =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| ApiError::invalid("query", e.body_text()))?;
    for (k, v) in query.0 {
        if k == "cabinet" {
            if !staff.scope.contains(&v) {
                return Err(out(&v));
            }
            named = true;
        }
    }
    if named {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{} is scoped to some cabinets: name one in the path or with ?cabinet= (this request spans the fleet)",
            staff.name
        )))
    }
}

impl Operator {
    /// Who the operator is, for the record of what they did ("who and why"): their
    /// operator id (`admin` for the environment's token), as `actor` records it too.
    pub fn who(&self) -> &str {
        &self.0.operator_id
    }

    /// Refuses a refund above the platform's limit unless the caller is an admin.
    pub fn may_refund(&self, amount: Cents, state: &ApiState) -> Result<(), ApiError> {
        if self.0.role == Role::Admin || amount <= state.refund_limit {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "refunds above {} cents need an admin; {} is {}",
            state.refund_limit.get(),
            self.0.name,
            self.0.role.as_str()
        )))
    }
}

/// An admin (403 for any other caller).
pub struct Admin(pub Staff);

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Staff(s) if s.role == Role::Admin => Ok(Self(s)),
            Caller::Staff(s) => Err(ApiError::Forbidden(format!("admins only; {} is {}", s.name, s.role.as_str()))),
            Caller::Shopper(_) => Err(ApiError::Forbidden("admins only".into())),
        }
    }
}

/// A shopper (403 for a staff token).
pub struct ShopperCaller(pub String);

impl FromRequestParts<Arc<ApiState>> for ShopperCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Shopper(id) => Ok(Self(id)),
            Caller::Staff(_) => Err(ApiError::Forbidden("shoppers only".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_issued_tokens_reach_the_store() {
        let secret = "ab".repeat(24);
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(issued_id(&format!("{id}.{secret}"), ""), Some(id));
        assert_eq!(issued_id(&format!("op_{id}.{secret}"), OPERATOR_PREFIX), Some(&*format!("op_{id}")));
        for bad in [
            "x.y".to_string(),
            id.to_string(),
            format!("{id}.{}", "ab".repeat(23)),
            format!("{}.{secret}", id.to_uppercase()),
            format!("op_{id}.{secret}"),
            format!("../{id}.{secret}"),
        ] {
            assert_eq!(issued_id(&bad, ""), None, "{bad}");
        }
        assert_eq!(issued_id(&format!("{id}.{secret}"), OPERATOR_PREFIX), None);
    }

    #[test]
    fn admin_only_requests_are_the_operator_list_write_offs_and_the_coupon_rule() {
        assert!(admin_only(&Method::POST, "/api/v1/operators"));
        assert!(admin_only(&Method::GET, "/api/v1/operators"));
        assert!(admin_only(&Method::DELETE, "/api/v1/operators/op_1"));
        assert!(admin_only(&Method::POST, "/api/v1/dead-letters/charges/o1/settle"));
        assert!(admin_only(&Method::PUT, "/api/v1/coupon-policy"));
        assert!(!admin_only(&Method::GET, "/api/v1/coupon-policy"));
        assert!(!admin_only(&Method::POST, "/api/v1/dead-letters/charges/o1/retry"));
        assert!(!admin_only(&Method::POST, "/api/v1/orders/o1/refunds"));
    }
}
