//! Store tests on real files in temporary directories.

// clippy's allow-unwrap-in-tests covers `#[test]` functions, not the helpers below.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use flm_core::ports::{CachedDetection, EngineEndpoint};
use flm_core::{
    EngineCapabilities, EngineId, EngineKind, EngineSource, EngineState, EngineStatus, RepoError,
};
use flm_store::{DbFile, Store, StorePaths};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use tempfile::TempDir;

fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn engine(id: &str, kind: EngineKind) -> EngineState {
    EngineState {
        id: EngineId::parse(id).unwrap(),
        kind,
        name: kind.display_name().to_owned(),
        version: Some("1.2.3".into()),
        status: EngineStatus::RunningHealthy { latency_ms: 12 },
        base_url: Some("http://127.0.0.1:11434".into()),
        binary_path: None,
        source: EngineSource::Default,
        capabilities: EngineCapabilities::default(),
        model_count: Some(2),
        recent_degraded: vec![false],
        checked_at: Utc::now(),
    }
}

fn endpoint(id: &str, url: &str) -> EngineEndpoint {
    EngineEndpoint {
        id: EngineId::parse(id).unwrap(),
        kind: EngineKind::Vllm,
        base_url: url.to_owned(),
        created_at: now_ms(),
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A raw connection, bypassing the store, for setting up odd states.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

async fn pragma(store: &Store, file: DbFile, name: &str) -> String {
    let pool = match file {
        DbFile::Config => store.config_pool(),
        DbFile::Security => store.security_pool(),
    };
    let row = sqlx::query(&format!("PRAGMA {name}"))
        .fetch_one(pool)
        .await
        .unwrap();
    // journal_mode is text, synchronous / foreign_keys are integers.
    row.try_get::<String, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
        .unwrap()
}

#[tokio::test]
async fn open_creates_private_files_in_a_private_dir_with_wal() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("nested/flm");
    let paths = StorePaths::in_dir(&dir);
    assert_eq!(paths.config_db, dir.join("config.db"));
    assert_eq!(paths.security_db, dir.join("security.db"));

    let store = Store::open(&paths).await.unwrap();
    assert_eq!(store.read_only_reason(), None);
    assert_eq!(store.paths(), &paths);
    assert!(paths.config_db.is_file() && paths.security_db.is_file());
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&paths.config_db), 0o600);
        assert_eq!(mode(&paths.security_db), 0o600);
    }
    for file in [DbFile::Config, DbFile::Security] {
        assert_eq!(pragma(&store, file, "journal_mode").await, "wal");
        assert_eq!(pragma(&store, file, "synchronous").await, "1"); // NORMAL
        assert_eq!(pragma(&store, file, "foreign_keys").await, "1");
    }
    // SQLite's own -wal / -shm files inherit the main file's mode.
    #[cfg(unix)]
    for companion in ["config.db-wal", "config.db-shm"] {
        let p = dir.join(companion);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{companion}");
        }
    }

    // security.db is seeded with the default policy.
    let policy: String =
        sqlx::query_scalar("SELECT policy_json FROM security_policies WHERE id = 'default'")
            .fetch_one(store.security_pool())
            .await
            .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"ip_whitelist":[],"cors":{"allowed_origins":[]},"rate_limit":{}})
    );
    // Tables of both migration sets are where they belong.
    for (pool, table) in [
        (store.config_pool(), "settings"),
        (store.config_pool(), "engines_cache"),
        (store.config_pool(), "engines_cache_meta"),
        (store.config_pool(), "engine_endpoints"),
        (store.config_pool(), "engine_health_logs"),
        (store.security_pool(), "security_policies"),
    ] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = ?")
            .bind(table)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "{table}");
    }
    store.close().await;
}

#[tokio::test]
async fn reopen_is_idempotent_fast_and_tightens_permissions() {
    let tmp = TempDir::new().unwrap();
    let paths = StorePaths::in_dir(tmp.path());
    let store = Store::open(&paths).await.unwrap();
    store.settings().set("proxy.port", "8780").await.unwrap();
    let applied = |s: Store| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(s.config_pool())
            .await
            .unwrap()
    };
    let before = applied(store.clone()).await;
    store.close().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&paths.config_db, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let mut timings = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let store = Store::open(&paths).await.unwrap();
        timings.push(t.elapsed());
        assert_eq!(store.read_only_reason(), None);
        assert_eq!(
            store
                .settings()
                .get("proxy.port")
                .await
                .unwrap()
                .unwrap()
                .value,
            "8780"
        );
        assert_eq!(applied(store.clone()).await, before);
        store.close().await;
    }
    println!("Store::open of an existing, migrated store: {timings:?}");
    #[cfg(unix)]
    assert_eq!(mode(&paths.config_db), 0o600);
}

