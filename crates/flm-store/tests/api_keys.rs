//! `api_keys` repository tests on real files in temporary directories.

// clippy's allow-unwrap-in-tests covers `#[test]` functions, not the helpers below.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use flm_core::key_scope::{KeyBudget, KeyScope, RouteClass};
use flm_core::keys::{self, ApiKeyRecord};
use flm_core::RepoError;
use flm_store::{DbFile, Store, StorePaths};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

/// Stored timestamps keep milliseconds.
fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn key(label: &str, at: DateTime<Utc>) -> (ApiKeyRecord, String) {
    keys::generate(label, at).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw bytes of every file in `dir` (databases, `-wal`, `-shm`), by name.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    out.sort();
    out
}

async fn open(dir: &Path) -> (StorePaths, Store) {
    let paths = StorePaths::in_dir(dir);
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    (paths, store)
}

#[tokio::test]
async fn insert_list_revoke_rotate_round_trip_and_persist() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    assert_eq!(repo.list().await.unwrap(), vec![]);

    let t0 = now_ms();
    let (a, _) = key("ci", t0);
    let (b, _) = key("laptop", t0 + Duration::seconds(1));
    let (c, _) = key("ci", t0 + Duration::seconds(2)); // labels are not unique
                                                       // Inserted out of order: listed oldest first.
    repo.insert(&b).await.unwrap();
    repo.insert(&a).await.unwrap();
    repo.insert(&c).await.unwrap();
    assert_eq!(
        repo.list().await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );

    // Revoke: only active keys.
    let t1 = t0 + Duration::seconds(10);
    assert!(repo.revoke(&b.id, t1).await.unwrap());
    assert!(!repo.revoke(&b.id, t1 + Duration::seconds(1)).await.unwrap());
    assert!(!repo.revoke("key_0000000000000000", t1).await.unwrap());
    let b_revoked = ApiKeyRecord {
        revoked_at: Some(t1),
        ..b.clone()
    };
    assert_eq!(
        repo.list().await.unwrap(),
        vec![a.clone(), b_revoked.clone(), c.clone()]
    );

    // Rotate: the old key is revoked at `at`, the new one stored.
    let t2 = t0 + Duration::seconds(20);
    let (d, _) = key("ci", t2);
    assert!(repo.rotate(&a.id, &d, t2).await.unwrap());
    let a_revoked = ApiKeyRecord {
        revoked_at: Some(t2),
        ..a.clone()
    };
    let expected = vec![a_revoked, b_revoked, c, d];
    assert_eq!(repo.list().await.unwrap(), expected);

    // The hash column holds the lower-case hex SHA-256 digest, nothing else.
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT id, hash FROM api_keys ORDER BY created_at")
            .fetch_all(store.security_pool())
            .await
            .unwrap();
    for ((id, hash), rec) in stored.iter().zip(&expected) {
        assert_eq!(id, &rec.id);
        assert_eq!(hash, &hex(&rec.digest));
    }

    // Everything survives a reopen.
    store.close().await;
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.api_keys().list().await.unwrap(), expected);
    store.close().await;
}

#[tokio::test]
async fn rotate_of_a_revoked_or_unknown_key_changes_nothing() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t0 = now_ms();
    let (a, _) = key("a", t0);
    let (b, _) = key("b", t0);
    repo.insert(&a).await.unwrap();
    repo.insert(&b).await.unwrap();
    assert!(repo.revoke(&a.id, t0).await.unwrap());
    let before = repo.list().await.unwrap();
    let fp = repo.fingerprint().await.unwrap();

    let (new, _) = key("new", t0 + Duration::seconds(1));
    for old in [a.id.as_str(), "key_ffffffffffffffff", ""] {
        assert!(!repo.rotate(old, &new, t0).await.unwrap(), "{old}");
        assert_eq!(repo.list().await.unwrap(), before, "{old}");
        assert_eq!(repo.fingerprint().await.unwrap(), fp, "{old}");
    }

    // A rotation whose insert fails rolls the revocation back: one transaction.
    let clash = ApiKeyRecord {
        id: a.id.clone(),
        ..new.clone()
    };
    assert!(matches!(
        repo.rotate(&b.id, &clash, t0).await,
        Err(RepoError::Validation(_))
    ));
    let same_digest = ApiKeyRecord {
        digest: a.digest,
        ..new.clone()
    };
    assert!(matches!(
        repo.rotate(&b.id, &same_digest, t0).await,
        Err(RepoError::Validation(_))
    ));
    assert_eq!(repo.list().await.unwrap(), before);
    assert_eq!(repo.fingerprint().await.unwrap(), fp);
    assert!(repo.list().await.unwrap()[1].revoked_at.is_none());

    // And the store is still usable afterwards (no transaction left open).
    assert!(repo.rotate(&b.id, &new, t0).await.unwrap());
    assert_eq!(repo.list().await.unwrap().len(), 3);
    store.close().await;
}

