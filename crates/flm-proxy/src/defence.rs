//! The proxy's automatic defence: `flm-guard`'s pure decisions wired to requests,
//! time, the database and the audit log.
//!
//! Order of checks for every request but `/health` (cheapest and most decisive first;
//! nothing here reads the body):
//! 1. client IP (peer, or forwarded headers from trusted proxies only);
//! 2. banned IP → `403 ip_blocked`, connection closed — before anything else is spent;
//! 3. unusable policy → `403 forbidden` (fail closed, spec 40-security §3.3);
//! 4. resources (CPU, memory, connections) → `503 resource_throttle`; a full audit
//!    queue → `503` too (shed, counted);
//! 5. IP allow list → `403 forbidden`;
//! 6. intrusion signatures on method, path, query and headers; honeypot routes;
//! 7. anomaly windows (floods, scans, oversized bodies…);
//! 8. per-IP rate limit (tightened for suspicious IPs) → `429`;
//!
//! then, inside the routes, authentication (failures of *presented* credentials feed
//! the blocklist), the per-key rate limit and the non-content JSON fields of the body
//! ([`Guard::inspect_body`]).
//!
//! Requests a browser marks as cross-site ([`is_cross_site`]) never feed a ban: their
//! findings refuse the request itself, and their failures, findings and 404s spend a
//! per-address budget whose exhaustion refuses further cross-site requests for a while
//! ([`Guard::cross_site_strike`]).
//!
//! Fail closed: a state that cannot be consulted (a lock poisoned by a panic, a
//! blocklist never read) refuses the request with `503 defence_unavailable`; a policy
//! never read keeps the proxy closed like a missing one.
//!
//! State lives in one [`Guard`] per manager, so every listener shares one blocklist.
//! New bans are written to `security.db` at once (they survive a SIGKILL); failure
//! counters and rate-limit windows every minute.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use flm_core::security::{
    AuditEvent, AuditRepository, AuditSeverity, BlockRow, BlocklistRepository, NewAnomaly,
    NewIntrusion, NewResourceAlert, PolicyRepository, RateLimitStateRepository, RateLimitStateRow,
    ResourceAlertKind, SecurityEventRepository,
};
use flm_guard::anomaly::{AnomalyReport, RequestObservation, ResponseObservation};
use flm_guard::net::{canonical, rate_subject};
use flm_guard::ratelimit::RateState;
use flm_guard::resource::ResourceKind;
use flm_guard::IpNet;
use flm_guard::{
    client_ip, inspect, Action, Admission, AnomalyDetector, BlockEntry, Blocklist, Decision,
    EffectivePolicy, Finding, IntrusionDetector, Limit, Millis, Pattern, RateLimiter, RequestFacts,
    ResourceGuard, SecurityPolicy, Tightening, Verdict,
};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::app::{KeyId, SharedState};
use crate::audit::{AuditSink, AuditStats, Record};
use crate::error::ApiError;
use crate::request_id::RequestId;

/// How often the stored policy is compared with the one in force.
const POLICY_POLL: Duration = Duration::from_secs(2);
/// Idle state is swept (and expired windows deleted) this often (bans are written at once).
const SYNC_EVERY: Duration = Duration::from_secs(60);
/// Rate-limit windows that changed are written this often (docs/guides/security.md:
/// "within 10 s"); only windows touched since the last write are written.
const RATE_LIMIT_SYNC_EVERY: Duration = Duration::from_secs(5);
/// Refusals of banned IPs are summed up and recorded this often.
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// CPU and memory are sampled this often (spec: at most every 5 s).
const RESOURCE_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Rate-limit tables and detectors keep this many keys at most.
const MAX_TRACKED: usize = 100_000;
/// Failures and findings of cross-site-marked requests allowed per address and window
/// before its cross-site requests are refused.
const CROSS_SITE_BUDGET: u32 = 10;
/// The window of that budget.
const CROSS_SITE_WINDOW_MS: Millis = 10 * 60_000;
/// How long cross-site requests of an address over budget are refused.
const CROSS_SITE_REFUSAL_MS: Millis = 30 * 60_000;

/// One address's cross-site budget.
#[derive(Debug, Clone, Copy)]
struct CrossSiteBudget {
    strikes: u32,
    window_start: Millis,
    refused_until: Millis,
}

/// The defence cannot answer (a lock poisoned by a panic mid-update, or state not read
/// yet): the request is refused with `503`, never admitted on a guess.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable(&'static str);

impl Unavailable {
    fn error(self) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "defence_unavailable",
            "server_error",
            format!("the proxy cannot check this request ({}); refusing rather than admitting it unchecked", self.0),
        )
    }

    fn response(self) -> Response {
        let mut resp = self.error().into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        resp
    }
}

fn poisoned(what: &'static str) -> Unavailable {
    tracing::error!(
        state = what,
        "defence state poisoned by an earlier panic: refusing requests (restart the proxy)"
    );
    Unavailable("internal defence state unavailable")
}

/// The network a cross-site budget is kept for: the address, or its /64 (one IPv6
/// subscriber).
fn budget_key(ip: IpAddr) -> IpNet {
    match canonical(ip) {
        ip @ IpAddr::V6(_) => IpNet::new(ip, 64).unwrap_or_else(|_| IpNet::host(ip)),
        ip => IpNet::host(ip),
    }
}

/// Whether a browser marked the request as sent on behalf of another site: fetch
/// metadata `Sec-Fetch-Site: cross-site` / `same-site`, or an `Origin` that the CORS
/// policy does not list by name. Browsers set both headers themselves and pages cannot
/// forge them; a script can add them, but that only moves its failures and findings to
/// the stricter cross-site budget (findings are refused outright).
pub(crate) fn is_cross_site(h: &HeaderMap, allowed_origins: &[String]) -> bool {
    if let Some(v) = h.get("sec-fetch-site") {
        let v = v.as_bytes();
        if v.eq_ignore_ascii_case(b"cross-site") || v.eq_ignore_ascii_case(b"same-site") {
            return true;
        }
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let Ok(o) = origin.to_str() else {
        return true;
    };
    let o = o.trim_end_matches('/').to_ascii_lowercase();
    // The API's own origin (a page served by the same host) is not another site.
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if host.is_some_and(|host| o.split("://").nth(1) == Some(host.as_str())) {
        return false;
    }
    // Only an origin listed by name is vouched for; `*` vouches for nobody.
    !allowed_origins
        .iter()
        .any(|a| a != "*" && (*a == o || o.split("://").nth(1) == Some(a.as_str())))
}

fn cross_site_refusal() -> Response {
    let mut resp = ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_site_request_refused",
        "access_denied",
        "too many failed cross-site requests from your address: cross-site requests are refused for a while (direct requests are not affected)",
    )
    .into_response();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(CROSS_SITE_REFUSAL_MS / 1000),
    );
    resp
}

/// The repositories of `security.db` the defence reads and writes.
#[derive(Clone)]
pub struct SecurityDeps {
    /// `security_policies`.
    pub policy: Arc<dyn PolicyRepository>,
    /// `ip_blocklist`.
    pub blocklist: Arc<dyn BlocklistRepository>,
    /// `intrusion_attempts`, `anomaly_detections`, `resource_alerts`.
    pub events: Arc<dyn SecurityEventRepository>,
    /// `rate_limit_states`.
    pub rate_limits: Arc<dyn RateLimitStateRepository>,
}

/// The TCP peer of a connection, set by the server loop on every request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The client address the defence settled on (after trusted proxies).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Set on a request the browser marked as cross-site ([`is_cross_site`]): its failures
/// and findings never count towards a ban of its address (see [`Guard::cross_site_strike`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CrossSite;

/// Why authentication failed, for the audit record (`details.reason`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthReason(pub &'static str);

