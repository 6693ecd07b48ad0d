//! `flm_guard::intrusion::{inspect, inspect_fields, fields_from_json}` and the
//! anomaly detector: no panic on any request, bounded and deduplicated findings,
//! split inspection equals full inspection, determinism.
#![no_main]

use std::net::IpAddr;

use flm_guard::anomaly::{AnomalyConfig, AnomalyDetector, RequestObservation, ResponseObservation};
use flm_guard::intrusion::{
    fields_from_json, inspect, inspect_fields, IntrusionConfig, IntrusionDetector, RequestFacts,
};
use libfuzzer_sys::fuzz_target;

const HEADER_NAMES: &[&str] = &[
    "User-Agent",
    "referer",
    "X-Forwarded-For",
    "accept",
    "sec-ch-ua",
    "Cookie",
    "x-custom",
    "origin",
];

fuzz_target!(|data: &[u8]| {
    // Layout: method \0 path \0 query \0 header values (\0-separated, cycling through
    // HEADER_NAMES) \x01 JSON body. Missing parts are empty.
    let (head, body) = match data.iter().position(|&b| b == 1) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut parts = head.split(|&b| b == 0);
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = parts
        .next()
        .map(|q| String::from_utf8_lossy(q).into_owned());
    let headers: Vec<(&str, &[u8])> = parts
        .enumerate()
        .take(80)
        .map(|(i, v)| (HEADER_NAMES[i % HEADER_NAMES.len()], v))
        .collect();

    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let owned = json.as_ref().map(fields_from_json).unwrap_or_default();
    assert!(owned.len() <= 64 + 128 * 3);
    // The raw body also goes in as a `model` string, like an attacker-chosen value.
    let body_text = String::from_utf8_lossy(body);
    let mut fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    fields.push(("model", &body_text));

    let facts = RequestFacts {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        fields: &fields,
    };
    let full = inspect(&facts);
    assert!(full.len() <= 64);
    for (i, f) in full.iter().enumerate() {
        assert_eq!(f.score, f.pattern.points());
        assert!(
            !full[..i]
                .iter()
                .any(|o| o.pattern == f.pattern && o.location == f.location),
            "duplicate finding {f:?}"
        );
    }
    assert_eq!(inspect(&facts), full, "inspect is deterministic");

    // Head first, then fields (how the proxy splits the work) gives the same findings
    // unless the 64-finding cap cut the full run.
    let head_only = inspect(&RequestFacts {
        fields: &[],
        ..facts
    });
    let mut split = head_only;
    split.extend(inspect_fields(&fields));
    if split.len() < 64 {
        assert_eq!(split, full);
    }

    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let now = u64::from_le_bytes(
        body.get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    );
    let mut ids = IntrusionDetector::new(IntrusionConfig::default());
    if !full.is_empty() {
        let _ = ids.observe(ip, &full, now);
    }
    let _ = ids.score(ip, now);

    let mut a = AnomalyDetector::new(AnomalyConfig::default());
    for k in 0..4u64 {
        let t = now.wrapping_add(k.wrapping_mul(997));
        let _ = a.on_request(
            ip,
            &RequestObservation {
                method: &method,
                path: &path,
                body_bytes: body.len() as u64,
                header_count: headers.len(),
                user_agent: headers.first().map(|(_, v)| *v),
                fingerprint: Some(flm_guard::anomaly::fingerprint(&method, &path, body)),
            },
            t,
        );
        let _ = a.on_response(
            ip,
            &ResponseObservation {
                status: u16::from_le_bytes([body.first().copied().unwrap_or(0), k as u8]),
                duration_ms: t,
                streaming: k % 2 == 0,
            },
            t,
        );
    }
    let _ = a.score_of(ip, now);
    a.sweep(now);
});