#[tokio::test]
async fn fingerprint_changes_on_every_write_and_only_then() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let mut seen = vec![repo.fingerprint().await.unwrap()];
    fn check(fp: String, seen: &mut Vec<String>) {
        assert!(!seen.contains(&fp), "fingerprint {fp} repeated: {seen:?}");
        seen.push(fp);
    }

    // Identical timestamps everywhere: the counts alone must tell writes apart.
    let t = now_ms();
    let (a, _) = key("a", t);
    let (b, _) = key("b", t);
    let (c, _) = key("c", t);
    repo.insert(&a).await.unwrap();
    check(repo.fingerprint().await.unwrap(), &mut seen);
    repo.insert(&b).await.unwrap();
    check(repo.fingerprint().await.unwrap(), &mut seen);
    assert!(repo.revoke(&a.id, t).await.unwrap());
    check(repo.fingerprint().await.unwrap(), &mut seen);
    assert!(repo.rotate(&b.id, &c, t).await.unwrap());
    check(repo.fingerprint().await.unwrap(), &mut seen);

    // Stable while nothing is written (reads, refused writes, no-op writes).
    let fp = seen.last().unwrap().clone();
    repo.list().await.unwrap();
    assert!(!repo.revoke(&a.id, t).await.unwrap());
    assert!(repo.insert(&c).await.is_err());
    for _ in 0..3 {
        assert_eq!(repo.fingerprint().await.unwrap(), fp);
    }
    // Another handle on the same store sees the same value.
    assert_eq!(store.api_keys().fingerprint().await.unwrap(), fp);
    store.close().await;
}

#[tokio::test]
async fn no_plaintext_key_is_ever_written_to_disk() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t = now_ms();

    let mut plains = Vec::new();
    let mut records = Vec::new();
    for i in 0..20 {
        let (rec, plain) = key(&format!("key {i}"), t + Duration::milliseconds(i));
        repo.insert(&rec).await.unwrap();
        plains.push(plain);
        records.push(rec);
    }
    // Revocations and rotations too.
    assert!(repo.revoke(&records[0].id, t).await.unwrap());
    for i in 1..4 {
        let (rec, plain) = key("rotated", t + Duration::seconds(i));
        let old = records[usize::try_from(i).unwrap()].id.clone();
        assert!(repo.rotate(&old, &rec, t).await.unwrap());
        plains.push(plain);
        records.push(rec);
    }
    assert_eq!(repo.list().await.unwrap().len(), records.len());

    let assert_clean = |files: &[(String, Vec<u8>)], when: &str| {
        assert!(files.iter().any(|(n, _)| n == "security.db"), "{when}");
        for plain in &plains {
            let (_, secret) = plain.rsplit_once('_').unwrap();
            assert_eq!(secret.len(), 32);
            for (name, bytes) in files {
                assert!(
                    !contains(bytes, plain.as_bytes()),
                    "{when}: plaintext key found in {name}"
                );
                assert!(
                    !contains(bytes, secret.as_bytes()),
                    "{when}: key secret found in {name}"
                );
            }
        }
        // The scan does find what is stored: the digests are there.
        for rec in &records {
            let digest = hex(&rec.digest);
            assert!(
                files.iter().any(|(_, b)| contains(b, digest.as_bytes())),
                "{when}: digest of {} not found",
                rec.id
            );
        }
    };

    // While open, the latest writes live in security.db-wal.
    let files = all_files(tmp.path());
    assert!(
        files
            .iter()
            .any(|(n, b)| n == "security.db-wal" && !b.is_empty()),
        "expected a non-empty WAL: {:?}",
        files.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
    );
    assert_clean(&files, "store open");

    store.close().await;
    assert_clean(&all_files(tmp.path()), "store closed");

    // The -wal / -shm files, if SQLite left them, are covered too.
    for suffix in ["-wal", "-shm"] {
        let mut p = paths.security_db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            for plain in &plains {
                assert!(!contains(&bytes, plain.as_bytes()));
            }
        }
    }
}

