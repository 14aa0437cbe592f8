//! The OpenAPI document [X3], generated from the handlers (`#[utoipa::path]`) and the DTOs
//! they read and write (`ToSchema`), never kept by hand: the router registers each handler
//! together with its path item (`utoipa_axum::routes!`), so a route cannot exist without
//! its documentation, and a schema is the type that is really (de)serialized.
//!
//! What lives here: the document's frame (info, tags, security schemes), the error
//! responses every endpoint shares, the handler that serves the document, and the tests
//! that hold the document to the router and to `docs/openapi.json`. What must not: any
//! endpoint's own description, which stays on its handler.

use super::error::ErrorBody;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};

/// The document's frame; the paths and the schemas they use are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tare HTTP API",
        version = "1",
        description = "The public HTTP API of Tare, an event-sourced platform for unmanned retail cabinets, and the HTTP device API of PROTOCOL.md. The fixed core is API.md; this document is generated from the handlers of the node that serves it (a node serves what its roles say). All bodies are JSON (except `/metrics`), money is integer cents, times are Unix ms. Request bodies are limited to 64 KiB. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`: 400 malformed JSON, 401 no/invalid token, 403 wrong caller, 404, 409 conflict with the current state, 413 body too large, 422 invalid field (with its path). An unknown path is 404 `route_not_found`; a known path with another method is 405 `method_not_allowed` with an `Allow` header."
    ),
    tags(
        (name = "catalogue", description = "Products and the coupon policy (operator)."),
        (name = "cabinets", description = "Cabinets, their planogram, ledger, device access and commands (operator)."),
        (name = "campaigns", description = "Ads and upgrades pushed to many cabinets, and their progress (operator)."),
        (name = "shoppers", description = "Shoppers, their orders and coupons."),
        (name = "orders", description = "Purchases and receipts."),
        (name = "payments", description = "Provider sandboxes and signed provider callbacks."),
        (name = "audit", description = "The global event feed."),
        (name = "reconciliation", description = "Stock by weight against the ledger, providers' bills against our charges and refunds, daily settlements, and the anomaly queue (operator)."),
        (name = "operators", description = "Staff with roles: admin (everything), operator (the fleet, refunds up to a limit), auditor (read-only), optionally scoped to some cabinets (admin)."),
        (name = "operations", description = "Metrics and this document."),
        (name = "device", description = "The HTTP device API (PROTOCOL.md) for cabinets without MQTT."),
    ),
    components(
        schemas(ErrorBody),
        responses(MalformedJson, Unauthorized, OperatorOnly, ShopperOnly, TooLarge, Internal, RateLimited, Overloaded)
    ),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// Closes the variants of the tagged request bodies: serde refuses unknown fields in them
/// (`deny_unknown_fields` on the enum), but utoipa leaves each `oneOf` variant open, so a
/// client reading the document would think `{"resolution": "written_off", "reference": …}`
/// valid. Applied to the finished document (the schemas come with the routes).
pub(super) struct ClosedVariants;

/// The request bodies that are `oneOf` tagged variants.
const TAGGED_BODIES: &[&str] = &["Settlement", "AnomalyActionBody", "CampaignActionBody"];

impl Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        use utoipa::openapi::RefOr;
        let Some(components) = openapi.components.as_mut() else { return };
        for name in TAGGED_BODIES {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(*name) {
                for item in &mut one_of.items {
                    if let RefOr::T(Schema::Object(o)) = item {
                        o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
    }
}

/// Adds the edge's own answers ([`super::guard`]) to every operation they can come from:
/// 429 `rate_limited` where the per-client rate applies (not provider callbacks nor the
/// device API, which documents its own 429) and 503 `overloaded` / `timeout` wherever
/// the in-flight bound applies (not the device long poll).
pub(super) struct EdgeResponses;

impl Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::Ref;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let rated = !path.starts_with("/callbacks/") && !path.starts_with("/device/");
            let bounded = path != "/device/v1/down/cmd";
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
                .into_iter()
                .flatten()
            {
                if rated {
                    op.responses
                        .responses
                        .entry("429".into())
                        .or_insert_with(|| Ref::from_response_name("RateLimited").into());
                }
                if bounded {
                    op.responses
                        .responses
                        .entry("503".into())
                        .or_insert_with(|| Ref::from_response_name("Overloaded").into());
                }
            }
        }
    }
}

/// Names of the security schemes, as handlers' `security(...)` refer to them.
pub(super) mod scheme {
    /// The operator token.
    pub const OPERATOR: &str = "operatorBearer";
    /// A shopper token.
    pub const SHOPPER: &str = "shopperBearer";
}

