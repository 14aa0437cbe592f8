//! The OpenAPI document against the behaviour [X3]: the document served at
//! `/api/v1/openapi.json` is the generated one and every operation in it is routed, and
//! Schemathesis, a client that knows only the document, finds no mismatch between what
//! the document promises and what the server does (`st run --checks all`).
//!
//! Schemathesis (PyPI `schemathesis`, pinned below) must be installed: `.ci/run` installs
//! it when `st` is missing. `schemathesis_hooks.py` beside this file accepts the one kind
//! of refusal a schema cannot describe (see its docstring).

use crate::common::{start, Store, TestStore};
use serde_json::Value;
use std::time::{Duration, Instant};
use tare::fleet::ApiClient;

/// The Schemathesis the test is written for; other versions bring other checks.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Test cases per operation and phase: enough to reach every schema branch, few enough
/// that the run takes about a minute on two cores.
const MAX_EXAMPLES: &str = "40";
/// A fixed seed, so a failure is reproducible (`st run … --seed`).
const SEED: &str = "20260";
/// The longest the run may take before the test gives up on it.
const ST_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_served_document_is_the_generated_one_and_every_operation_is_routed() {
    let store = TestStore::new(Store::Sqlite).await;
    let app = start(&store).await;
    let http = reqwest::Client::new();
    let served: Value = http
        .get(format!("{}/api/v1/openapi.json", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("the served document is JSON");
    let generated = serde_json::to_value(tare_gateway::api::openapi_document(tare_platform::Roles::ALL)).unwrap();
    assert_eq!(served, generated, "the node serves the document generated from its routes");
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"), "{}", served["openapi"]);

    let paths = served["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 50, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, item) in paths {
        // Any value fills a path parameter: the point is which handler answers.
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "probe" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http
                .request(method.clone(), format!("{}{concrete}", app.base_url))
                .bearer_auth(&app.admin_token)
                .send()
                .await
                .unwrap();
            let status = r.status();
            if r.headers()
                .get("content-type")
                .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"))
            {
                assert_eq!(status, 200, "{method} {path}");
                continue; // an endless stream: routed, and answering
            }
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path}: documented but the method is not routed");
            assert_ne!(
                body["error"]["code"], "route_not_found",
                "{method} {path}: documented but not routed"
            );
        }
    }
    // And what is not routed answers in the API's one error shape.
    let r = http.delete(format!("{}/api/v1/products", app.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    app.stop().await;
    store.cleanup().await;
}

/// `st`'s version, or why it cannot run.
async fn schemathesis_version() -> Result<String, String> {
    let out = tokio::process::Command::new("st")
        .arg("--version")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // `st, version 4.32.5`
    Ok(text.trim().rsplit(' ').next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_the_document_and_the_behaviour_agree() {
    let version = schemathesis_version().await.unwrap_or_else(|e| {
        panic!(
            "Schemathesis' `st` is not installed ({e}): `pip install schemathesis=={SCHEMATHESIS_VERSION}` \
             (`.ci/run` installs it when missing)"
        )
    });
    assert_eq!(
        version, SCHEMATHESIS_VERSION,
        "this test is written for Schemathesis {SCHEMATHESIS_VERSION}: `pip install schemathesis=={SCHEMATHESIS_VERSION}`"
    );
    // Schemathesis and the server share the two cores; nothing heavy runs beside them.
    let _exclusive = crate::common::exclusive().await;
    let store = TestStore::new(Store::Sqlite).await;
    let app = start(&store).await;
    // What the document's examples name exists, so they reach the handlers' success paths
    // (and the response schemas are checked against real bodies).
    let api = ApiClient::new(&app.base_url, &app.admin_token);
    let (st, body) = api
        .post(
            "/api/v1/products",
            &app.admin_token,
            &serde_json::json!({"sku": "cola-330", "name": "Cola 330ml", "unit_grams": 348, "price_cents": 300}),
        )
        .await
        .unwrap();
    assert_eq!(st, 201, "{body}");
    let cabinet = serde_json::json!({"pk": "wc1", "dn": "SN001", "kind": "weight", "location": {"lat": 31.23, "lng": 121.47},
        "doors": [{"door": 1, "lanes": [{"lane": 1, "sku": "cola-330", "capacity": 10, "restock_threshold": 2}]}]});
    let (st, body) = api.post("/api/v1/cabinets", &app.admin_token, &cabinet).await.unwrap();
    assert_eq!(st, 201, "{body}");

    let work = std::env::temp_dir().join(format!("tare-schemathesis-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let hooks_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/end_to_end");
    let args = [
        "run".to_string(),
        format!("{}/api/v1/openapi.json", app.base_url),
        "--checks".into(),
        "all".into(),
        "--header".into(),
        format!("Authorization: Bearer {}", app.admin_token),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--seed".into(),
        SEED.into(),
        "--workers".into(),
        "2".into(),
        // An endless event stream: `sse_tail` tests it.
        "--exclude-path".into(),
        "/api/v1/sagas/tail".into(),
    ];
    let started = Instant::now();
    let run = tokio::process::Command::new("st")
        .args(&args)
        // Hypothesis keeps its example database in the working directory.
        .current_dir(&work)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", &hooks_dir)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(ST_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("`st {}` did not finish within {ST_TIMEOUT:?}", args.join(" ")))
        .expect("st runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&work);
    app.stop().await;
    store.cleanup().await;
    assert!(
        out.status.success(),
        "Schemathesis found the document and the server disagree (exit {:?}, {:?}):\n{report}",
        out.status.code(),
        started.elapsed()
    );
    // A run that tested nothing would pass too: every operation it selected is tested.
    let number_after = |label: &str| -> Option<usize> {
        let rest = &report[report.find(label)? + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).find(|t| !t.is_empty())?.parse().ok()
    };
    // `Selected: 46/47`: every operation but the excluded tail is selected and tested.
    let selected = number_after("Selected: ");
    let selected_total = report
        .find("Selected: ")
        .and_then(|i| report[i..].split_once('/'))
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok());
    let tested = number_after("Tested: ");
    assert!(
        selected_total.is_some_and(|t| t > 20) && selected.map(|s| s + 1) == selected_total && tested == selected,
        "Schemathesis did not test every operation but the tail ({tested:?} tested, {selected:?} of {selected_total:?} selected):\n{report}"
    );
    eprintln!("schemathesis passed in {:?}:\n{report}", started.elapsed());
}