/// The policy in force, with both exposure profiles precomputed.
pub(crate) struct Policies {
    /// Set when the stored policy is missing or unusable: refuse all but `/health`.
    pub closed: Option<String>,
    pub raw: SecurityPolicy,
    local: EffectivePolicy,
    exposed: EffectivePolicy,
    stamp: Option<DateTime<Utc>>,
}

impl Policies {
    fn of(raw: SecurityPolicy, stamp: Option<DateTime<Utc>>, closed: Option<String>) -> Self {
        Self {
            local: raw.effective(false),
            exposed: raw.effective(true),
            raw,
            stamp,
            closed,
        }
    }

    pub(crate) fn effective(&self, exposed: bool) -> &EffectivePolicy {
        if exposed {
            &self.exposed
        } else {
            &self.local
        }
    }
}

/// Counters of the defence (beyond the audit writer's).
#[derive(Debug, Default)]
pub struct DefenceStats {
    /// Requests refused because their IP is banned.
    pub refused_blocked: AtomicU64,
    /// Bans started or lengthened.
    pub blocks: AtomicU64,
    /// Intrusion findings.
    pub intrusions: AtomicU64,
    /// Anomalies.
    pub anomalies: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Requests refused by resource protection.
    pub throttled: AtomicU64,
}

/// Shared defence state of one manager.
pub struct Guard {
    deps: Option<SecurityDeps>,
    audit_repo: Option<Arc<dyn AuditRepository>>,
    policies: ArcSwap<Policies>,
    blocklist: RwLock<Blocklist>,
    ip_limits: Mutex<RateLimiter>,
    key_limits: Mutex<RateLimiter>,
    intrusion: Mutex<IntrusionDetector>,
    anomaly: Mutex<AnomalyDetector>,
    /// Blocklist entries changed since the last write.
    dirty: Mutex<HashSet<IpNet>>,
    /// Whether `ip_blocklist` was read at least once: until then the bans it holds are
    /// unknown, so every request is refused (fail closed).
    blocklist_loaded: AtomicBool,
    /// Failures and findings of cross-site-marked requests, per address (IPv6: /64).
    cross_site: Mutex<HashMap<IpNet, CrossSiteBudget>>,
    /// Wakes the sync task for a new ban.
    persist_now: Notify,
    /// When rate-limit windows were last written (ms since the epoch).
    rate_persisted_ms: AtomicU64,
    /// Policy or blocklist changed in the database (admin API).
    reload_now: Notify,
    /// Serialises policy reloads: a poll that read the table just before a change
    /// must not store its stale copy over the newer one a forced reload applied.
    policy_reload: tokio::sync::Mutex<()>,
    /// The same for the blocklist: a reconcile that read the table before an unblock
    /// must not put the lifted entry back over a newer reconcile's result.
    blocklist_reconcile: tokio::sync::Mutex<()>,
    /// Refusals of banned IPs not yet recorded.
    refusals: Mutex<HashMap<IpAddr, u64>>,
    pub(crate) audit: AuditSink,
    /// Client connections with a request in progress (all listeners); idle and
    /// handshaking sockets are not counted (see `server::Connections`).
    pub conns: Arc<AtomicU32>,
    cpu_bits: AtomicU64,
    mem_bits: AtomicU64,
    throttle_alerted: AtomicBool,
    loaded: tokio::sync::OnceCell<()>,
    tasks_started: AtomicBool,
    /// Counters.
    pub stats: DefenceStats,
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> Millis {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

fn to_dt(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or_else(Utc::now)
}

fn to_ms(t: &DateTime<Utc>) -> Millis {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

fn row_of(e: &BlockEntry) -> BlockRow {
    BlockRow {
        ip: e.net.to_string(),
        failure_count: e.failure_count,
        first_failure_at: to_dt(e.first_failure_at),
        blocked_until: e.blocked_until.map(to_dt),
        permanent: e.permanent,
        last_attempt: to_dt(e.last_attempt),
    }
}

fn entry_of(r: &BlockRow) -> Option<BlockEntry> {
    // An address, or a range (`2001:db8:1::/48`: an IPv6 aggregate or a range added
    // by hand); both parse as a network.
    let net: IpNet = r.ip.parse().ok()?;
    Some(BlockEntry {
        net,
        failure_count: r.failure_count,
        first_failure_at: to_ms(&r.first_failure_at),
        blocked_until: r.blocked_until.as_ref().map(to_ms),
        permanent: r.permanent,
        last_attempt: to_ms(&r.last_attempt),
    })
}

fn f64_load(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

impl Guard {
    /// A guard that refuses everything but `/health` until [`Guard::load`] reads the
    /// stored policy and blocklist (without a store: the default policy).
    pub fn new(deps: Option<SecurityDeps>, audit: Option<Arc<dyn AuditRepository>>) -> Self {
        let raw = SecurityPolicy::default();
        let closed = deps
            .is_some()
            .then(|| "the security policy has not been read yet".to_owned());
        let blocklist_loaded = AtomicBool::new(deps.is_none());
        let exposed = raw.effective(true);
        let bl_config = exposed.blocklist.unwrap_or_default();
        let intrusion = exposed.intrusion.unwrap_or_default();
        let anomaly = exposed.anomaly.unwrap_or_default();
        Self {
            deps,
            audit_repo: audit,
            policies: ArcSwap::from_pointee(Policies::of(raw, None, closed)),
            blocklist: RwLock::new(Blocklist::new(bl_config)),
            ip_limits: Mutex::new(RateLimiter::with_max_keys(Limit::unlimited(), MAX_TRACKED)),
            key_limits: Mutex::new(RateLimiter::with_max_keys(Limit::unlimited(), MAX_TRACKED)),
            intrusion: Mutex::new(IntrusionDetector::new(intrusion)),
            anomaly: Mutex::new(AnomalyDetector::new(anomaly)),
            dirty: Mutex::new(HashSet::new()),
            blocklist_loaded,
            cross_site: Mutex::new(HashMap::new()),
            persist_now: Notify::new(),
            rate_persisted_ms: AtomicU64::new(0),
            reload_now: Notify::new(),
            policy_reload: tokio::sync::Mutex::new(()),
            blocklist_reconcile: tokio::sync::Mutex::new(()),
            refusals: Mutex::new(HashMap::new()),
            audit: AuditSink::new(),
            conns: Arc::new(AtomicU32::new(0)),
            cpu_bits: AtomicU64::new(f64::NAN.to_bits()),
            mem_bits: AtomicU64::new(f64::NAN.to_bits()),
            throttle_alerted: AtomicBool::new(false),
            loaded: tokio::sync::OnceCell::new(),
            tasks_started: AtomicBool::new(false),
            stats: DefenceStats::default(),
        }
    }

    /// The policy in force.
    pub(crate) fn policies(&self) -> arc_swap::Guard<Arc<Policies>> {
        self.policies.load()
    }

    /// The audit writer's counters.
    pub fn audit_stats(&self) -> &AuditStats {
        &self.audit.stats
    }

    /// Reads the policy, the blocklist and the rate-limit windows (first start only)
    /// and starts the writer and the background tasks.
    pub(crate) async fn load(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        self.loaded
            .get_or_init(|| async {
                self.audit.start(
                    self.audit_repo.clone(),
                    self.deps.as_ref().map(|d| d.events.clone()),
                );
                if let Err(e) = self.reload_policy(true).await {
                    // No policy was ever read: there is no last good state to keep, and
                    // the default one is open. Closed until the poll reads it.
                    tracing::error!(error = %e, "could not read the security policy: refusing every request but /health until it can be read (retried every 2 s)");
                    let reason = format!("the security policy could not be read: {e}");
                    self.policies.store(Arc::new(Policies::of(
                        SecurityPolicy::default(),
                        None,
                        Some(reason),
                    )));
                }
                self.reconcile_blocklist().await;
                self.restore_rate_limits().await;
            })
            .await;
        if !self.tasks_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().policy_task(shutdown.clone()));
            tokio::spawn(self.clone().sync_task(shutdown.clone()));
            tokio::spawn(self.clone().resource_task(shutdown));
        }
    }

    /// Re-reads the policy and the blocklist now (after a CLI change).
    pub async fn reload(&self) -> Result<(), String> {
        self.reload_policy(true).await?;
        self.reconcile_blocklist().await;
        self.reload_now.notify_waiters();
        Ok(())
    }

    /// Re-reads the stored policy when it changed (or always with `force`). A missing
    /// or unusable policy closes the proxy (spec §3.3); a database that cannot be read
    /// right now keeps the policy in force.
    async fn reload_policy(&self, force: bool) -> Result<(), String> {
        let Some(deps) = &self.deps else {
            return Ok(());
        };
        let _serial = self.policy_reload.lock().await;
        let stored = deps.policy.load().await.map_err(|e| e.to_string())?;
        let current = self.policies.load();
        let stamp = stored.as_ref().map(|s| s.updated_at);
        if !force && current.stamp.is_some() && current.stamp == stamp {
            return Ok(());
        }
        let next = match stored {
            None => Policies::of(
                SecurityPolicy::default(),
                None,
                Some("no security policy is stored".into()),
            ),
            Some(s) => match SecurityPolicy::from_json_str(&s.policy_json) {
                Ok(p) => Policies::of(p, Some(s.updated_at), None),
                Err(e) => Policies::of(
                    SecurityPolicy::default(),
                    Some(s.updated_at),
                    Some(format!("the stored security policy is invalid: {e}")),
                ),
            },
        };
        if let Some(reason) = &next.closed {
            tracing::error!(%reason, "security policy unusable: refusing every request but /health until it is fixed with `flm security policy set`");
        } else if current.stamp != next.stamp {
            tracing::info!("security policy applied");
        }
        self.apply_configs(&next);
        self.policies.store(Arc::new(next));
        Ok(())
    }

    fn apply_configs(&self, p: &Policies) {
        let e = p.effective(true);
        if let Ok(mut b) = self.blocklist.write() {
            b.set_config(e.blocklist.unwrap_or_default());
        }
        if let Ok(mut d) = self.intrusion.lock() {
            d.set_config(e.intrusion.unwrap_or_default());
        }
        if let Ok(mut d) = self.anomaly.lock() {
            d.set_config(e.anomaly.unwrap_or_default());
        }
        if let Ok(mut l) = self.ip_limits.lock() {
            l.set_limit(e.ip_rate_limit.unwrap_or_else(Limit::unlimited));
        }
        if let Ok(mut l) = self.key_limits.lock() {
            l.set_limit(e.key_rate_limit.unwrap_or_else(Limit::unlimited));
        }
    }

    /// Makes the in-memory blocklist agree with `ip_blocklist`: the table is the
    /// authority for blocks (manual add, unblock and clear happen there); counters of
    /// IPs the table does not know yet are kept. Pending changes are written first.
    async fn reconcile_blocklist(&self) {
        let Some(deps) = &self.deps else {
            return;
        };
        let _serial = self.blocklist_reconcile.lock().await;
        self.flush_blocklist().await;
        let rows = match deps.blocklist.load_all().await {
            Ok(r) => r,
            Err(e) => {
                if self.blocklist_loaded.load(Ordering::Acquire) {
                    tracing::warn!(error = %e, "could not read the IP blocklist; keeping the one in memory");
                } else {
                    tracing::error!(error = %e, "could not read the IP blocklist: refusing requests until it can be read (retried every 2 s)");
                }
                return;
            }
        };
        let now = now_ms();
        let stored: Vec<BlockEntry> = rows.iter().filter_map(entry_of).collect();
        let stored_ips: HashSet<IpNet> = stored.iter().map(|e| e.net).collect();
        let Ok(mut list) = self.blocklist.write() else {
            tracing::error!("the IP blocklist lock is poisoned; requests are refused");
            return;
        };
        // Entries changed since the flush above (a ban that started a moment ago) are
        // newer than the table: keep them; the next flush writes them.
        let pending: HashSet<IpNet> = self
            .dirty
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        let keep = |e: &BlockEntry| {
            pending.contains(&e.net) || (!stored_ips.contains(&e.net) && !e.is_active(now))
        };
        let before: Vec<BlockEntry> = list.entries();
        let lifted: Vec<IpNet> = before
            .iter()
            .filter(|e| e.is_active(now) && !stored_ips.contains(&e.net) && !keep(e))
            .map(|e| e.net)
            .collect();
        // Listed after the table's rows: `from_entries` keeps the last duplicate.
        let kept: Vec<BlockEntry> = before.into_iter().filter(|e| keep(e)).collect();
        let config = *list.config();
        *list = Blocklist::from_entries(config, stored.into_iter().chain(kept));
        drop(list);
        self.blocklist_loaded.store(true, Ordering::Release);
        // An unblocked IP starts with a clean score, or its next request re-bans it.
        // (Scores are per address; a lifted range has none of its own.)
        for ip in lifted.iter().filter(|n| n.is_host()).map(IpNet::addr) {
            if let Ok(mut d) = self.intrusion.lock() {
                d.reset(ip);
            }
            if let Ok(mut d) = self.anomaly.lock() {
                d.reset(ip);
            }
        }
    }

    async fn restore_rate_limits(&self) {
        let Some(deps) = &self.deps else {
            return;
        };
        let rows = match deps.rate_limits.load_all().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read rate-limit windows");
                return;
            }
        };
        let now = now_ms();
        let (ip, key): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .map(|r| RateState {
                tat_ms: to_ms(&r.reset_at),
                key: r.key,
            })
            .partition(|s| s.key.starts_with("ip:"));
        if let Ok(mut l) = self.ip_limits.lock() {
            l.restore(ip, now);
        }
        if let Ok(mut l) = self.key_limits.lock() {
            l.restore(key, now);
        }
    }

