//! The app's model-profile and prompt-template endpoints over real sockets, in front of
//! a real `security.db`: shapes, field errors, conflicts, unknown ids, preview.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use flm_core::ports::SystemClock;
use flm_core::services::KeyService;
use flm_proxy::ui_api::profiles::{router, ProfilesApiDeps};
use flm_store::{Store, StorePaths};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = http.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    assert!(r.headers().contains_key("x-request-id"));
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    if !status.is_success() {
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    (status, v)
}

#[tokio::test]
async fn profiles_and_prompts_through_the_app_api() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let key = KeyService::new(store.api_keys(), Arc::new(SystemClock))
        .create("support")
        .await
        .unwrap();
    let app = axum::Router::new()
        .nest(
            "/api/v1",
            router(ProfilesApiDeps::new(store.profiles(), store.api_keys())),
        )
        .layer(axum::middleware::from_fn(
            flm_proxy::ui_api::with_request_id,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    use reqwest::Method as M;
    let u = |p: &str| format!("{base}{p}");

    let (s, v) = call(&http, M::GET, u("/model-profiles"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["profiles"], json!([]));
    assert!(v["parameter_names"]
        .as_array()
        .unwrap()
        .contains(&json!("temperature")));

    let (s, p) = call(
        &http,
        M::POST,
        u("/model-profiles"),
        Some(json!({
            "model": "flm://llama/tiny", "label": "fast", "parameters": {"temperature": 0.3}
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["model_id"], "profile/fast");
    assert_eq!(p["engine_id"], "llama");
    let id = p["id"].as_str().unwrap().to_owned();

    // Field errors, each on its field.
    for (body, code, field) in [
        (
            json!({"model": "x", "label": "a b"}),
            "invalid_label",
            "label",
        ),
        (
            json!({"model": "profile/fast", "label": "b"}),
            "invalid_model",
            "model",
        ),
        (
            json!({"model": "x", "label": "b", "parameters": {"top_p": 3}}),
            "invalid_parameters",
            "parameters",
        ),
    ] {
        let (s, v) = call(&http, M::POST, u("/model-profiles"), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["error"]["fields"][0]["path"], field);
    }
    let (s, v) = call(
        &http,
        M::POST,
        u("/model-profiles"),
        Some(json!({"model": "x", "label": "fast"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "profile_exists");
    // Replace by id keeps the id.
    let (s, v) = call(
        &http,
        M::POST,
        u("/model-profiles"),
        Some(json!({"id": id, "model": "tiny", "label": "fast"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["target"], "tiny");
    let (s, _) = call(&http, M::DELETE, u(&format!("/model-profiles/{id}")), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&http, M::DELETE, u(&format!("/model-profiles/{id}")), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");

    // Templates.
    let (s, v) = call(
        &http,
        M::PUT,
        u("/prompts"),
        Some(json!({"scope": "model", "target": "flm://llama/tiny", "text": "Model rules."})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["api_id"], "model:flm://llama/tiny");
    let (s, v) = call(
        &http,
        M::PUT,
        u("/prompts"),
        Some(json!({"scope": "key", "target": key.metadata.id, "text": "Key rules."})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["key_label"], "support");
    let (s, _) = call(
        &http,
        M::PUT,
        u("/prompts"),
        Some(json!({"scope": "default", "text": "Default."})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&http, M::GET, u("/prompts"), None).await;
    assert_eq!(v["max_chars"], 16384);
    let ids: Vec<&str> = v["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["api_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "default",
            format!("key:{}", key.metadata.id).as_str(),
            "model:flm://llama/tiny"
        ]
    );

    for (body, code, field) in [
        (
            json!({"scope": "key", "target": "key_0000000000000000", "text": "x"}),
            "invalid_target",
            "target",
        ),
        (
            json!({"scope": "model", "target": "", "text": "x"}),
            "invalid_target",
            "target",
        ),
        (
            json!({"scope": "default", "text": "x".repeat(16_385)}),
            "invalid_template",
            "text",
        ),
        (
            json!({"scope": "default", "text": "  "}),
            "invalid_template",
            "text",
        ),
    ] {
        let (s, v) = call(&http, M::PUT, u("/prompts"), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], code);
        assert_eq!(v["error"]["fields"][0]["path"], field);
    }

    let (s, v) = call(
        &http,
        M::POST,
        u("/prompts/preview"),
        Some(json!({"text": "Rules.", "message": "Hi"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["messages"],
        json!([{"role": "system", "content": "Rules."}, {"role": "user", "content": "Hi"}])
    );

    let enc = "model%3Aflm%3A%2F%2Fllama%2Ftiny";
    let (s, _) = call(&http, M::DELETE, u(&format!("/prompts/{enc}")), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&http, M::DELETE, u(&format!("/prompts/{enc}")), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}
