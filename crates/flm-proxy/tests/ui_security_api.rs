//! The app's security endpoints over real sockets, in front of a real `security.db`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use flm_core::ports::SystemClock;
use flm_core::security::{AuditEvent, AuditSeverity, NewAnomaly, NewIntrusion};
use flm_core::services::{KeyService, SecurityService, SecurityServiceParts};
use flm_proxy::policy_rules::GuardPolicyRules;
use flm_proxy::ui_api::security::{router, SecurityApiDeps, SecurityChange};
use flm_store::{Store, StorePaths};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

struct App {
    _dir: TempDir,
    store: Store,
    base: String,
    http: reqwest::Client,
    changes: Arc<Mutex<Vec<SecurityChange>>>,
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        status_json(r).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.delete(self.url(path)).send().await.unwrap();
        status_json(r).await
    }
}

async fn status_json(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let has_rid = r.headers().contains_key("x-request-id");
    let text = r.text().await.unwrap();
    let v: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    assert!(has_rid, "every response has an x-request-id");
    if !status.is_success() {
        assert!(v["error"]["code"].is_string(), "error envelope: {v}");
        assert!(v["error"]["request_id"].is_string(), "error envelope: {v}");
    }
    (status, v)
}

fn fields(v: &Value) -> Vec<String> {
    v["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["path"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn start() -> App {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    serve(dir, store).await
}

async fn serve(dir: TempDir, store: Store) -> App {
    let security = SecurityService::new(SecurityServiceParts {
        policy: store.policy(),
        blocklist: store.blocklist(),
        audit: store.audit(),
        events: store.security_events(),
        rate_limits: store.rate_limit_states(),
        rules: Arc::new(GuardPolicyRules),
        clock: Arc::new(SystemClock),
    });
    let keys = KeyService::new(store.api_keys(), Arc::new(SystemClock));
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&changes);
    let deps = SecurityApiDeps::new(keys, security)
        .with_change_sink(Arc::new(move |c| sink.lock().unwrap().push(c)));
    let app = axum::Router::new()
        .nest("/api/v1", router(deps))
        .layer(axum::middleware::from_fn(
            flm_proxy::ui_api::with_request_id,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    App {
        _dir: dir,
        store,
        base: format!("http://{addr}/api/v1"),
        http: reqwest::Client::new(),
        changes,
    }
}

fn event(i: usize, now: chrono::DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        request_id: format!("req-{i:07}"),
        api_key_id: Some(format!("key_{:016x}", i % 7)),
        endpoint: if i.is_multiple_of(10) {
            "/v1/embeddings".into()
        } else {
            "/v1/chat/completions".into()
        },
        status: if i.is_multiple_of(5) { 401 } else { 200 },
        latency_ms: Some(12),
        created_at: now - chrono::Duration::seconds(10_000) + chrono::Duration::seconds(i as i64),
        event_type: Some(
            if i.is_multiple_of(5) {
                "auth_failure"
            } else {
                "auth_success"
            }
            .into(),
        ),
        severity: if i.is_multiple_of(5) {
            AuditSeverity::Medium
        } else {
            AuditSeverity::Low
        },
        ip: Some(format!("10.0.{}.{}", (i / 250) % 250, i % 250)),
        details: Some(json!({"method": "POST", "n": i}).to_string()),
    }
}

async fn fill_audit(store: &Store, n: usize) {
    let now = Utc::now();
    let events: Vec<AuditEvent> = (0..n).map(|i| event(i, now)).collect();
    for chunk in events.chunks(5000) {
        store.audit().append_batch(chunk).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_create_list_revoke_rotate() {
    let app = start().await;
    let (s, v) = app.post("/keys", json!({"label": "laptop"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    let id = v["key"]["id"].as_str().unwrap().to_owned();
    assert!(secret.len() > 20);
    assert_eq!(v["key"]["label"], "laptop");
    assert!(v["key"]["revoked_at"].is_null());

    // The list never shows the secret.
    let (s, v) = app.get("/keys").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert!(!v.to_string().contains(&secret));

    // Rotate: a new key with the same label, the old one revoked.
    let (s, v) = app.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked_id"], id.as_str());
    assert_eq!(v["key"]["label"], "laptop");
    let new_id = v["key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_ne!(v["secret"].as_str().unwrap(), secret);
    let (_, list) = app.get("/keys").await;
    let old = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(old["revoked_at"].is_string());

    // Rotating or revoking the revoked key: 409; an unknown id: 404.
    let (s, v) = app.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "key_revoked");
    let (s, v) = app
        .post("/keys/key_0000000000000000/revoke", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "key_not_found");

    let (s, v) = app.post(&format!("/keys/{new_id}/revoke"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string());

    // Bad input.
    let (s, v) = app.post("/keys", json!({"label": "  "})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["label"]);
    let (s, v) = app.post("/keys", json!({"name": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_body");

    let n = app
        .changes
        .lock()
        .unwrap()
        .iter()
        .filter(|c| **c == SecurityChange::Keys)
        .count();
    assert_eq!(n, 3, "create, rotate and revoke are announced");
}

#[tokio::test]
async fn keys_with_models_routes_and_expiry() {
    let app = start().await;
    let (s, v) = app
        .post(
            "/keys",
            json!({"label": "rag", "models": ["flm://ollama-default/*", "*embed*"], "routes": ["embeddings", "models"], "expires_in": "30d"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = &v["key"];
    assert_eq!(key["models"], json!(["flm://ollama-default/*", "*embed*"]));
    assert_eq!(key["routes"], json!(["embeddings", "models"]));
    assert_eq!(key["expired"], false);
    assert!(key["tpm"].is_null() && key["monthly_tokens"].is_null());
    let expires: chrono::DateTime<Utc> = key["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{expires}");
    // Rotation keeps the limits.
    let id = key["id"].as_str().unwrap();
    let (s, r) = app.post(&format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["key"]["models"], key["models"]);
    assert_eq!(r["key"]["routes"], key["routes"]);
    assert_eq!(r["key"]["expires_at"], key["expires_at"]);
    // An unscoped key lists null limits.
    let (_, v) = app.post("/keys", json!({"label": "plain"})).await;
    assert!(v["key"]["models"].is_null() && v["key"]["routes"].is_null());
    assert!(v["key"]["expires_at"].is_null());

    // Each bad limit names its field.
    for (body, field) in [
        (
            json!({"label": "x", "models": ["flm://engine-only"]}),
            "models",
        ),
        (json!({"label": "x", "models": []}), "models"),
        (json!({"label": "x", "expires_in": "30x"}), "expires_in"),
        (json!({"label": "x", "routes": []}), "routes"),
        (json!({"label": "x", "tpm": 0}), "tpm"),
        (json!({"label": "x", "monthly_tokens": 0}), "monthly_tokens"),
    ] {
        let (s, v) = app.post("/keys", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(fields(&v), [field], "{body}: {v}");
    }
    // An unknown route class is not a `RouteClass`: the body is refused as such.
    let (s, v) = app
        .post("/keys", json!({"label": "x", "routes": ["chats"]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_body");
}

// ---------------------------------------------------------------------------------------
// policy and allow list
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_round_trip_and_every_invalid_field_reported() {
    let app = start().await;
    let (s, v) = app.get("/security/policy").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["policy"].is_object(), "the seeded policy: {v}");

    let (s, v) = app
        .put(
            "/security/policy",
            json!({"policy": {"ip_whitelist": ["10.0.0.0/8"], "rate_limit": {"rpm": 120, "burst": 20}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["policy"]["ip_whitelist"][0], "10.0.0.0/8");
    assert!(v["updated_at"].is_string());

    let (s, v) = app
        .put(
            "/security/policy",
            json!({"policy": {"ip_whitelist": ["10.0.0.1", "nope", "10.0.0.0/99"], "rate_limit": {"rpm": -1}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "invalid_policy");
    let f = fields(&v);
    assert!(f.contains(&"ip_whitelist[1]".to_owned()), "{f:?}");
    assert!(f.contains(&"ip_whitelist[2]".to_owned()), "{f:?}");
    assert!(f.contains(&"rate_limit.rpm".to_owned()), "{f:?}");
    // Nothing was saved.
    let (_, v) = app.get("/security/policy").await;
    assert_eq!(v["policy"]["ip_whitelist"], json!(["10.0.0.0/8"]));

    let (s, v) = app.put("/security/policy", json!({"policy": [1, 2]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_policy");
}

#[tokio::test]
async fn allow_list_add_remove_with_validation() {
    let app = start().await;
    let (s, v) = app.get("/security/allowlist").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["entries"], json!([]));

    let (s, v) = app
        .post("/security/allowlist", json!({"entry": "192.168.1.7/24"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["entries"][0]["entry"], "192.168.1.0/24");
    let (_, v) = app
        .post("/security/allowlist", json!({"entry": " 2001:db8::1 "}))
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    // Adding it again changes nothing.
    let (_, v) = app
        .post("/security/allowlist", json!({"entry": "192.168.1.0/24"}))
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    // It is the policy's `ip_whitelist`.
    let (_, p) = app.get("/security/policy").await;
    assert_eq!(
        p["policy"]["ip_whitelist"],
        json!(["192.168.1.0/24", "2001:db8::1"])
    );

    for bad in ["", "300.1.1.1", "10.0.0.0/40", "example.com"] {
        let (s, v) = app.post("/security/allowlist", json!({"entry": bad})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(fields(&v), ["entry"], "{bad}");
    }

    // Remove a CIDR, url-encoded.
    let (s, v) = app.delete("/security/allowlist/192.168.1.0%2F24").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["entries"],
        json!([{"entry": "2001:db8::1", "added_at": null}])
    );
    let (s, v) = app.delete("/security/allowlist/192.168.1.0%2F24").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_in_allowlist");
}

// ---------------------------------------------------------------------------------------
// blocklist
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn blocklist_block_unblock_clear() {
    let app = start().await;
    let (s, v) = app
        .post(
            "/security/blocklist",
            json!({"ip": "203.0.113.7", "duration_secs": 600, "reason": "test"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "temporary");
    assert!(v["blocked_until"].is_string());
    let (s, v) = app
        .post(
            "/security/blocklist",
            json!({"ip": "2001:db8:1::/48", "duration_secs": null}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "permanent");
    assert!(v["blocked_until"].is_null());

    let (_, v) = app.get("/security/blocklist").await;
    let ips: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["2001:db8:1::/48", "203.0.113.7"]);
    let (_, v) = app.get("/security/summary").await;
    assert_eq!(v["blocked_ips"], 2);

    // Bad input.
    let (s, v) = app
        .post(
            "/security/blocklist",
            json!({"ip": "1.2.3", "duration_secs": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["ip"]);
    let (s, v) = app
        .post(
            "/security/blocklist",
            json!({"ip": "1.2.3.4", "duration_secs": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["duration_secs"]);

    // Clear temporary keeps the permanent one.
    let (s, v) = app
        .post("/security/blocklist/clear-temporary", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["cleared"], 1);
    // Unblock the range, url-encoded; again → 404.
    let (s, _) = app.delete("/security/blocklist/2001:db8:1::%2F48").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = app.delete("/security/blocklist/2001:db8:1::%2F48").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_blocked");
    let (_, v) = app.get("/security/blocklist").await;
    assert_eq!(v["entries"], json!([]));

    let changes = app.changes.lock().unwrap().clone();
    assert!(changes.iter().any(
        |c| matches!(c, SecurityChange::Ban { ip, permanent: true, .. } if ip == "2001:db8:1::/48")
    ));
    assert!(changes.contains(&SecurityChange::Unblock {
        ip: "2001:db8:1::/48".into()
    }));
}

// ---------------------------------------------------------------------------------------
// audit, intrusions, anomalies
// ---------------------------------------------------------------------------------------

async fn page_all(app: &App, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = match &cursor {
            None => format!("/security/audit?{query}"),
            Some(c) => format!("/security/audit?{query}{sep}cursor={c}"),
        };
        let (s, v) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn audit_pages_newest_first_with_filters_and_search() {
    let app = start().await;
    fill_audit(&app.store, 1000).await;

    let (s, v) = app.get("/security/audit?limit=50").await;
    assert_eq!(s, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 50);
    assert_eq!(items[0]["id"], 1000);
    assert_eq!(items[49]["id"], 951);
    assert_eq!(items[0]["method"], "POST");
    assert!(items[0]["details"].is_object());

    // Every row exactly once, newest first.
    let all = page_all(&app, "limit=77").await;
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=1000).rev().collect::<Vec<_>>());

    // Filters as the CLI has them.
    let f = page_all(&app, "event_type=auth_failure&severity=medium").await;
    assert_eq!(f.len(), 200);
    assert!(f.iter().all(|r| r["event_type"] == "auth_failure"));
    let f = page_all(&app, "ip=10.0.0.7").await;
    assert_eq!(f.len(), 1);
    let f = page_all(&app, &format!("key_id=key_{:016x}", 3)).await;
    assert_eq!(f.len(), (0..1000).filter(|i| i % 7 == 3).count());
    // Text search: endpoint, request id, ip.
    let f = page_all(&app, "q=embeddings").await;
    assert_eq!(f.len(), 100);
    let f = page_all(&app, "q=req-0000123").await;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["request_id"], "req-0000123");
    let f = page_all(&app, "q=10.0.3.").await;
    assert_eq!(f.len(), 250);
    // `_` and `%` are literal in a search.
    assert!(page_all(&app, "q=%25").await.is_empty());
    // Time range: rows are one second apart.
    let first = all.last().unwrap()["at"].as_str().unwrap().to_owned();
    let t0 = chrono::DateTime::parse_from_rfc3339(&first).unwrap();
    let since = (t0 + chrono::Duration::seconds(100)).to_rfc3339();
    let until = (t0 + chrono::Duration::seconds(200)).to_rfc3339();
    let q = format!("since={}&until={}", urlenc(&since), urlenc(&until));
    let f = page_all(&app, &q).await;
    assert_eq!(f.len(), 100, "{q}");

    // Bad input.
    let (s, v) = app.get("/security/audit?cursor=zz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_cursor");
    let (s, v) = app
        .get(&format!("/security/audit?cursor={}", hex::encode("e:x|y")))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_cursor");
    let (s, v) = app.get("/security/audit?ip=10.0.0.999").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["ip"]);
    let (s, v) = app
        .get("/security/audit?severity=urgent&since=yesterday")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["severity"]);
    let (s, v) = app.get("/security/audit?since=yesterday").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["since"]);
    let (s, v) = app.get("/security/audit?limit=0").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["limit"]);
    let (s, v) = app.get("/security/audit?limit=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_query");

    let (_, v) = app.get("/security/summary").await;
    assert_eq!(v["audit_last_24h"], 1000);
}

/// A search with few matches on a log larger than one search range (100,000 ids):
/// pages may come back empty with a cursor, and paging to the end finds every match
/// exactly once.
#[tokio::test]
async fn searches_continue_across_bounded_ranges() {
    let app = start().await;
    fill_audit(&app.store, 210_000).await;
    let (s, v) = app.get("/security/audit?q=req-00001&limit=50").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"], json!([]), "the newest range has no match");
    assert!(v["next_cursor"].is_string());
    let all = page_all(&app, "q=req-00001&limit=50").await;
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (101..=200).rev().collect::<Vec<_>>());
    // Severity and event type together are bounded the same way, and complete.
    let (_, v) = app
        .get("/security/audit?event_type=auth_failure&severity=medium&limit=50")
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 50);
    let (_, v) = app
        .get("/security/audit?event_type=auth_success&severity=medium&limit=50")
        .await;
    assert_eq!(v["items"], json!([]));
    let n = page_all(&app, "event_type=auth_success&severity=medium&limit=500").await;
    assert!(n.is_empty());
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn audit_verify_and_export_stream() {
    let app = start().await;
    fill_audit(&app.store, 1200).await;
    let (s, v) = app.post("/security/audit/verify", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 1200);
    assert!(v["first_bad_id"].is_null());

    let r = app
        .http
        .get(app.url("/security/audit/export?format=jsonl&event_type=auth_failure"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with("attachment; filename=\"flm-audit-") && cd.ends_with(".jsonl\""),
        "{cd}"
    );
    let text = r.text().await.unwrap();
    let rows: Vec<flm_core::security::AuditRow> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 240);
    // Oldest first, with hashes anyone can re-check.
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert!(rows.iter().all(|r| r.compute_hash() == r.hash));

    let r = app
        .http
        .get(app.url("/security/audit/export?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1201);
    assert!(lines[0].starts_with("id,request_id,"));

    let (s, v) = app.get("/security/audit/export?format=xml").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&v), ["format"]);

    // A tampered row is reported with its id.
    let db = app._dir.path().join("security.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER audit_logs_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_logs SET status = 500 WHERE id = 700")
        .execute(&pool)
        .await
        .unwrap();
    let (s, v) = app.post("/security/audit/verify", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_id"], 700);
    assert!(v["message"].as_str().unwrap().contains("700"));
}

#[tokio::test]
async fn intrusions_and_anomalies_page_by_cursor() {
    let app = start().await;
    let ev = app.store.security_events();
    let now = Utc::now();
    for i in 0..130i64 {
        ev.insert_intrusion(&NewIntrusion {
            ip: if i % 2 == 0 {
                "198.51.100.1"
            } else {
                "198.51.100.2"
            }
            .into(),
            pattern: if i % 3 == 0 {
                "sql_injection"
            } else {
                "path_traversal"
            }
            .into(),
            score: i % 50,
            request_path: Some(format!("/x/{i}")),
            user_agent: None,
            method: Some("GET".into()),
            // Pairs of rows share a timestamp: the cursor must keep them apart.
            created_at: now - chrono::Duration::seconds(200 - i / 2),
        })
        .await
        .unwrap();
        ev.insert_anomaly(&NewAnomaly {
            ip: "198.51.100.3".into(),
            anomaly_type: if i % 2 == 0 {
                "request_flood"
            } else {
                "oversized_body"
            }
            .into(),
            score: 10,
            details: Some(json!({"i": i}).to_string()),
            created_at: now - chrono::Duration::seconds(200 - i),
        })
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, v) = app
            .get(&format!("/security/intrusions?limit=7&cursor={cursor}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for it in v["items"].as_array().unwrap() {
            seen.push(it["path"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 130);
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 130, "no row twice");
    assert_eq!(seen[0], "/x/129", "newest first");

    let (_, v) = app
        .get("/security/intrusions?limit=500&ip=198.51.100.1&pattern=sql_injection")
        .await;
    let n = (0..130).filter(|i| i % 2 == 0 && i % 3 == 0).count();
    assert_eq!(v["items"].as_array().unwrap().len(), n);
    assert!(v["next_cursor"].is_null());
    let (_, v) = app.get("/security/intrusions?min_score=45&limit=500").await;
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["score"].as_i64().unwrap() >= 45));

    let (s, v) = app
        .get("/security/anomalies?limit=100&anomaly_type=request_flood")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 65);
    assert!(v["items"][0]["details"].is_object());
    assert_eq!(v["items"][0]["kind"], "request_flood");

    let (s, v) = app
        .get(&format!(
            "/security/anomalies?cursor={}",
            hex::encode("a:5")
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_cursor");

    let (_, v) = app.get("/security/summary").await;
    assert_eq!(v["intrusions_last_24h"], 130);
    assert_eq!(v["anomalies_last_24h"], 130);
    assert_eq!(v["blocked_ips"], 0);
}

/// The timing of the app's audit pages at 1,000,000 rows (`bench/ui-audit-page.sh`
/// runs it in release mode; docs/benchmarks.md has the figures).
#[tokio::test]
#[ignore = "fills 1,000,000 audit rows; run by bench/ui-audit-page.sh"]
async fn audit_pages_at_one_million_rows() {
    let rows: usize = std::env::var("FLM_BENCH_AUDIT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let app = start().await;
    let t = Instant::now();
    fill_audit(&app.store, rows).await;
    println!("filled {rows} rows in {:.1} s", t.elapsed().as_secs_f64());

    async fn timed(app: &App, path: &str) -> (Duration, Value) {
        let t = Instant::now();
        let (s, v) = app.get(path).await;
        let d = t.elapsed();
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        (d, v)
    }
    let (d, _) = timed(&app, "/security/audit?limit=50").await;
    println!("first page (50 rows): {:.1} ms", d.as_secs_f64() * 1e3);
    let mut cursor = String::new();
    let mut last = Duration::ZERO;
    let t = Instant::now();
    for _ in 0..100 {
        let (d, v) = timed(&app, &format!("/security/audit?limit=50&cursor={cursor}")).await;
        last = d;
        cursor = v["next_cursor"].as_str().unwrap().to_owned();
    }
    println!(
        "page 100 via cursor: {:.1} ms (100 pages in {:.0} ms)",
        last.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    for q in [
        "event_type=auth_failure",
        "ip=10.0.3.7",
        "severity=medium&ip=10.0.3.5",
        "key_id=key_0000000000000003",
        "q=embeddings",
        "q=req-0000123",
        "since=2000-01-01T00%3A00%3A00Z",
        // Worst cases: a combination no row has (the event-type index is read to its
        // end), a search with no match (one bounded range per page).
        "event_type=auth_failure&severity=high",
        "q=no-such-text",
    ] {
        let (d, v) = timed(&app, &format!("/security/audit?limit=50&{q}")).await;
        println!(
            "filtered first page `{q}`: {:.1} ms ({} rows, more: {})",
            d.as_secs_f64() * 1e3,
            v["items"].as_array().unwrap().len(),
            !v["next_cursor"].is_null()
        );
    }
    // A whole search with no match, page after page to the end.
    let t = Instant::now();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (_, v) = timed(
            &app,
            &format!("/security/audit?limit=50&q=no-such-text&cursor={cursor}"),
        )
        .await;
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    println!(
        "search without match to the end: {pages} pages in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let (d, v) = timed(&app, "/security/summary").await;
    println!("summary: {:.1} ms ({v})", d.as_secs_f64() * 1e3);
}