    async fn flush_blocklist(&self) {
        let Some(deps) = &self.deps else {
            return;
        };
        let ips: Vec<IpNet> = match self.dirty.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return,
        };
        if ips.is_empty() {
            return;
        }
        let rows: Vec<BlockRow> = match self.blocklist.read() {
            Ok(list) => ips
                .iter()
                .filter_map(|net| list.get_net(net).map(row_of))
                .collect(),
            Err(_) => return,
        };
        if rows.is_empty() {
            return;
        }
        if let Err(e) = deps.blocklist.upsert_many(&rows).await {
            tracing::error!(error = %e, "could not write the IP blocklist; retrying later");
            if let Ok(mut d) = self.dirty.lock() {
                d.extend(ips);
            }
        }
    }

    async fn persist_rate_limits(&self) {
        let Some(deps) = &self.deps else {
            return;
        };
        let now = now_ms();
        let since = self.rate_persisted_ms.load(Ordering::Relaxed);
        let mut rows = Vec::new();
        for (limiter, _) in [(&self.ip_limits, "ip"), (&self.key_limits, "key")] {
            let Ok(l) = limiter.lock() else { continue };
            let interval = 60_000 / u64::from(l.limit().rpm.max(1));
            // A request at time r moves a window's TAT to at least r + interval, so the
            // windows touched since the last write are those with TAT > since + interval.
            for s in l.snapshot(now.max(since.saturating_add(interval))) {
                rows.push(RateLimitStateRow {
                    requests_count: i64::try_from(
                        s.tat_ms.saturating_sub(now).div_ceil(interval.max(1)),
                    )
                    .unwrap_or(i64::MAX),
                    reset_at: to_dt(s.tat_ms),
                    key: s.key,
                });
            }
        }
        match deps.rate_limits.upsert_many(&rows).await {
            Ok(()) => self.rate_persisted_ms.store(now, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "could not write rate-limit windows"),
        }
    }

    async fn policy_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLICY_POLL) => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
            if let Err(e) = self.reload_policy(false).await {
                if self.policies.load().stamp.is_none() {
                    tracing::error!(error = %e, "the security policy still cannot be read; refusing every request but /health");
                } else {
                    tracing::warn!(error = %e, "could not check the security policy; keeping the one in force");
                }
            }
            if !self.blocklist_loaded.load(Ordering::Acquire) {
                self.reconcile_blocklist().await;
            }
        }
    }

    async fn sync_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last_sync = Instant::now();
        let mut last_summary = Instant::now();
        let mut last_windows = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RATE_LIMIT_SYNC_EVERY) => {}
                _ = self.persist_now.notified() => {}
                _ = crate::stopped(&mut shutdown) => {
                    self.flush_blocklist().await;
                    self.persist_rate_limits().await;
                    self.summarise_refusals();
                    return;
                }
            }
            self.flush_blocklist().await;
            if last_summary.elapsed() >= REFUSAL_SUMMARY_EVERY {
                last_summary = Instant::now();
                self.summarise_refusals();
            }
            if last_windows.elapsed() >= RATE_LIMIT_SYNC_EVERY {
                last_windows = Instant::now();
                self.persist_rate_limits().await;
            }
            if last_sync.elapsed() >= SYNC_EVERY {
                last_sync = Instant::now();
                self.sweep();
                if let Some(deps) = &self.deps {
                    let _ = deps.rate_limits.delete_expired(Utc::now()).await;
                }
            }
        }
    }

    fn sweep(&self) {
        let now = now_ms();
        if let Ok(mut b) = self.blocklist.write() {
            b.sweep(now);
        }
        if let Ok(mut l) = self.ip_limits.lock() {
            l.sweep(now);
        }
        if let Ok(mut l) = self.key_limits.lock() {
            l.sweep(now);
        }
        if let Ok(mut d) = self.intrusion.lock() {
            d.sweep(now);
        }
        if let Ok(mut d) = self.anomaly.lock() {
            d.sweep(now);
        }
        if let Ok(mut m) = self.cross_site.lock() {
            m.retain(|_, b| {
                b.refused_until > now || now.saturating_sub(b.window_start) < CROSS_SITE_WINDOW_MS
            });
        }
    }

    async fn resource_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut sampler = crate::resources::Sampler::new();
        loop {
            let (cpu, mem) = sampler.sample();
            self.cpu_bits.store(cpu.to_bits(), Ordering::Relaxed);
            self.mem_bits.store(mem.to_bits(), Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(RESOURCE_SAMPLE_EVERY) => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Records the refusals of banned IPs as one `ip_blocked` event per IP and period:
    /// a flood from a banned address must not flood the audit log (or shed honest
    /// clients through a full queue), yet every refusal is counted.
    fn summarise_refusals(&self) {
        let drained: Vec<(IpAddr, u64)> = match self.refusals.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return,
        };
        for (ip, n) in drained.into_iter().filter(|(_, n)| *n > 0) {
            self.event(
                "",
                "ip_blocked",
                AuditSeverity::High,
                ip,
                "-",
                403,
                json!({"action": "refused", "refused_requests": n, "period_secs": REFUSAL_SUMMARY_EVERY.as_secs()}),
            );
        }
    }

    /// Waits (bounded) until queued audit records are written; bans are written too.
    pub async fn flush(&self) {
        self.flush_blocklist().await;
        self.persist_rate_limits().await;
        self.summarise_refusals();
        self.audit.flush(Duration::from_secs(5)).await;
    }

    #[allow(clippy::too_many_arguments)] // one flat record; a struct would only rename them
    fn event(
        &self,
        request_id: &str,
        event_type: &str,
        severity: AuditSeverity,
        ip: IpAddr,
        endpoint: &str,
        status: u16,
        details: Value,
    ) {
        self.audit.send(Record::Audit(AuditEvent {
            request_id: request_id.to_owned(),
            api_key_id: None,
            endpoint: endpoint.to_owned(),
            status,
            latency_ms: None,
            created_at: Utc::now(),
            event_type: Some(event_type.to_owned()),
            severity,
            ip: Some(ip.to_string()),
            details: Some(details.to_string()),
        }));
    }

    /// Whether `ip` is banned; `Err` when the answer is unknown (the blocklist was
    /// never read, or its lock was poisoned by a panic mid-update): the caller refuses.
    fn ban_check(&self, ip: IpAddr, now: Millis) -> Result<bool, Unavailable> {
        if !self.blocklist_loaded.load(Ordering::Acquire) {
            return Err(Unavailable("the IP blocklist has not been read yet"));
        }
        self.blocklist
            .read()
            .map(|b| b.is_blocked(ip, now))
            .map_err(|_| poisoned("blocklist"))
    }

    /// Counts a refused request of a banned IP. The first refusal of a period is
    /// recorded at once (with its request id); the rest are summed up by
    /// [`Guard::summarise_refusals`].
    fn note_refusal(&self, ip: IpAddr, rid: &str, path: &str) {
        self.stats.refused_blocked.fetch_add(1, Ordering::Relaxed);
        let first = match self.refusals.lock() {
            // Bounded like everything else: beyond the cap, only the counter above.
            Ok(mut m) if m.len() < MAX_TRACKED || m.contains_key(&ip) => match m.get_mut(&ip) {
                Some(n) => {
                    *n += 1;
                    false
                }
                None => {
                    m.insert(ip, 0);
                    true
                }
            },
            _ => false,
        };
        if first {
            self.event(
                rid,
                "ip_blocked",
                AuditSeverity::High,
                ip,
                path,
                403,
                json!({"action": "refused", "refused_requests": 1}),
            );
        }
    }

    /// Whether cross-site-marked requests of `ip` are refused right now.
    fn cross_site_refused(&self, ip: IpAddr, now: Millis) -> Result<bool, Unavailable> {
        let m = self
            .cross_site
            .lock()
            .map_err(|_| poisoned("cross-site budget"))?;
        Ok(m.get(&budget_key(ip))
            .is_some_and(|b| b.refused_until > now))
    }

    /// Spends one unit of `ip`'s cross-site budget (a failed credential, a finding or
    /// a 404 of a cross-site-marked request). Over budget, its cross-site requests are
    /// refused for [`CROSS_SITE_REFUSAL_MS`], recorded as `cross_site_refused`; the
    /// address itself is never banned for them, so a page cannot get its visitors
    /// banned, and their direct requests are unaffected.
    pub(crate) fn cross_site_strike(
        &self,
        ip: IpAddr,
        reason: &'static str,
        rid: &str,
        path: &str,
        now: Millis,
    ) {
        let key = budget_key(ip);
        let started = {
            let Ok(mut m) = self.cross_site.lock() else {
                // Refused anyway: the next cross-site request fails closed on the lock.
                tracing::error!(client_ip = %ip, "cross-site budget unavailable: its lock is poisoned");
                return;
            };
            if m.len() >= MAX_TRACKED && !m.contains_key(&key) {
                m.retain(|_, b| {
                    b.refused_until > now
                        || now.saturating_sub(b.window_start) < CROSS_SITE_WINDOW_MS
                });
            }
            if m.len() >= MAX_TRACKED && !m.contains_key(&key) {
                // Bounded like everything else; beyond the cap the strike is lost, but
                // cross-site findings are still refused outright.
                tracing::warn!(client_ip = %ip, "cross-site budget table full; strike not recorded");
                return;
            }
            let b = m.entry(key).or_insert(CrossSiteBudget {
                strikes: 0,
                window_start: now,
                refused_until: 0,
            });
            if now.saturating_sub(b.window_start) >= CROSS_SITE_WINDOW_MS {
                b.strikes = 0;
                b.window_start = now;
            }
            b.strikes = b.strikes.saturating_add(1);
            if b.strikes >= CROSS_SITE_BUDGET && b.refused_until <= now {
                b.refused_until = now.saturating_add(CROSS_SITE_REFUSAL_MS);
                Some(b.strikes)
            } else {
                None
            }
        };
        if let Some(strikes) = started {
            tracing::warn!(client_ip = %ip, strikes, last_reason = reason, "cross-site requests of this address refused for a while (no ban)");
            self.event(
                rid,
                "cross_site_refused",
                AuditSeverity::Medium,
                ip,
                path,
                403,
                json!({
                    "action": "cross_site_requests_refused",
                    "scope": key.to_string(),
                    "strikes": strikes,
                    "last_reason": reason,
                    "refused_until": to_dt(now.saturating_add(CROSS_SITE_REFUSAL_MS)).to_rfc3339(),
                }),
            );
        }
    }

    /// A block decided now (on `entry`: the address, or its /64 or /48 aggregate):
    /// persist it at once and record it.
    fn blocked(&self, ip: IpAddr, entry: IpNet, rid: &str, path: &str, mut details: Value) {
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.dirty.lock() {
            d.insert(entry);
        }
        self.persist_now.notify_one();
        if !entry.is_host() {
            details["blocked_network"] = json!(entry.to_string());
        }
        tracing::warn!(client_ip = %ip, entry = %entry, details = %details, "IP blocked");
        self.event(
            rid,
            "ip_blocked",
            AuditSeverity::High,
            ip,
            path,
            403,
            details,
        );
    }

    /// Counts a failed presented credential (when the blocklist is on for this
    /// listener). A cross-site-marked request only spends its address's cross-site
    /// budget: a web page must not be able to get its visitors banned.
    pub(crate) fn auth_failure(
        &self,
        exposed: bool,
        ip: IpAddr,
        cross_site: bool,
        rid: &str,
        path: &str,
    ) {
        if self.policies.load().effective(exposed).blocklist.is_none() {
            return;
        }
        let now = now_ms();
        if cross_site {
            self.cross_site_strike(ip, "authentication_failure", rid, path, now);
            return;
        }
        let outcome = match self.blocklist.write() {
            Ok(mut b) => b.record_failure(ip, now),
            Err(_) => {
                // The request is refused (401) anyway, and so is every next one: the
                // ban check fails closed on the same poisoned lock.
                tracing::error!(client_ip = %ip, "authentication failure not counted: the blocklist lock is poisoned");
                return;
            }
        };
        if !outcome.tracked {
            tracing::error!(client_ip = %ip, "authentication failure not counted: the IP blocklist is full of active bans");
        }
        if let Ok(mut d) = self.dirty.lock() {
            d.insert(outcome.entry);
        }
        if let Some(nb) = outcome.new_block {
            self.blocked(
                ip,
                outcome.entry,
                rid,
                path,
                json!({
                    "action": "blocked",
                    "reason": "authentication_failures",
                    "failure_count": outcome.failure_count,
                    "permanent": nb.permanent,
                    "blocked_until": nb.until.map(|u| to_dt(u).to_rfc3339()),
                }),
            );
        } else {
            tracing::warn!(client_ip = %ip, entry = %outcome.entry, failures = outcome.failure_count, "authentication failure counted");
        }
    }

    /// The per-key rate limit; `None` when none is configured.
    pub(crate) fn key_limit(&self, exposed: bool, key_id: &str) -> Option<(Decision, Millis)> {
        let limit = self.policies.load().effective(exposed).key_rate_limit?;
        let now = now_ms();
        let d = match self.key_limits.lock() {
            Ok(mut l) => l.check_with(key_id, limit, now),
            Err(_) => {
                // Refuse rather than skip the limit (the caller sends 429).
                tracing::error!(api_key_id = %key_id, "per-key rate limit unavailable: its lock is poisoned; refusing");
                Decision {
                    allowed: false,
                    limit: limit.burst,
                    remaining: 0,
                    reset_after_ms: 60_000,
                    retry_after_ms: 60_000,
                }
            }
        };
        if !d.allowed {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        Some((d, now))
    }

    /// Scores the non-content JSON fields of a parsed body (never prompt content).
    /// `Err` when this request's findings got its IP banned.
    pub(crate) fn inspect_body(
        &self,
        exposed: bool,
        ip: IpAddr,
        rid: &str,
        path: &str,
        body: &Value,
    ) -> Result<(), ApiError> {
        if self.policies.load().effective(exposed).intrusion.is_none() {
            return Ok(());
        }
        let fields = flm_guard::intrusion::fields_from_json(body);
        if fields.is_empty() {
            return Ok(());
        }
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let findings = flm_guard::inspect_fields(&borrowed);
        if findings.is_empty() {
            return Ok(());
        }
        let meta = Meta {
            rid,
            path,
            method: "POST",
            user_agent: None,
        };
        match self.on_findings(ip, &findings, &meta, now_ms()) {
            Ok(true) => Err(blocked_error()),
            Ok(false) => Ok(()),
            Err(u) => Err(u.error()),
        }
    }

    /// Scores findings; returns whether the IP is banned as a result.
    fn on_findings(
        &self,
        ip: IpAddr,
        findings: &[Finding],
        m: &Meta<'_>,
        now: Millis,
    ) -> Result<bool, Unavailable> {
        let verdict = match self.intrusion.lock() {
            Ok(mut d) => d.observe(ip, findings, now),
            Err(_) => return Err(poisoned("intrusion detector")),
        };
        self.stats
            .intrusions
            .fetch_add(findings.len() as u64, Ordering::Relaxed);
        let created_at = Utc::now();
        for f in findings.iter().filter(|f| !f.weak || verdict.added > 0) {
            self.audit.send(Record::Intrusion(NewIntrusion {
                ip: ip.to_string(),
                pattern: f.pattern.as_str().to_owned(),
                score: i64::from(f.score),
                request_path: Some(truncate(m.path, 2048)),
                user_agent: m.user_agent.map(|u| truncate(u, 512)),
                method: Some(m.method.to_owned()),
                created_at,
            }));
        }
        if findings
            .iter()
            .any(|f| f.pattern == Pattern::HoneypotAccess)
        {
            self.event(
                m.rid,
                "honeypot",
                AuditSeverity::Medium,
                ip,
                m.path,
                404,
                json!({"path": truncate(m.path, 512), "method": m.method, "score_added": verdict.added, "total_score": verdict.score}),
            );
        }
        let patterns: Vec<&str> = findings.iter().map(|f| f.pattern.as_str()).collect();
        self.ladder(ip, verdict, "intrusion", &patterns, m, now)
    }

    /// Acts on a score verdict (intrusion or anomaly); returns whether the IP is
    /// banned as a result.
    fn ladder(
        &self,
        ip: IpAddr,
        verdict: Verdict,
        source: &str,
        patterns: &[&str],
        m: &Meta<'_>,
        now: Millis,
    ) -> Result<bool, Unavailable> {
        match verdict.action {
            Some(Action::Block { duration_ms }) => {
                let outcome = match self.blocklist.write() {
                    Ok(mut b) => b.impose(ip, duration_ms, now),
                    Err(_) => return Err(poisoned("blocklist")),
                };
                if let Ok(mut d) = self.dirty.lock() {
                    d.insert(outcome.entry);
                }
                let event = if source == "intrusion" {
                    "intrusion"
                } else {
                    "anomaly_block"
                };
                self.event(
                    m.rid,
                    event,
                    AuditSeverity::High,
                    ip,
                    m.path,
                    403,
                    json!({
                        "score": verdict.score,
                        "patterns": patterns,
                        "block_duration_seconds": duration_ms / 1000,
                        "failures_recorded": outcome.failure_count,
                    }),
                );
                if outcome.new_block.is_some() {
                    self.blocked(
                        ip,
                        outcome.entry,
                        m.rid,
                        m.path,
                        json!({"action": "blocked", "reason": source, "score": verdict.score, "failure_count": outcome.failure_count, "blocked_until": outcome.new_block.and_then(|b| b.until).map(|u| to_dt(u).to_rfc3339())}),
                    );
                }
                Ok(outcome.blocked)
            }
            Some(Action::Warn) => {
                tracing::warn!(client_ip = %ip, score = verdict.score, source, patterns = %patterns.join(","), "suspicious client: closer monitoring");
                Ok(false)
            }
            None => Ok(false),
        }
    }

    fn on_anomalies(
        &self,
        ip: IpAddr,
        report: AnomalyReport,
        m: &Meta<'_>,
        now: Millis,
    ) -> Result<bool, Unavailable> {
        if report.anomalies.is_empty() && report.verdict.action.is_none() {
            return Ok(false);
        }
        self.stats
            .anomalies
            .fetch_add(report.anomalies.len() as u64, Ordering::Relaxed);
        let created_at = Utc::now();
        for a in &report.anomalies {
            let details = json!({"observed": a.observed, "threshold": a.threshold, "path": truncate(m.path, 512), "method": m.method});
            self.audit.send(Record::Anomaly(NewAnomaly {
                ip: ip.to_string(),
                anomaly_type: a.kind.as_str().to_owned(),
                score: i64::from(a.score),
                details: Some(details.to_string()),
                created_at,
            }));
            if !a.weak {
                self.event(
                    m.rid,
                    "anomaly",
                    AuditSeverity::Medium,
                    ip,
                    m.path,
                    0,
                    json!({"anomaly_type": a.kind.as_str(), "score_added": a.score, "total_score": report.verdict.score, "observed": a.observed, "threshold": a.threshold}),
                );
            }
        }
        let kinds: Vec<&str> = report.anomalies.iter().map(|a| a.kind.as_str()).collect();
        self.ladder(ip, report.verdict, "anomaly", &kinds, m, now)
    }

    fn resource_admission(&self, t: &flm_guard::ResourceThresholds) -> Admission {
        let adm = ResourceGuard::admit(
            f64_load(&self.cpu_bits),
            f64_load(&self.mem_bits),
            self.conns.load(Ordering::Relaxed),
            t,
        );
        match adm {
            Admission::Throttle(r) => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                // One alert per episode, not one per refused request.
                if !self.throttle_alerted.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        resource = r.kind.as_str(),
                        value = r.value,
                        threshold = r.threshold,
                        "resource protection: refusing new requests"
                    );
                    let kind = match r.kind {
                        ResourceKind::Cpu => ResourceAlertKind::Cpu,
                        ResourceKind::Memory => ResourceAlertKind::Memory,
                        ResourceKind::Connections => ResourceAlertKind::Connections,
                    };
                    self.audit.send(Record::Resource(NewResourceAlert {
                        alert_type: kind,
                        value: r.value,
                        threshold: r.threshold,
                        created_at: Utc::now(),
                    }));
                    self.event(
                        "",
                        "resource_alert",
                        AuditSeverity::High,
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        "-",
                        503,
                        json!({"resource": r.kind.as_str(), "value": r.value, "threshold": r.threshold, "cpu_usage": f64_load(&self.cpu_bits), "memory_usage": f64_load(&self.mem_bits)}),
                    );
                }
            }
            Admission::Admit => {
                self.throttle_alerted.store(false, Ordering::Relaxed);
            }
        }
        adm
    }

    /// The checks before routing; `Some` is the refusal to send.
    #[allow(clippy::too_many_arguments)] // the request's facts, each used once
    fn admit(
        &self,
        pols: &Policies,
        exposed: bool,
        ip: IpAddr,
        cross_site: bool,
        req: &Request,
        m: &Meta<'_>,
        now: Millis,
    ) -> Option<Response> {
        if let Some(reason) = &pols.closed {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "access_denied",
                format!("the proxy refuses requests until its security policy is fixed ({reason}); see `flm security policy show`"),
            )
            .into_response());
        }
        let eff = pols.effective(exposed);
        if let Some(t) = &eff.resources {
            if let Admission::Throttle(r) = self.resource_admission(t) {
                let mut resp = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "resource_throttle",
                    "server_error",
                    format!(
                        "the server is overloaded ({} {:.0} above {:.0}); retry shortly",
                        r.kind.as_str(),
                        r.value,
                        r.threshold
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return Some(resp);
            }
        }
        if let Some(resp) = self.audit.refusal() {
            return Some(resp);
        }
        if !eff.allow_list.allows(ip) {
            return Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "access_denied",
                    "IP address not in whitelist",
                )
                .into_response(),
            );
        }
        if cross_site {
            match self.cross_site_refused(ip, now) {
                Ok(false) => {}
                Ok(true) => return Some(cross_site_refusal()),
                Err(u) => return Some(u.response()),
            }
        }
        if eff.intrusion.is_some() {
            let headers: Vec<(&str, &[u8])> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            let findings = inspect(&RequestFacts {
                method: m.method,
                path: m.path,
                query: req.uri().query(),
                headers: &headers,
                fields: &[],
            });
            // Weak signals (a missing user agent…) alone neither refuse nor count.
            if cross_site && findings.iter().any(|f| !f.weak) {
                // The attack is not delivered, and it does not count against the
                // address: a page can make its visitors' browsers send it.
                let patterns: Vec<&str> = findings.iter().map(|f| f.pattern.as_str()).collect();
                tracing::warn!(client_ip = %ip, patterns = %patterns.join(","), path = %m.path, "cross-site request with attack signatures refused");
                self.cross_site_strike(ip, "intrusion_signature", m.rid, m.path, now);
                return Some(
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_site_request_refused",
                        "access_denied",
                        "cross-site request refused: it carries attack signatures",
                    )
                    .into_response(),
                );
            }
            if !findings.is_empty() && !cross_site {
                match self.on_findings(ip, &findings, m, now) {
                    Ok(false) => {}
                    Ok(true) => return Some(blocked_response()),
                    Err(u) => return Some(u.response()),
                }
            }
        }
        let mut score = 0;
        // Cross-site requests stay out of the anomaly windows: a page could otherwise
        // make a visitor's browser "scan" or "flood" into a ban.
        if eff.anomaly.is_some() && !cross_site {
            let report = match self.anomaly.lock() {
                Ok(mut d) => {
                    let r = d.on_request(
                        ip,
                        &RequestObservation {
                            method: m.method,
                            path: m.path,
                            body_bytes: crate::media::anomaly_body_bytes(
                                m.path,
                                content_length(req.headers()),
                            ),
                            header_count: req.headers().len(),
                            user_agent: req
                                .headers()
                                .get(header::USER_AGENT)
                                .map(HeaderValue::as_bytes),
                            fingerprint: None,
                        },
                        now,
                    );
                    score = r.verdict.score;
                    r
                }
                Err(_) => return Some(poisoned("anomaly detector").response()),
            };
            match self.on_anomalies(ip, report, m, now) {
                Ok(false) => {}
                Ok(true) => return Some(blocked_response()),
                Err(u) => return Some(u.response()),
            }
        }
        if let Some(limit) = eff.ip_rate_limit {
            if eff.intrusion.is_some() {
                match self.intrusion.lock() {
                    Ok(d) => score = score.max(d.score(ip, now)),
                    Err(_) => return Some(poisoned("intrusion detector").response()),
                }
            }
            let limit = limit.tightened(Tightening::for_ip(score, false));
            let d = match self.ip_limits.lock() {
                Ok(mut l) => l.check_with(&rate_subject(ip), limit, now),
                Err(_) => return Some(poisoned("per-IP rate limit").response()),
            };
            if !d.allowed {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let mut resp = rate_limited("too many requests from your address").into_response();
                rate_headers(resp.headers_mut(), &d, now, true);
                return Some(resp);
            }
        }
        None
    }
}