#[tokio::test]
async fn duplicates_and_empty_fields_are_validation_errors() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t = now_ms();
    let (a, _) = key("a", t);
    repo.insert(&a).await.unwrap();

    let (other, _) = key("b", t);
    let same_id = ApiKeyRecord {
        id: a.id.clone(),
        ..other.clone()
    };
    match repo.insert(&same_id).await {
        Err(RepoError::Validation(msg)) => {
            assert!(
                msg.contains(&a.id) && msg.contains("already exists"),
                "{msg}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let same_digest = ApiKeyRecord {
        digest: a.digest,
        ..other.clone()
    };
    match repo.insert(&same_digest).await {
        Err(RepoError::Validation(msg)) => {
            assert!(msg.contains("digest already exists"), "{msg}");
            assert!(!msg.contains(&hex(&a.digest)), "{msg}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    for bad in [
        ApiKeyRecord {
            id: " ".into(),
            ..other.clone()
        },
        ApiKeyRecord {
            label: String::new(),
            ..other.clone()
        },
    ] {
        assert!(matches!(
            repo.insert(&bad).await,
            Err(RepoError::Validation(_))
        ));
    }
    assert_eq!(repo.list().await.unwrap(), vec![a]);
    store.close().await;
}

#[tokio::test]
async fn rows_with_a_malformed_hash_or_timestamp_are_skipped_not_fatal() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t = now_ms();
    let (good, _) = key("good", t);
    repo.insert(&good).await.unwrap();
    let long = "a".repeat(64);
    let short = "a".repeat(63);
    let bad_hex = format!("{}g", "a".repeat(63));
    let other = "b".repeat(64);
    let rows = [
        // A legacy Argon2 PHC string, a non-hex digest, wrong lengths.
        (
            "key_1",
            "$argon2id$v=19$m=19456,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "2026-01-01T00:00:00.000Z",
            None,
        ),
        ("key_2", bad_hex.as_str(), "2026-01-01T00:00:00.000Z", None),
        ("key_3", short.as_str(), "2026-01-01T00:00:00.000Z", None),
        // Good hash, unreadable timestamps.
        ("key_4", long.as_str(), "yesterday", None),
        (
            "key_5",
            other.as_str(),
            "2026-01-01T00:00:00.000Z",
            Some("never"),
        ),
    ];
    for (id, hash, created, revoked) in rows {
        sqlx::query("INSERT INTO api_keys (id, label, hash, created_at, revoked_at) VALUES (?, 'x', ?, ?, ?)")
            .bind(id)
            .bind(hash)
            .bind(created)
            .bind(revoked)
            .execute(store.security_pool())
            .await
            .unwrap();
    }
    // Upper-case hex is still a digest; SQLite's datetime form is accepted.
    let upper = ApiKeyRecord {
        id: "key_6".into(),
        label: "x".into(),
        digest: [0xab; 32],
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        revoked_at: None,
        scope: KeyScope::unscoped(),
        expires_at: None,
        budget: KeyBudget::default(),
    };
    sqlx::query("INSERT INTO api_keys (id, label, hash, created_at) VALUES ('key_6', 'x', ?, '2026-01-01 00:00:00')")
        .bind("AB".repeat(32))
        .execute(store.security_pool())
        .await
        .unwrap();

    assert_eq!(repo.list().await.unwrap(), vec![upper, good]);
    store.close().await;
}

#[tokio::test]
async fn read_only_security_db_refuses_writes_and_stays_untouched() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let t = now_ms();
    let (a, _) = key("a", t);
    store.api_keys().insert(&a).await.unwrap();
    store.close().await;

    // A newer FLM applied a security.db migration this build does not have.
    let mut conn = SqliteConnectOptions::new()
        .filename(&paths.security_db)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00112233', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let bytes = std::fs::read(&paths.security_db).unwrap();

    let store = Store::open(&paths).await.unwrap();
    let reason = store
        .read_only_reason_of(DbFile::Security)
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("security.db migration failed: "),
        "{reason}"
    );
    let ro = Err(RepoError::ReadOnlyMode(reason));
    let repo = store.api_keys();

    // Reads work.
    assert_eq!(repo.list().await.unwrap(), vec![a.clone()]);
    let fp = repo.fingerprint().await.unwrap();

    // Writes are refused before touching the database, even invalid ones.
    let (b, _) = key("b", t);
    assert_eq!(repo.insert(&b).await, ro);
    assert_eq!(repo.insert(&a).await, ro);
    assert_eq!(repo.revoke(&a.id, t).await, ro.clone().map(|()| false));
    assert_eq!(
        repo.revoke("key_unknown", t).await,
        ro.clone().map(|()| false)
    );
    assert_eq!(repo.rotate(&a.id, &b, t).await, ro.clone().map(|()| false));
    assert_eq!(repo.rotate("key_unknown", &b, t).await, ro.map(|()| false));

    assert_eq!(repo.list().await.unwrap(), vec![a]);
    assert_eq!(repo.fingerprint().await.unwrap(), fp);
    store.close().await;
    assert_eq!(std::fs::read(&paths.security_db).unwrap(), bytes);
}

