//! The request metrics of `GET /metrics`: chats (streamed and not), embeddings and a
//! failed request through a running proxy in front of the vLLM emulator, then the
//! exposition text parsed and checked against what the clients saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::BTreeMap;

use flm_testkit::{EmulatedModel, EmulatorOptions};
use serde_json::{json, Value};

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().unwrap()
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').unwrap()),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never hold `",` (model ids and fixed words).
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push((name.to_owned(), map, value));
    }
    out
}

fn without_le(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = l.clone();
    l.remove("le");
    l
}

/// Checks every histogram of `family`: cumulative buckets, `+Inf` = `_count`, a
/// `_sum` per series; returns `(labels, count, sum)` per series.
fn histograms(samples: &[Sample], family: &str) -> Vec<(BTreeMap<String, String>, f64, f64)> {
    let bucket = format!("{family}_bucket");
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, l, v) in samples {
        if *n == bucket {
            let le = l["le"].as_str();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series.entry(without_le(l)).or_default().push((le, *v));
        }
    }
    let find = |suffix: &str, l: &BTreeMap<String, String>| {
        samples
            .iter()
            .find(|(n, sl, _)| *n == format!("{family}{suffix}") && sl == l)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {family}{suffix} for {l:?}"))
    };
    let mut out = Vec::new();
    for (l, buckets) in series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{family} {l:?} {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
        let count = find("_count", &l);
        assert_eq!(buckets.last().unwrap().1, count, "{family} {l:?}");
        let sum = find("_sum", &l);
        assert!(sum >= 0.0);
        out.push((l, count, sum));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_follow_the_requests() {
    // The metrics do not depend on the access log.
    flm_proxy::access_log::set_enabled(false);
    let (_engine, h) = common::vllm_with(EmulatorOptions::with_models([
        EmulatedModel::chat("chatty"),
        EmulatedModel::embedding("embed"),
    ]))
    .await;
    let models = h.models().await;
    let chat_model = models
        .iter()
        .find(|m| m.ends_with("chatty"))
        .unwrap()
        .clone();
    let embed_model = models
        .iter()
        .find(|m| m.ends_with("embed"))
        .unwrap()
        .clone();

    let (mut input, mut output) = (0u64, 0u64);
    for _ in 0..2 {
        let (status, v) = h
            .chat(json!({"model": chat_model, "max_tokens": 8,
                         "messages": [{"role": "user", "content": "Say hello to the metrics"}]}))
            .await;
        assert_eq!(status, 200, "{v}");
        input += v["usage"]["prompt_tokens"].as_u64().unwrap();
        output += v["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let (status, events) = h
        .stream(json!({"model": chat_model, "max_tokens": 8, "stream": true,
                       "stream_options": {"include_usage": true},
                       "messages": [{"role": "user", "content": "Stream a few words please"}]}))
        .await;
    assert_eq!(status, 200);
    let usage = events
        .iter()
        .rev()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .unwrap();
    input += usage["prompt_tokens"].as_u64().unwrap();
    output += usage["completion_tokens"].as_u64().unwrap();
    assert!(usage["completion_tokens"].as_u64().unwrap() > 1, "{usage}");

    let r = h
        .post("/v1/embeddings")
        .json(&json!({"model": embed_model, "input": "embed me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let embed_input = v["usage"]["prompt_tokens"].as_u64();
    // A failure: a model no engine serves.
    let r = h
        .post("/v1/chat/completions")
        .json(
            &json!({"model": "nobody/serves-this", "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let err: Value = r.json().await.unwrap();
    let err_code = err["error"]["code"].as_str().unwrap().to_owned();

    let r = h
        .http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    if let Ok(dir) = std::env::var("FLM_METRICS_DUMP") {
        std::fs::write(format!("{dir}/metrics.txt"), &text).unwrap();
    }
    // `promtool check metrics`, when given (`FLM_PROMTOOL=/path/to/promtool`): only
    // the two historical counter names (kept unchanged) may draw lint remarks.
    if let Ok(promtool) = std::env::var("FLM_PROMTOOL") {
        use std::io::Write as _;
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for line in report.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.starts_with("flm_proxy_anomalies_detected ")
                    || line.starts_with("flm_proxy_intrusions_detected "),
                "promtool: {report}"
            );
        }
    }
    // The old counters are still there.
    for old in [
        "flm_proxy_audit_written_total",
        "flm_proxy_intrusions_detected",
    ] {
        assert!(text.contains(&format!("# TYPE {old} ")), "{old}: {text}");
    }
    // No key id, key or address anywhere in the labels.
    let key_id = h
        .store
        .api_keys()
        .list()
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .id;
    for secret in [key_id.as_str(), h.key.as_str(), "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let samples = parse(&text);

    let chat = |l: &BTreeMap<String, String>| {
        l["gen_ai_operation_name"] == "chat"
            && l["gen_ai_request_model"] == chat_model
            && l["gen_ai_provider_name"] == "vllm"
            && !l.contains_key("error_type")
    };
    let durations = histograms(&samples, "gen_ai_server_request_duration_seconds");
    let d = durations.iter().find(|(l, _, _)| chat(l)).unwrap();
    assert_eq!(d.1, 3.0, "{durations:?}");
    assert!(d.2 > 0.0);
    let e = durations
        .iter()
        .find(|(l, _, _)| l["gen_ai_operation_name"] == "embeddings")
        .unwrap();
    assert_eq!(e.0["gen_ai_request_model"], embed_model);
    assert_eq!(e.1, 1.0);
    let failed = durations
        .iter()
        .find(|(l, _, _)| l.get("error_type") == Some(&err_code))
        .unwrap_or_else(|| panic!("{err_code}: {durations:?}"));
    assert_eq!(failed.0["gen_ai_operation_name"], "chat");
    assert_eq!(failed.1, 1.0);

    let ttft = histograms(&samples, "gen_ai_server_time_to_first_token_seconds");
    assert_eq!(
        ttft.iter().find(|(l, _, _)| chat(l)).unwrap().1,
        1.0,
        "{ttft:?}"
    );
    let tpot = histograms(&samples, "gen_ai_server_time_per_output_token_seconds");
    assert_eq!(
        tpot.iter().find(|(l, _, _)| chat(l)).unwrap().1,
        1.0,
        "{tpot:?}"
    );

    let tokens = histograms(&samples, "gen_ai_client_token_usage");
    let of = |ty: &str| {
        tokens
            .iter()
            .find(|(l, _, _)| chat(l) && l["gen_ai_token_type"] == ty)
            .unwrap()
            .clone()
    };
    assert_eq!(of("input").2, input as f64, "{tokens:?}");
    assert_eq!(of("output").2, output as f64, "{tokens:?}");
    assert_eq!(of("input").1, 3.0);
    if let Some(n) = embed_input {
        let e = tokens
            .iter()
            .find(|(l, _, _)| {
                l["gen_ai_operation_name"] == "embeddings" && l["gen_ai_token_type"] == "input"
            })
            .unwrap();
        assert_eq!(e.2, n as f64);
    }
    // Embeddings have no output tokens.
    assert!(!tokens.iter().any(|(l, _, _)| {
        l["gen_ai_operation_name"] == "embeddings" && l["gen_ai_token_type"] == "output"
    }));

    let requests: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "flm_requests_total")
        .collect();
    let count = |route: &str, outcome: &str| -> f64 {
        requests
            .iter()
            .filter(|(_, l, _)| l["route"] == route && l["outcome"] == outcome)
            .map(|s| s.2)
            .sum()
    };
    assert_eq!(count("/v1/chat/completions", "ok"), 3.0, "{requests:?}");
    assert_eq!(count("/v1/chat/completions", "error"), 1.0, "{requests:?}");
    assert_eq!(count("/v1/embeddings", "ok"), 1.0, "{requests:?}");
    let ok_chat = requests
        .iter()
        .find(|(_, l, _)| l["route"] == "/v1/chat/completions" && l["outcome"] == "ok")
        .unwrap();
    assert_eq!(ok_chat.1["engine"], "vllm");
    assert_eq!(ok_chat.1["model"], chat_model);
    assert_eq!(ok_chat.1["status_class"], "2xx");
    for (_, l, _) in &requests {
        assert_eq!(
            l.keys().map(String::as_str).collect::<Vec<_>>(),
            ["engine", "model", "outcome", "route", "status_class"]
        );
    }
    h.stop().await;
}