struct Meta<'a> {
    rid: &'a str,
    path: &'a str,
    method: &'a str,
    user_agent: Option<&'a str>,
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

fn content_length(h: &HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn blocked_error() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "ip_blocked",
        "access_denied",
        "your IP address is blocked after repeated failures or suspicious requests",
    )
}

fn blocked_response() -> Response {
    let mut resp = blocked_error().into_response();
    // The body was not read; the connection cannot be reused, and a banned client
    // should pay for a new connection per attempt.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `429 rate_limit_exceeded`.
pub(crate) fn rate_limited(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "rate_limit_error",
        message,
    )
}

/// `Retry-After` (when refused) and `X-RateLimit-*`.
pub(crate) fn rate_headers(h: &mut HeaderMap, d: &Decision, now: Millis, retry: bool) {
    if retry && !d.allowed {
        h.insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs()));
    }
    h.insert(
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderValue::from(d.limit),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderValue::from(d.remaining),
    );
    h.insert(
        HeaderName::from_static("x-ratelimit-reset"),
        HeaderValue::from(d.reset_at_unix_secs(now)),
    );
}

fn forwarded(h: &HeaderMap, name: &str) -> Option<String> {
    let mut it = h.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = it.next()?;
    let mut out = first.to_owned();
    for v in it {
        out.push(',');
        out.push_str(v);
    }
    Some(out)
}