#[tokio::test]
async fn scopes_and_expiry_round_trip_update_and_fail_closed() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t = now_ms();
    let (plain, _) = key("plain", t);
    let (scoped, _) = key("scoped", t);
    let scoped = ApiKeyRecord {
        scope: KeyScope::new(
            Some(vec!["flm://ollama-default/*".into(), "*llama*".into()]),
            Some(vec![RouteClass::Embeddings, RouteClass::Chat]),
        )
        .unwrap(),
        expires_at: Some(t + Duration::days(30)),
        budget: KeyBudget::new(Some(1000), Some(1_000_000)).unwrap(),
        ..scoped
    };
    repo.insert(&plain).await.unwrap();
    repo.insert(&scoped).await.unwrap();
    assert_eq!(
        repo.list().await.unwrap(),
        vec![plain.clone(), scoped.clone()]
    );
    assert_eq!(repo.get(&scoped.id).await.unwrap(), Some(scoped.clone()));
    // The columns hold plain JSON arrays and the usual timestamp text.
    let (models, routes, expires): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT models, routes, expires_at FROM api_keys WHERE id = ?")
            .bind(&scoped.id)
            .fetch_one(store.security_pool())
            .await
            .unwrap();
    assert_eq!(
        models.as_deref(),
        Some(r#"["flm://ollama-default/*","*llama*"]"#)
    );
    assert_eq!(routes.as_deref(), Some(r#"["chat","embeddings"]"#));
    assert!(expires.unwrap().ends_with('Z'));

    // update_access replaces both, changes the fingerprint, and refuses revoked keys.
    let fp = repo.fingerprint().await.unwrap();
    let narrower = KeyScope::new(None, Some(vec![RouteClass::Models])).unwrap();
    assert!(repo
        .update_access(&plain.id, &narrower, None)
        .await
        .unwrap());
    let fp2 = repo.fingerprint().await.unwrap();
    assert_ne!(fp, fp2);
    assert_eq!(repo.get(&plain.id).await.unwrap().unwrap().scope, narrower);
    assert!(repo
        .update_access(&plain.id, &KeyScope::unscoped(), None)
        .await
        .unwrap());
    assert_ne!(repo.fingerprint().await.unwrap(), fp2);
    assert!(repo.revoke(&plain.id, t).await.unwrap());
    assert!(!repo
        .update_access(&plain.id, &narrower, None)
        .await
        .unwrap());
    assert!(!repo
        .update_access("key_ffffffffffffffff", &narrower, None)
        .await
        .unwrap());

    // Unreadable scope or expiry: the key is skipped (never accepted unlimited).
    for (i, (models, routes, expires)) in [
        (Some("not json"), None, None),
        (Some("[]"), None, None),
        (None, Some(r#"["chat","bogus"]"#), None),
        (None, None, Some("someday")),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query("INSERT INTO api_keys (id, label, hash, models, routes, expires_at) VALUES (?, 'bad', ?, ?, ?, ?)")
            .bind(format!("key_bad{i}"))
            .bind(format!("{i}").repeat(64))
            .bind(models)
            .bind(routes)
            .bind(expires)
            .execute(store.security_pool())
            .await
            .unwrap();
    }
    let ids: Vec<String> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, vec![plain.id.clone(), scoped.id.clone()]);
    store.close().await;

    // Survives a reopen.
    let store = Store::open(&paths).await.unwrap();
    assert_eq!(
        store.api_keys().get(&scoped.id).await.unwrap(),
        Some(scoped)
    );
    store.close().await;
}

#[tokio::test]
async fn keys_stored_before_the_scope_migration_stay_unscoped_and_active() {
    let tmp = TempDir::new().unwrap();
    let (paths, store) = open(tmp.path()).await;
    let (old, _) = key("old", now_ms());
    store.api_keys().insert(&old).await.unwrap();
    store.close().await;

    // Back to the schema before `20261206000100_api_key_scopes`.
    let mut conn = SqliteConnectOptions::new()
        .filename(&paths.security_db)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP INDEX idx_api_keys_expires_at; \
         ALTER TABLE api_keys DROP COLUMN models; \
         ALTER TABLE api_keys DROP COLUMN routes; \
         ALTER TABLE api_keys DROP COLUMN expires_at; \
         ALTER TABLE api_keys DROP COLUMN tpm; \
         ALTER TABLE api_keys DROP COLUMN monthly_tokens; \
         DROP TABLE api_key_token_usage; \
         DELETE FROM _sqlx_migrations WHERE version = 20261206000100",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    let listed = store.api_keys().list().await.unwrap();
    assert_eq!(listed, vec![old.clone()]);
    assert!(listed[0].scope.is_unscoped());
    assert_eq!(listed[0].expires_at, None);
    store.close().await;
}

#[tokio::test]
async fn budgets_and_monthly_token_counts() {
    let tmp = TempDir::new().unwrap();
    let (_paths, store) = open(tmp.path()).await;
    let repo = store.api_keys();
    let t = now_ms();
    let (a, _) = key("a", t);
    repo.insert(&a).await.unwrap();
    let fp = repo.fingerprint().await.unwrap();
    let budget = KeyBudget::new(Some(500), None).unwrap();
    assert!(repo.update_budget(&a.id, &budget).await.unwrap());
    assert_ne!(repo.fingerprint().await.unwrap(), fp);
    assert_eq!(repo.get(&a.id).await.unwrap().unwrap().budget, budget);

    assert_eq!(repo.month_tokens(&a.id, "2026-12").await.unwrap(), 0);
    repo.add_month_tokens(&[
        (a.id.clone(), "2026-12".into(), 40),
        (a.id.clone(), "2026-11".into(), 7),
    ])
    .await
    .unwrap();
    repo.add_month_tokens(&[(a.id.clone(), "2026-12".into(), 2)])
        .await
        .unwrap();
    assert_eq!(repo.month_tokens(&a.id, "2026-12").await.unwrap(), 42);
    assert_eq!(repo.month_tokens(&a.id, "2026-11").await.unwrap(), 7);

    // A rotation carries the counts to the new key (a quota is not reset by it).
    let (b, _) = key("b", t);
    assert!(repo.rotate(&a.id, &b, t).await.unwrap());
    assert_eq!(repo.month_tokens(&b.id, "2026-12").await.unwrap(), 42);

    // A budget below 1 written by hand: the key is skipped.
    sqlx::query("UPDATE api_keys SET tpm = 0 WHERE id = ?")
        .bind(&b.id)
        .execute(store.security_pool())
        .await
        .unwrap();
    assert_eq!(repo.get(&b.id).await.unwrap(), None);
    store.close().await;
}
