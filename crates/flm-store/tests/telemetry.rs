//! Usage aggregates and engine health history on a real `config.db`.

use std::collections::HashMap;

use chrono::{Duration, Utc};
use flm_core::health::{HealthQuery, HealthSample};
use flm_core::usage::{RequestOutcome, UsageCounts, UsageGroupBy, UsageKey};
use flm_store::{Store, StorePaths};

fn key(minute: i64, key_id: &str, model: &str) -> UsageKey {
    UsageKey {
        minute,
        key_id: key_id.into(),
        model: model.into(),
        engine_id: "e1".into(),
    }
}

fn counts(n: u64, latency_ms: u64, error: bool) -> UsageCounts {
    let mut c = UsageCounts::default();
    for _ in 0..n {
        RequestOutcome {
            error,
            tokens: Some((3, 5)),
            latency_ms,
            ttft_ms: Some(latency_ms / 2),
            ..Default::default()
        }
        .add_to(&mut c);
    }
    c
}

#[tokio::test]
async fn usage_upserts_sum_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let usage = store.usage();
    let m = 1_800_000_000_i64 / 60 * 60;
    let mut first = HashMap::new();
    first.insert(key(m, "key_a", "flm://e1/x"), counts(2, 40, false));
    first.insert(key(m + 60, "key_b", "flm://e1/y"), counts(1, 400, true));
    usage.upsert(&first).await.unwrap();
    // The same minute flushed again adds up.
    let mut second = HashMap::new();
    second.insert(key(m, "key_a", "flm://e1/x"), counts(3, 60, false));
    usage.upsert(&second).await.unwrap();

    let by_key = usage.groups(m, m + 3600, UsageGroupBy::Key).await.unwrap();
    assert_eq!(by_key.len(), 2);
    let (g, a) = &by_key[0];
    assert_eq!(g, "key_a");
    assert_eq!(
        (a.requests, a.errors, a.tokens_in, a.tokens_out),
        (5, 0, 15, 25)
    );
    assert_eq!(a.latency.count(), 5);
    assert_eq!(a.ttft.count(), 5);
    assert_eq!(by_key[1].1.errors, 1);
    let by_engine = usage
        .groups(m, m + 3600, UsageGroupBy::Engine)
        .await
        .unwrap();
    assert_eq!(by_engine.len(), 1);
    assert_eq!(by_engine[0].1.requests, 6);

    let series = usage.series(m, m + 3600, 60).await.unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!((series[0].0, series[0].1.requests), (m, 5));
    let coarse = usage.series(m - 900, m + 3600, 3600).await.unwrap();
    assert_eq!(coarse.iter().map(|(_, c)| c.requests).sum::<u64>(), 6);

    assert_eq!(usage.prune(m + 60).await.unwrap(), 1);
    assert_eq!(usage.series(m, m + 3600, 60).await.unwrap().len(), 1);
}

#[tokio::test]
async fn health_samples_list_count_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StorePaths::in_dir(dir.path())).await.unwrap();
    let log = store.health_log();
    let now = Utc::now();
    let s = |mins: i64, engine: &str, status: &str, lat: Option<u64>| HealthSample {
        id: None,
        at: now - Duration::minutes(mins),
        engine_id: engine.into(),
        model: None,
        status: status.into(),
        latency_ms: lat,
        error: (status == "down").then(|| "connection refused".into()),
        error_rate: if status == "down" { 1.0 } else { 0.0 },
    };
    log.insert(&[
        s(60 * 24 * 31, "a", "healthy", Some(1)),
        s(3, "a", "healthy", Some(10)),
        s(2, "a", "healthy", Some(20)),
        s(1, "a", "down", None),
        s(1, "b", "degraded", Some(900)),
    ])
    .await
    .unwrap();
    let q = HealthQuery {
        since: now - Duration::hours(24),
        engine_id: Some("a".into()),
        model: None,
        limit: 2,
    };
    let list = log.list(&q).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].status, "down");
    assert_eq!(list[0].error.as_deref(), Some("connection refused"));
    assert!(list[0].id.is_some());
    let counts = log.counts(&q).await.unwrap();
    let total: u64 = counts.iter().map(|c| c.samples).sum();
    assert_eq!(total, 3, "{counts:?}");
    assert_eq!(log.prune(now - Duration::days(30)).await.unwrap(), 1);
}