/// Adds the security schemes: bearer tokens for operators and shoppers, the three signed
/// headers of a device request, and the two of a provider callback.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: Option<&str>, description: &str| {
            let mut b = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description));
            if let Some(f) = format {
                b = b.bearer_format(f);
            }
            SecurityScheme::Http(b.build())
        };
        let header =
            |name: &str, description: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, description)));
        for (name, s) in [
            (
                scheme::OPERATOR,
                bearer(None, "A staff token: the admin token (`TARE_ADMIN_TOKEN`, or the one `serve` prints once), or an operator's as returned by `POST /api/v1/operators`: `Authorization: Bearer <token>`."),
            ),
            (
                scheme::SHOPPER,
                bearer(
                    Some("{shopper_id}.{secret}"),
                    "A shopper token as returned by `POST /api/v1/shoppers`: `Authorization: Bearer <token>`.",
                ),
            ),
            ("deviceId", header("X-Tare-Device", "The device's id `pk.dn`.")),
            ("deviceTimestamp", header("X-Tare-Timestamp", "Unix ms of the request; refused when too far from the platform's clock.")),
            (
                "deviceSignature",
                header(
                    "X-Tare-Signature",
                    "Hex HMAC-SHA256, under the device secret, of `{ts}\\n{METHOD}\\n{path}\\n{hex sha256 of the body}` (PROTOCOL.md; the path without its query string, or with it).",
                ),
            ),
            ("wechatpaySignature", header("Wechatpay-Signature", "Base64 RSA-SHA256 signature by WeChat's platform key of `{timestamp}\\n{nonce}\\n{body}\\n` (PAYMENTS.md §1.8).")),
            ("wechatpayTimestamp", header("Wechatpay-Timestamp", "Unix seconds WeChat signed at (within 5 minutes of now).")),
            ("wechatpayNonce", header("Wechatpay-Nonce", "WeChat's random nonce.")),
            ("wechatpaySerial", header("Wechatpay-Serial", "The serial number of WeChat's platform key (`wechat/platform.json`).")),
        ] {
            components.add_security_scheme(name, s);
        }
    }
}

/// A JSON error response with `description`, its body an [`ErrorBody`].
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
        )
        .build()
        .into()
}

/// Declares reusable error responses (`components/responses`) for the statuses whose
/// meaning is the same on every endpoint; the endpoint-specific ones (404, 409, 422 with
/// their codes and fields) are written on each handler.
macro_rules! shared_error_responses {
    ($($(#[$doc:meta])* $name:ident => $description:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error_response($description))
            }
        }
    )*};
}

shared_error_responses! {
    /// 400 on a body that is not JSON.
    MalformedJson => "`malformed_json`: the body is not JSON (syntax error, truncated or empty).";
    /// 401 on a missing or bad bearer token.
    Unauthorized => "`unauthorized`: no bearer token, a malformed `Authorization` header, or a token that is not valid.";
    /// 403 for a shopper on an operator endpoint.
    OperatorOnly => "`forbidden`: a shopper token on an operator endpoint, or an operator whose role (an auditor writing, a non-admin on an admin's request, a refund above the operator's limit) or cabinet scope does not allow this request.";
    /// 403 for the operator on a shopper endpoint.
    ShopperOnly => "`forbidden`: the operator token on a shopper-only endpoint.";
    /// 413 on a body over the limit.
    TooLarge => "`too_large`: the body is over 64 KiB.";
    /// 429 from the edge: the client is over its request rate.
    RateLimited => "`rate_limited`: this client (by bearer token, else by address) is over its request rate; `Retry-After` says when to try again.";
    /// 503 from the edge: the node is at its bound of requests in flight, or the request ran too long.
    Overloaded => "`overloaded` (the node is serving its limit of requests at once), `timeout` (the request ran over 30 s) or `store_unavailable` (the store cannot be reached: restarting, or its connections exhausted); `Retry-After` says when to try again.";
    /// 500: logged with its detail, shown without it.
    Internal => "`internal`: the store failed (the detail is logged; the message is only \"internal error\").";
}

/// The served document as JSON text, rendered once when the router is built.
#[derive(Clone)]
pub(super) struct OpenApiJson(pub Arc<str>);