#[tokio::test]
async fn several_processes_opening_a_fresh_store_at_once_all_get_it_writable() {
    for _ in 0..3 {
        let tmp = TempDir::new().unwrap();
        let paths = StorePaths::in_dir(tmp.path());
        let (a, b, c) = tokio::join!(
            Store::open(&paths),
            Store::open(&paths),
            Store::open(&paths)
        );
        let stores = [a.unwrap(), b.unwrap(), c.unwrap()];
        for (i, s) in stores.iter().enumerate() {
            assert_eq!(s.read_only_reason(), None);
            s.settings().set("k", &i.to_string()).await.unwrap();
        }
        assert_eq!(
            stores[0].settings().get("k").await.unwrap().unwrap().value,
            "2"
        );
        for s in &stores {
            s.close().await;
        }
    }
}

#[tokio::test]
async fn settings_crud() {
    let tmp = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(tmp.path())).await.unwrap();
    let settings = store.settings();
    assert_eq!(settings.get("proxy.port").await.unwrap(), None);
    assert!(settings.list().await.unwrap().is_empty());

    let t0 = Utc::now() - chrono::Duration::seconds(1);
    settings.set("proxy.port", "8780").await.unwrap();
    settings
        .set("engine.health_latency_threshold_ms", "1500")
        .await
        .unwrap();
    let row = settings.get("proxy.port").await.unwrap().unwrap();
    assert_eq!(
        (row.key.as_str(), row.value.as_str()),
        ("proxy.port", "8780")
    );
    assert!(row.updated_at >= t0 && row.updated_at <= Utc::now());

    settings.set("proxy.port", "9000").await.unwrap();
    let keys: Vec<(String, String)> = settings
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        keys,
        [
            ("engine.health_latency_threshold_ms".into(), "1500".into()),
            ("proxy.port".into(), "9000".into())
        ]
    );

    assert!(settings.delete("proxy.port").await.unwrap());
    assert!(!settings.delete("proxy.port").await.unwrap());
    assert_eq!(settings.get("proxy.port").await.unwrap(), None);

    // Rows written by SQL defaults (`datetime('now')` style too) read back.
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES ('legacy', 'x', datetime('now'))",
    )
    .execute(store.config_pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO settings (key, value) VALUES ('defaulted', 'y')")
        .execute(store.config_pool())
        .await
        .unwrap();
    for key in ["legacy", "defaulted"] {
        let row = settings.get(key).await.unwrap().unwrap();
        assert!(
            (Utc::now() - row.updated_at).num_seconds().abs() < 60,
            "{key}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn engine_cache_round_trip_clear_and_corrupt_rows() {
    let tmp = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(tmp.path())).await.unwrap();
    let cache = store.engine_cache();
    assert_eq!(cache.load().await.unwrap(), None);

    // Detection order is kept (not sorted by id).
    let run = CachedDetection {
        detected_at: now_ms(),
        engines: vec![
            engine("vllm-default", EngineKind::Vllm),
            engine("ollama-default", EngineKind::Ollama),
            engine("lmstudio-default", EngineKind::LmStudio),
        ],
    };
    cache.store(&run).await.unwrap();
    assert_eq!(cache.load().await.unwrap().as_ref(), Some(&run));

    // A new run replaces the old one entirely.
    let run2 = CachedDetection {
        detected_at: now_ms(),
        engines: vec![engine("ollama-default", EngineKind::Ollama)],
    };
    cache.store(&run2).await.unwrap();
    assert_eq!(cache.load().await.unwrap().as_ref(), Some(&run2));

    // "Nothing found" is cacheable too.
    let empty = CachedDetection {
        detected_at: now_ms(),
        engines: vec![],
    };
    cache.store(&empty).await.unwrap();
    assert_eq!(cache.load().await.unwrap().as_ref(), Some(&empty));

    // A duplicate id is refused without touching the cache.
    let dup = CachedDetection {
        detected_at: now_ms(),
        engines: vec![
            engine("ollama-default", EngineKind::Ollama),
            engine("ollama-default", EngineKind::Ollama),
        ],
    };
    assert!(matches!(
        cache.store(&dup).await,
        Err(RepoError::Validation(_))
    ));
    assert_eq!(cache.load().await.unwrap().as_ref(), Some(&empty));

    // A row that does not parse is skipped, the rest still loads.
    cache.store(&run).await.unwrap();
    sqlx::query(
        "UPDATE engines_cache SET state_json = '{not json' WHERE engine_id = 'ollama-default'",
    )
    .execute(store.config_pool())
    .await
    .unwrap();
    let loaded = cache.load().await.unwrap().unwrap();
    assert_eq!(loaded.detected_at, run.detected_at);
    let ids: Vec<&str> = loaded.engines.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["vllm-default", "lmstudio-default"]);

    cache.clear().await.unwrap();
    assert_eq!(cache.load().await.unwrap(), None);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM engines_cache")
        .fetch_one(store.config_pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    store.close().await;
}

#[tokio::test]
async fn endpoints_add_list_remove_and_duplicates() {
    let tmp = TempDir::new().unwrap();
    let store = Store::open(&StorePaths::in_dir(tmp.path())).await.unwrap();
    let eps = store.endpoints();
    assert!(eps.list().await.unwrap().is_empty());

    let b = endpoint("vllm-b", "http://10.0.0.2:8000");
    let a = endpoint("vllm-a", "http://10.0.0.1:8000");
    eps.add(&b).await.unwrap();
    eps.add(&a).await.unwrap();
    assert_eq!(eps.list().await.unwrap(), [a.clone(), b.clone()]);

    match eps.add(&endpoint("vllm-a", "http://10.0.0.9:8000")).await {
        Err(RepoError::Validation(m)) => {
            assert!(m.contains("id `vllm-a` already exists"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match eps.add(&endpoint("vllm-c", "http://10.0.0.1:8000")).await {
        Err(RepoError::Validation(m)) => assert!(
            m.contains("`vllm-a` already uses base URL `http://10.0.0.1:8000`"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(eps.list().await.unwrap().len(), 2);

    assert!(eps.remove(&a.id).await.unwrap());
    assert!(!eps.remove(&a.id).await.unwrap());
    assert_eq!(eps.list().await.unwrap(), [b]);
    // The URL is free again once its endpoint is removed.
    eps.add(&endpoint("vllm-c", "http://10.0.0.1:8000"))
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn garbage_config_db_gives_a_precise_error_and_is_left_alone() {
    let tmp = TempDir::new().unwrap();
    let paths = StorePaths::in_dir(tmp.path());
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&paths.config_db, &garbage).unwrap();

    let err = Store::open(&paths).await.unwrap_err();
    let expected = format!(
        "`{}` is not a valid SQLite database (file is not a database); move it aside or restore a backup",
        paths.config_db.display()
    );
    assert_eq!(err, RepoError::Database(expected));
    assert_eq!(std::fs::read(&paths.config_db).unwrap(), garbage);
    assert!(!tmp.path().join("config.db-wal").exists());
}

#[tokio::test]
async fn unknown_future_migration_opens_read_only() {
    let tmp = TempDir::new().unwrap();
    let paths = StorePaths::in_dir(tmp.path());
    let store = Store::open(&paths).await.unwrap();
    store.settings().set("proxy.port", "8780").await.unwrap();
    store
        .endpoints()
        .add(&endpoint("vllm-a", "http://10.0.0.1:8000"))
        .await
        .unwrap();
    store.close().await;

    // A newer FLM applied a migration this build does not have.
    let mut conn = raw(&paths.config_db).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, x'00112233', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let bytes = std::fs::read(&paths.config_db).unwrap();

    let store = Store::open(&paths).await.unwrap();
    let reason = store.read_only_reason().unwrap().to_owned();
    assert!(
        reason.starts_with("config.db migration failed: "),
        "{reason}"
    );
    assert!(reason.contains("99990101000000"), "{reason}");
    assert!(
        reason.ends_with("; FLM runs read-only. Restore a backup or run `flm check`"),
        "{reason}"
    );
    assert_eq!(
        store.read_only_reason_of(DbFile::Config),
        Some(reason.as_str())
    );
    assert_eq!(store.read_only_reason_of(DbFile::Security), None);
    assert!(store.ensure_writable(DbFile::Security).is_ok());
    assert_eq!(
        store.ensure_writable(DbFile::Config),
        Err(RepoError::ReadOnlyMode(reason.clone()))
    );

    // Reads work.
    let settings = store.settings();
    assert_eq!(
        settings.get("proxy.port").await.unwrap().unwrap().value,
        "8780"
    );
    assert_eq!(settings.list().await.unwrap().len(), 1);
    assert_eq!(store.endpoints().list().await.unwrap().len(), 1);
    assert_eq!(store.engine_cache().load().await.unwrap(), None);

    // Every write is refused with the reason.
    let ro = RepoError::ReadOnlyMode(reason.clone());
    assert_eq!(settings.set("proxy.port", "1").await, Err(ro.clone()));
    assert_eq!(settings.delete("proxy.port").await, Err(ro.clone()));
    let run = CachedDetection {
        detected_at: now_ms(),
        engines: vec![],
    };
    assert_eq!(store.engine_cache().store(&run).await, Err(ro.clone()));
    assert_eq!(store.engine_cache().clear().await, Err(ro.clone()));
    let eps = store.endpoints();
    assert_eq!(
        eps.add(&endpoint("vllm-b", "http://10.0.0.2:8000")).await,
        Err(ro.clone())
    );
    assert_eq!(
        eps.remove(&EngineId::parse("vllm-a").unwrap()).await,
        Err(ro)
    );
    // Even raw SQL cannot write through the read-only pool.
    assert!(sqlx::query("DELETE FROM settings")
        .execute(store.config_pool())
        .await
        .is_err());

    // security.db is unaffected and writable.
    sqlx::query("UPDATE security_policies SET policy_json = '{}' WHERE id = 'default'")
        .execute(store.security_pool())
        .await
        .unwrap();
    store.close().await;
    assert_eq!(std::fs::read(&paths.config_db).unwrap(), bytes);
}

#[tokio::test]
async fn conflicting_table_rolls_back_and_opens_read_only() {
    let tmp = TempDir::new().unwrap();
    let paths = StorePaths::in_dir(tmp.path());
    // A `settings` table of some other program's making.
    let mut conn = SqliteConnectOptions::new()
        .filename(&paths.config_db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE settings (name TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = Store::open(&paths).await.unwrap();
    let reason = store.read_only_reason().unwrap();
    assert!(
        reason.starts_with("config.db migration failed: migration 20261125000000 failed"),
        "{reason}"
    );
    // The failed migration's transaction was rolled back.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'engines_cache'")
            .fetch_one(store.config_pool())
            .await
            .unwrap();
    assert_eq!(n, 0);
    store.close().await;
}

#[tokio::test]
async fn data_dir_under_a_regular_file_is_an_io_error_naming_the_path() {
    let tmp = TempDir::new().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("flm");
    match Store::open(&StorePaths::in_dir(&dir)).await {
        Err(RepoError::Io(m)) => assert!(
            m.starts_with(&format!(
                "cannot create data directory `{}`: ",
                dir.display()
            )),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // The data dir path itself being a file.
    match Store::open(&StorePaths::in_dir(&file)).await {
        Err(RepoError::Io(m)) => assert!(
            m.starts_with(&format!(
                "cannot create data directory `{}`: ",
                file.display()
            )),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn db_paths_outside_the_data_dir_get_their_own_private_dirs() {
    let tmp = TempDir::new().unwrap();
    let paths = StorePaths {
        data_dir: tmp.path().join("data"),
        config_db: tmp.path().join("cfg/c.db"),
        security_db: tmp.path().join("sec/s.db"),
    };
    let store = Store::open(&paths).await.unwrap();
    store.settings().set("a", "b").await.unwrap();
    store.close().await;
    assert!(paths.config_db.is_file() && paths.security_db.is_file());
    #[cfg(unix)]
    {
        assert_eq!(mode(&tmp.path().join("cfg")), 0o700);
        assert_eq!(mode(&paths.security_db), 0o600);
    }
}