/// The defence middleware (see the module docs for the order of checks); it also
/// writes the audit record of every request.
pub(crate) async fn layer(State(st): State<SharedState>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let g = &st.guard;
    let started = Instant::now();
    let now = now_ms();
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.0.ip());
    // One policy for the whole request, even if it changes while it runs.
    let pols = g.policies.load_full();
    let ip = {
        let trusted = &pols.effective(st.exposed).trusted_proxies;
        if trusted.is_empty() {
            canonical(peer)
        } else {
            let xff = forwarded(req.headers(), "x-forwarded-for");
            let real = forwarded(req.headers(), "x-real-ip");
            client_ip(peer, xff.as_deref(), real.as_deref(), trusted)
        }
    };
    let banned = match g.ban_check(ip, now) {
        Ok(b) => b,
        Err(u) => return u.response(),
    };
    if banned {
        let rid = req
            .extensions()
            .get::<RequestId>()
            .map_or("", |r| r.0.as_str());
        g.note_refusal(ip, rid, req.uri().path());
        if let Ok(mut b) = g.blocklist.try_write() {
            b.note_attempt(ip, now);
        }
        let mut resp = blocked_response();
        resp.extensions_mut().insert(ClientIp(ip));
        return resp;
    }
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let meta = Meta {
        rid: &rid,
        path: &path,
        method: &method,
        user_agent: user_agent.as_deref(),
    };
    let cross_site = is_cross_site(req.headers(), &pols.raw.cors.allowed_origins);
    let mut resp = match g.admit(&pols, st.exposed, ip, cross_site, &req, &meta, now) {
        Some(refusal) => refusal,
        None => {
            req.extensions_mut().insert(ClientIp(ip));
            if cross_site {
                req.extensions_mut().insert(CrossSite);
            }
            next.run(req).await
        }
    };
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let eff = pols.effective(st.exposed);
    if cross_site && status == 404 && (eff.anomaly.is_some() || eff.intrusion.is_some()) {
        // What the anomaly windows would have scored as a scan.
        g.cross_site_strike(ip, "not_found", &rid, &path, now_ms());
    }
    if eff.anomaly.is_some() && !cross_site {
        let streaming = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let report = g.anomaly.lock().ok().map(|mut d| {
            d.on_response(
                ip,
                &ResponseObservation {
                    status,
                    duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    streaming,
                },
                now_ms(),
            )
        });
        if let Some(r) = report {
            // The response is sent either way; a poisoned lock refuses the next
            // request at the ban check or in `admit`.
            let _ = g.on_anomalies(ip, r, &meta, now_ms());
        }
    }
    if resp
        .extensions()
        .get::<crate::audit::Unrecorded>()
        .is_none()
    {
        g.audit.send(Record::Audit(audit_event(
            &resp, rid, path, &method, ip, elapsed,
        )));
    }
    // For the access log (written by the outermost layer).
    resp.extensions_mut().insert(ClientIp(ip));
    resp
}

