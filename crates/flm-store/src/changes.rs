//! [`ChangeMarkers`] on `security.db` → `change_markers` (migration
//! `20261205000100_change_markers`): one generation per table a proxy mirrors in
//! memory, bumped by triggers on every write, whoever makes it.
//!
//! The proxy itself writes `ip_blocklist` often (bans, failure counters) and must
//! not reload the whole table after each of its own writes. Its writes go through
//! [`crate::Store::proxy_blocklist`], which counts the generations they add, inside
//! their transaction; [`ChangeMarkers::generations`] reports the blocklist
//! generation minus that count. Both sides hold [`OwnWrites`] while they work, so a
//! poll never sees a committed own write without its count (or the reverse).

use std::sync::Arc;

use async_trait::async_trait;
use flm_core::ports::{ChangeMarkers, StoreGenerations};
use flm_core::RepoError;
use sqlx::Row;

use crate::db::Db;

/// Generations added to `ip_blocklist` by this process's proxy writer.
pub(crate) type OwnWrites = Arc<tokio::sync::Mutex<u64>>;

/// The blocklist generation inside a transaction (0 if the marker row is missing).
pub(crate) async fn blocklist_generation(
    conn: &mut sqlx::SqliteConnection,
) -> Result<u64, sqlx::Error> {
    let g: Option<i64> =
        sqlx::query_scalar("SELECT generation FROM change_markers WHERE name = 'ip_blocklist'")
            .fetch_optional(conn)
            .await?;
    Ok(g.map_or(0, |g| g as u64))
}

/// The change markers of `security.db`.
pub(crate) struct SqliteChangeMarkers {
    pub(crate) db: Arc<Db>,
    pub(crate) own: OwnWrites,
}

#[async_trait]
impl ChangeMarkers for SqliteChangeMarkers {
    async fn generations(&self) -> Result<StoreGenerations, RepoError> {
        const OP: &str = "reading the change markers";
        let own = self.own.lock().await;
        let rows = sqlx::query("SELECT name, generation FROM change_markers")
            .fetch_all(&self.db.pool)
            .await
            .map_err(|e| self.db.err(OP, e))?;
        let mut g = StoreGenerations::default();
        for row in rows {
            let name: String = row.try_get(0).map_err(|e| self.db.err(OP, e))?;
            let value: i64 = row.try_get(1).map_err(|e| self.db.err(OP, e))?;
            let value = value as u64;
            match name.as_str() {
                "api_keys" => g.api_keys = value,
                "security_policies" => g.policy = value,
                "ip_blocklist" => g.blocklist = value.wrapping_sub(*own),
                "profiles" => g.profiles = value,
                _ => {}
            }
        }
        Ok(g)
    }
}
