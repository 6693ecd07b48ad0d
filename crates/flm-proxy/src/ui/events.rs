//! Live events for the app (`GET /api/v1/events`, Server-Sent Events): a broadcast
//! bus fed by watchers of the daemon's state, so the app refetches a view within a
//! second of a change instead of polling.
//!
//! Sources: the proxy set (start/stop however requested: app, CLI, signal), the
//! store's change markers (keys, policy, blocklist changed by any process; a
//! blocklist change is turned into `ban`/`unblock` events by comparing the rows),
//! the guard's own bans in this process (its ban counter), the routing monitors
//! (engines offered or dropped), and handlers publishing `config` events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::types::{
    AppEvent, BanEvent, Changed, EngineEvent, EngineHealth, ProxyEvent, UnblockEvent,
};
use super::{UiDeps, UiState};

/// How often the watchers look.
const POLL: Duration = Duration::from_millis(200);
/// Keepalive comment interval of the event stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// One event: `event:` = kind, `data:` = JSON.
#[derive(Debug, Clone)]
pub struct UiEvent {
    /// `engine`, `proxy`, `ban`, `unblock`, `keys`, `policy`, `config`.
    pub kind: &'static str,
    /// The payload.
    pub data: Value,
}

/// The bus; cloning shares it.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<UiEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus; slow subscribers lose old events (they refetch anyway).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(256);
        Self { tx }
    }

    /// Sends an event to every open stream.
    pub fn emit(&self, event: AppEvent) {
        self.publish(event.kind(), event.data());
    }

    /// Sends an untyped event; prefer [`EventBus::emit`], whose payloads are in the
    /// app's generated types.
    pub fn publish(&self, kind: &'static str, data: Value) {
        let _ = self.tx.send(UiEvent { kind, data });
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.tx.subscribe()
    }
}

/// `GET /api/v1/events`.
pub(crate) async fn stream(
    State(st): State<Arc<UiState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.events.subscribe();
    let s = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let e = Event::default().event(ev.kind).data(ev.data.to_string());
                    return Some((Ok(e), rx));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(lost = n, "app event stream lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(KEEPALIVE))
}

/// Starts the watchers; they end with `shutdown`.
pub(crate) fn spawn_watchers(deps: &UiDeps, bus: &EventBus, shutdown: watch::Receiver<bool>) {
    let (manager, b, mut stop) = (deps.manager.clone(), bus.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut last = running_ports(&manager);
        let mut offered = manager.offered_engines();
        loop {
            tokio::select! {
                _ = crate::stopped(&mut stop) => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = running_ports(&manager);
            if now != last {
                b.emit(AppEvent::Proxy(ProxyEvent {
                    running: !now.is_empty(),
                }));
                last = now;
            }
            // Engines the routing monitors offer: gone = down, new = healthy. With
            // no proxy running nothing is monitored, so nothing is reported.
            let fresh = manager.offered_engines();
            if fresh != offered && !last.is_empty() {
                for id in fresh.iter().filter(|id| !offered.contains(id)) {
                    b.emit(AppEvent::Engine(EngineEvent {
                        engine_id: id.clone(),
                        status: EngineHealth::Healthy,
                    }));
                }
                for id in offered.iter().filter(|id| !fresh.contains(id)) {
                    b.emit(AppEvent::Engine(EngineEvent {
                        engine_id: id.clone(),
                        status: EngineHealth::Down,
                    }));
                }
            }
            offered = fresh;
        }
    });
    if let Some(changes) = deps.changes.clone() {
        let blocklist = deps.security.as_ref().map(|s| s.blocklist.clone());
        let (b, mut stop, manager) = (bus.clone(), shutdown, deps.manager.clone());
        tokio::spawn(async move {
            let mut last = changes.generations().await.ok();
            // The proxy's own bans do not move the blocklist marker (see
            // `StoreGenerations::blocklist`); its ban counter does. The row is written
            // right after the count, so the rows are read again on the next tick too.
            let mut bans = bans_total(&manager);
            let mut reread = 0u8;
            let mut rows = match &blocklist {
                Some(bl) => blocks(bl.as_ref()).await,
                None => HashMap::new(),
            };
            loop {
                tokio::select! {
                    _ = crate::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
                let Ok(now) = changes.generations().await else {
                    continue;
                };
                let Some(prev) = last.replace(now) else {
                    continue;
                };
                if now.api_keys != prev.api_keys {
                    b.emit(AppEvent::Keys(Changed {}));
                }
                if now.policy != prev.policy {
                    b.emit(AppEvent::Policy(Changed {}));
                }
                let b_now = bans_total(&manager);
                if b_now != bans {
                    bans = b_now;
                    reread = 2;
                }
                if now.blocklist != prev.blocklist || reread > 0 {
                    reread = reread.saturating_sub(1);
                    if let Some(bl) = &blocklist {
                        let fresh = blocks(bl.as_ref()).await;
                        publish_block_diff(&b, &rows, &fresh);
                        rows = fresh;
                    }
                }
            }
        });
    }
}

fn bans_total(m: &crate::ProxyManager) -> u64 {
    m.guard()
        .counters()
        .iter()
        .find(|c| c.0 == "flm_proxy_blocks_total")
        .map_or(0, |c| c.3)
}

fn running_ports(m: &crate::ProxyManager) -> Vec<u16> {
    let mut v: Vec<u16> = m.status().iter().map(|h| h.port).collect();
    v.sort_unstable();
    v
}

/// IP → (blocked until, permanent) of the rows that block.
type Blocks = HashMap<String, (Option<String>, bool)>;

async fn blocks(bl: &dyn flm_core::security::BlocklistRepository) -> Blocks {
    let now = chrono::Utc::now();
    match bl.load_all().await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| r.permanent || r.blocked_until.is_some_and(|u| u > now))
            .map(|r| (r.ip, (r.blocked_until.map(|u| u.to_rfc3339()), r.permanent)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "app events: cannot read the blocklist");
            HashMap::new()
        }
    }
}

fn publish_block_diff(b: &EventBus, old: &Blocks, new: &Blocks) {
    for (ip, v) in new {
        if old.get(ip) != Some(v) {
            b.emit(AppEvent::Ban(BanEvent {
                ip: ip.clone(),
                until: v.0.clone(),
                permanent: v.1,
            }));
        }
    }
    for ip in old.keys() {
        if !new.contains_key(ip) {
            b.emit(AppEvent::Unblock(UnblockEvent { ip: ip.clone() }));
        }
    }
}