impl Guard {
    /// Every counter as `(metric name, Prometheus kind, help, value)`: the one list
    /// behind `GET /metrics` and the daemon's `GET /admin/status`.
    pub fn counters(&self) -> [(&'static str, &'static str, &'static str, u64); 10] {
        let g = self;
        let (d, a) = (&g.stats, g.audit_stats());
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "flm_proxy_open_connections",
                "gauge",
                "Client connections with a request in progress (what resource protection counts).",
                u64::from(g.conns.load(Ordering::Relaxed)),
            ),
            (
                "flm_proxy_ip_blocked_refusals_total",
                "counter",
                "Requests refused because their address is banned.",
                load(&d.refused_blocked),
            ),
            (
                "flm_proxy_blocks_total",
                "counter",
                "Bans started or lengthened.",
                load(&d.blocks),
            ),
            (
                "flm_proxy_intrusions_detected",
                "counter",
                "Intrusion signature findings.",
                load(&d.intrusions),
            ),
            (
                "flm_proxy_anomalies_detected",
                "counter",
                "Anomalies detected.",
                load(&d.anomalies),
            ),
            (
                "flm_proxy_rate_limited_total",
                "counter",
                "Requests refused by a rate limit.",
                load(&d.rate_limited),
            ),
            (
                "flm_proxy_resource_throttled_total",
                "counter",
                "Requests refused by resource protection.",
                load(&d.throttled),
            ),
            (
                "flm_proxy_audit_written_total",
                "counter",
                "Audit rows written.",
                load(&a.written),
            ),
            (
                "flm_proxy_audit_shed_total",
                "counter",
                "Requests refused because the audit queue was full.",
                load(&a.shed),
            ),
            (
                "flm_proxy_audit_dropped_total",
                "counter",
                "Audit records lost (queue full after admission, or the database refused them).",
                load(&a.dropped),
            ),
        ]
    }
}