/// The OpenAPI document of this node (what its roles serve).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    operation_id = "getOpenApi",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object))
)]
pub(super) async fn serve(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::openapi_document;
    use serde_json::Value;
    use tare_platform::Roles;

    /// The document of a node with every role, as JSON.
    fn document() -> Value {
        serde_json::to_value(openapi_document(Roles::ALL)).unwrap_or_default()
    }

    /// What Rust's `trim()` takes for blank (Unicode White_Space), as a regex class body.
    const BLANK: &str = r"\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
            })
            .collect();
        documented.sort();
        let mut routed = vec![
            "GET /api/v1/openapi.json",
            "GET /metrics",
            "POST /api/v1/products",
            "GET /api/v1/products/{sku}",
            "PATCH /api/v1/products/{sku}",
            "PUT /api/v1/coupon-policy",
            "GET /api/v1/coupon-policy",
            "POST /api/v1/cabinets",
            "GET /api/v1/cabinets/{id}",
            "GET /api/v1/cabinets/nearby",
            "GET /api/v1/cabinets/{id}/ledger",
            "GET /api/v1/cabinets/{id}/weights",
            "PUT /api/v1/cabinets/{id}/device",
            "PUT /api/v1/cabinets/{id}/temperature-limit",
            "POST /api/v1/cabinets/{id}/temperature-lockout/reset",
            "POST /api/v1/campaigns",
            "GET /api/v1/campaigns/{id}",
            "POST /api/v1/cabinets/{id}/restocks",
            "GET /api/v1/restocks/{id}",
            "GET /api/v1/restock-tasks",
            "PUT /api/v1/cabinets/{id}/doors/{door}/lanes/{lane}",
            "POST /api/v1/cabinets/{id}/commands",
            "GET /api/v1/commands/{id}",
            "POST /api/v1/shoppers",
            "GET /api/v1/shoppers/me/orders",
            "POST /api/v1/shoppers/{id}/coupons",
            "GET /api/v1/shoppers/{id}",
            "POST /api/v1/shoppers/{id}/erase",
            "POST /api/v1/orders",
            "GET /api/v1/orders",
            "GET /api/v1/orders/{id}",
            "POST /api/v1/orders/{id}/refunds",
            "GET /api/v1/emergency-stop",
            "PUT /api/v1/emergency-stop",
            "POST /api/v1/operators",
            "GET /api/v1/operators",
            "POST /api/v1/operators/{id}/revoke",
            "GET /api/v1/dead-letters",
            "POST /api/v1/dead-letters/charges/{order_id}/retry",
            "POST /api/v1/dead-letters/charges/{order_id}/settle",
            "POST /api/v1/dead-letters/effects/{key}/retry",
            "GET /api/v1/events",
            "GET /api/v1/sagas/tail",
            "GET /api/v1/reconciliation/bills",
            "POST /api/v1/reconciliation/bills",
            "GET /api/v1/reconciliation/stock",
            "GET /api/v1/settlements",
            "GET /api/v1/anomalies",
            "POST /api/v1/anomalies/{id}/actions",
            "POST /sandbox/{provider}/authorizations/{reference}/confirm",
            "PUT /sandbox/{provider}/behaviour",
            "GET /sandbox/alerts",
            "POST /callbacks/wechat",
            "POST /callbacks/alipay",
            "POST /device/v1/up/{kind}",
            "GET /device/v1/down/cmd",
        ];
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn a_node_documents_only_what_its_roles_serve() {
        let gateway_only = Roles {
            gateway: true,
            sagas: false,
            projections: false,
            api: false,
        };
        let doc = serde_json::to_value(openapi_document(gateway_only)).unwrap_or_default();
        let mut paths: Vec<&String> = doc["paths"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
        paths.sort();
        assert_eq!(
            paths,
            ["/api/v1/openapi.json", "/device/v1/down/cmd", "/device/v1/up/{kind}", "/metrics"]
        );
    }

    /// Every operation documents its error statuses with the one error body (but the
    /// providers' callbacks, which answer in each provider's own format), and every
    /// schema it refers to exists.
    #[test]
    fn errors_have_the_one_shape_and_every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    if (status.starts_with('4') || status.starts_with('5')) && !path.starts_with("/callbacks/") {
                        let body = match response.get("$ref").and_then(Value::as_str) {
                            Some(r) => doc["components"]["responses"][r.trim_start_matches("#/components/responses/")].clone(),
                            None => response.clone(),
                        };
                        assert_eq!(
                            body["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = r.split('"').next().unwrap_or_default();
            let mut node = &doc;
            for part in target.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "{target} does not resolve");
        }
    }

    /// "Not blank" in the document is what `trim()` does on the server.
    #[test]
    fn not_blank_patterns_are_trims() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let not_blank = format!("[^{BLANK}]");
        for (schema, field) in [("PriceLabelArgs", "name"), ("AdAddArgs", "ad_id"), ("UpgradeArgs", "version")] {
            assert_eq!(
                schemas[schema]["properties"][field]["pattern"],
                not_blank.as_str(),
                "{schema}.{field}"
            );
        }
        let name = schemas["NewProduct"]["properties"]["name"]["pattern"].as_str().unwrap_or_default();
        assert_eq!(name, format!("^[{BLANK}]*{not_blank}([\\s\\S]{{0,62}}{not_blank})?[{BLANK}]*$"));
    }

    /// `docs/openapi.json` is the document of a node with every role, for people to read
    /// and review in diffs; `TARE_BLESS=1 cargo test -p tare-gateway` rewrites it.
    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let generated = openapi_document(Roles::ALL).to_pretty_json().unwrap_or_default() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        if std::env::var_os("TARE_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is not the generated document; run `TARE_BLESS=1 cargo test -p tare-gateway the_checked_in_document` and commit it"
        );
    }
}