/// `GET /metrics` (behind an API key): the defence's counters and the request
/// metrics ([`crate::metrics`]) in the Prometheus text format.
pub(crate) async fn metrics(State(st): State<SharedState>) -> Response {
    let rows = st.guard.counters();
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    crate::metrics::render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response()
}

fn audit_event(
    resp: &Response,
    request_id: String,
    endpoint: String,
    method: &str,
    ip: IpAddr,
    elapsed: Duration,
) -> AuditEvent {
    let status = resp.status().as_u16();
    let err = resp.extensions().get::<ApiError>();
    let key = resp.extensions().get::<KeyId>().map(|k| k.0.clone());
    let (event_type, severity, details) = match err.map(|e| e.code) {
        Some("invalid_api_key") => {
            let reason = resp
                .extensions()
                .get::<AuthReason>()
                .map_or("invalid_or_revoked_api_key", |r| r.0);
            (
                Some("auth_failure"),
                AuditSeverity::Medium,
                json!({"method": method, "reason": reason}),
            )
        }
        // A valid key used outside its scope: audited with the authentication
        // refusals (it is no failed guess, so it does not count towards a ban).
        Some(reason @ ("model_not_allowed" | "route_not_allowed")) => (
            Some("auth_failure"),
            AuditSeverity::Medium,
            json!({"method": method, "reason": reason}),
        ),
        Some("ip_blocked") => (
            Some("ip_blocked"),
            AuditSeverity::High,
            json!({"method": method, "action": "refused"}),
        ),
        Some("rate_limit_exceeded") => (
            Some("rate_limit"),
            AuditSeverity::Medium,
            json!({"method": method, "scope": if key.is_some() { "api_key" } else { "ip" }}),
        ),
        // A key's token budget (tokens per minute, monthly quota) is exhausted.
        Some(reason @ ("token_rate_limit_exceeded" | "monthly_quota_exceeded")) => (
            Some("rate_limit"),
            AuditSeverity::Medium,
            json!({"method": method, "scope": "api_key", "reason": reason}),
        ),
        // A remote image the SSRF guard refused: someone may be probing the network
        // behind the proxy through it.
        Some(code @ "image_url_forbidden") => (
            None,
            AuditSeverity::Medium,
            json!({"method": method, "error": code}),
        ),
        Some(code) if status >= 500 => (
            None,
            AuditSeverity::High,
            json!({"method": method, "error": code}),
        ),
        Some(code) => (
            None,
            if status == 403 {
                AuditSeverity::Medium
            } else {
                AuditSeverity::Low
            },
            json!({"method": method, "error": code}),
        ),
        None if key.is_some() && status < 300 => (
            Some("auth_success"),
            AuditSeverity::Low,
            json!({"method": method}),
        ),
        None if status >= 500 => (None, AuditSeverity::High, json!({"method": method})),
        None => (None, AuditSeverity::Low, json!({"method": method})),
    };
    AuditEvent {
        request_id,
        api_key_id: key,
        endpoint,
        status,
        latency_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        created_at: Utc::now(),
        event_type: event_type.map(str::to_owned),
        severity,
        ip: Some(ip.to_string()),
        details: Some(details.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
    use super::*;

    /// Poisons `lock` the way a panic in the middle of an update does.
    fn poison<T: Send>(lock: &Mutex<T>) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = lock.lock().unwrap();
                    panic!("simulated panic while holding the lock");
                })
                .join();
        });
        assert!(lock.is_poisoned());
    }

    fn open_guard(policy: &str) -> (Guard, Policies) {
        let guard = Guard::new(None, None);
        let raw = SecurityPolicy::from_json_str(policy).unwrap();
        let pols = Policies::of(raw, None, None);
        guard.apply_configs(&pols);
        (guard, pols)
    }

    fn request(path: &str) -> Request {
        Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    const META: Meta<'static> = Meta {
        rid: "r",
        path: "/v1/models",
        method: "GET",
        user_agent: None,
    };

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn a_poisoned_blocklist_refuses_instead_of_admitting() {
        let (guard, _) = open_guard("{}");
        assert!(!guard.ban_check(IP, 1).unwrap());
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = guard.blocklist.write().unwrap();
                    panic!("simulated panic while holding the lock");
                })
                .join();
        });
        assert!(
            guard.ban_check(IP, 1).is_err(),
            "unknown ban state must refuse"
        );
        assert_eq!(
            guard.ban_check(IP, 1).unwrap_err().response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn an_unread_blocklist_refuses() {
        let deps = None::<SecurityDeps>;
        let guard = Guard::new(deps, None);
        assert!(guard.ban_check(IP, 1).is_ok(), "no store: nothing to read");
        guard.blocklist_loaded.store(false, Ordering::SeqCst);
        assert!(guard.ban_check(IP, 1).is_err());
    }

    #[test]
    fn poisoned_detectors_and_limits_refuse_with_503() {
        let policy = r#"{"intrusion_detection":{"enabled":true},"anomaly_detection":{"enabled":true},"ip_rate_limit":{"enabled":true,"rpm":1000}}"#;
        for which in ["anomaly", "ip_limits", "intrusion"] {
            let (guard, pols) = open_guard(policy);
            let req = request("/v1/models");
            assert!(
                guard
                    .admit(&pols, false, IP, false, &req, &META, 1)
                    .is_none(),
                "{which}: admitted while healthy"
            );
            match which {
                "anomaly" => poison(&guard.anomaly),
                "ip_limits" => poison(&guard.ip_limits),
                _ => poison(&guard.intrusion),
            }
            let resp = guard
                .admit(&pols, false, IP, false, &req, &META, 2)
                .unwrap_or_else(|| panic!("{which}: a poisoned lock admitted the request"));
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{which}");
        }
        // Findings with a poisoned intrusion detector: refused, not waved through.
        let (guard, pols) = open_guard(policy);
        poison(&guard.intrusion);
        let resp = guard
            .admit(&pols, false, IP, false, &request("/wp-admin"), &META, 1)
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_poisoned_key_limit_refuses() {
        let (guard, _) = open_guard(r#"{"rate_limit":{"rpm":100}}"#);
        guard.policies.store(Arc::new(Policies::of(
            SecurityPolicy::from_json_str(r#"{"rate_limit":{"rpm":100}}"#).unwrap(),
            None,
            None,
        )));
        assert!(guard.key_limit(false, "k").unwrap().0.allowed);
        poison(&guard.key_limits);
        let (d, _) = guard
            .key_limit(false, "k")
            .expect("a decision, not `no limit`");
        assert!(!d.allowed);
    }

    #[test]
    fn cross_site_marks() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let listed = vec!["https://app.example.com".to_owned()];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [String], bool);
        let cases: [Case<'_>; 9] = [
            (&[], &[], false),
            (&[("sec-fetch-site", "cross-site")], &[], true),
            (&[("sec-fetch-site", "same-site")], &[], true),
            (&[("sec-fetch-site", "same-origin")], &[], false),
            (&[("sec-fetch-site", "none")], &[], false),
            (&[("origin", "https://evil.example")], &[], true),
            (&[("origin", "null")], &[], true),
            (&[("origin", "https://app.example.com")], &listed, false),
            (
                &[
                    ("origin", "http://127.0.0.1:8780"),
                    ("host", "127.0.0.1:8780"),
                ],
                &[],
                false,
            ),
        ];
        for (headers, allowed, want) in cases {
            assert_eq!(
                is_cross_site(&h(headers), allowed),
                want,
                "{headers:?} {allowed:?}"
            );
        }
        let star = vec!["*".to_owned()];
        assert!(is_cross_site(
            &h(&[("origin", "https://evil.example")]),
            &star
        ));
    }

    #[test]
    fn the_cross_site_budget_refuses_softly_and_recovers() {
        let (guard, _) = open_guard("{}");
        let t0 = 1_000_000;
        for i in 0..CROSS_SITE_BUDGET - 1 {
            guard.cross_site_strike(IP, "test", "r", "/", t0 + Millis::from(i));
            assert!(!guard.cross_site_refused(IP, t0 + 100).unwrap());
        }
        guard.cross_site_strike(IP, "test", "r", "/", t0 + 100);
        assert!(guard.cross_site_refused(IP, t0 + 101).unwrap());
        assert!(!guard.ban_check(IP, t0 + 101).unwrap(), "never a ban");
        assert!(!guard
            .cross_site_refused(IP, t0 + 101 + CROSS_SITE_REFUSAL_MS)
            .unwrap());
        // IPv6: one /64 shares a budget.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..CROSS_SITE_BUDGET {
            guard.cross_site_strike(a, "test", "r", "/", t0);
        }
        assert!(guard.cross_site_refused(b, t0 + 1).unwrap());
        poison(&guard.cross_site);
        assert!(guard.cross_site_refused(IP, t0).is_err());
    }
}
