//! Starting, stopping and listing proxy instances; keeping the key table current.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use flm_core::keys::KeyTable;
use flm_core::ports::{ApiKeyRepository, ChangeMarkers};
use flm_core::proxy::{
    EgressConfig, EgressMode, ProxyConfig, ProxyEndpoints, ProxyError, ProxyHandle, ProxyMode,
};
use flm_core::services::{ConfigService, EngineService};
use flm_core::CoreError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::app::{self, AppState};
use crate::routing::Router;

/// Builds the engine service of an instance whose egress is not direct: the same
/// engines, with HTTP clients that go through the SOCKS5 endpoint (spec 30-proxy §11).
pub type EgressEngines =
    Arc<dyn Fn(&EgressConfig) -> Result<EngineService, CoreError> + Send + Sync>;

/// What a proxy needs from the rest of FLM; built by a composition root.
#[derive(Clone)]
pub struct ProxyDeps {
    /// Engines (detection + adapters).
    pub engines: EngineService,
    /// Settings.
    pub config: ConfigService,
    /// API keys.
    pub keys: Arc<dyn ApiKeyRepository>,
    /// Change markers of keys, policy and blocklist, polled every [`CHANGE_POLL`] so
    /// that changes made outside this process (CLI, SQL) apply within a second
    /// however the proxy was started. `None` falls back to comparing the key
    /// table's fingerprint every 2 s (the policy has its own 2 s poll; blocklist
    /// changes then need [`ProxyManager::reload_security`]).
    pub changes: Option<Arc<dyn ChangeMarkers>>,
    /// `security.db`: policy, blocklist, security events, rate-limit windows. `None`
    /// runs with the open default policy and keeps bans in memory only.
    pub security: Option<crate::defence::SecurityDeps>,
    /// Where TLS certificates are kept (`<data dir>/certs`).
    pub certs_dir: std::path::PathBuf,
    /// Engines for a Tor/SOCKS5 egress; `None` refuses egress modes other than direct.
    pub egress_engines: Option<EgressEngines>,
    /// ACME directory and trust settings (`https-acme`).
    pub acme: crate::acme_mode::AcmeDeps,
    /// `security.db` → `certificates`: where ACME certificates are recorded.
    pub certificates: Option<Arc<dyn flm_core::security::CertificateRepository>>,
    /// The audit log (egress events such as `tor_unreachable`).
    pub audit: Option<Arc<dyn flm_core::security::AuditRepository>>,
}

/// Which instances to stop.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StopTarget {
    /// By port.
    #[serde(default)]
    pub port: Option<u16>,
    /// By handle id.
    #[serde(default)]
    pub handle_id: Option<String>,
}

struct Instance {
    handle: ProxyHandle,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    grace: Duration,
    router: Arc<Router>,
    /// The served certificate and its files (TLS modes), for [`ProxyManager::reload`].
    tls: Option<(
        Arc<flm_tls::ReloadableResolver>,
        std::path::PathBuf,
        std::path::PathBuf,
    )>,
}

/// What `flm proxy reload` did on one running proxy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadOutcome {
    /// Handle id.
    pub handle_id: String,
    /// HTTP port.
    pub port: u16,
    /// What was re-read: `api_keys`, `security_policy` (policy and IP blocklist),
    /// `profiles` (model profiles and prompt templates), `certificate` (TLS modes).
    pub reloaded: Vec<String>,
    /// The served certificate changed (a renewed or replaced file).
    #[serde(default)]
    pub certificate_changed: bool,
    /// What failed; the previous state stays in force for it.
    #[serde(default)]
    pub errors: Vec<String>,
}

struct Shared {
    deps: ProxyDeps,
    keys: Arc<ArcSwap<KeyTable>>,
    key_lookup: Arc<crate::keys::KeyLookup>,
    extra_keys: Mutex<Vec<(String, String)>>,
    instances: Mutex<HashMap<String, Instance>>,
    changed: Notify,
    key_task: Mutex<Option<JoinHandle<()>>>,
    acme_renewal: Mutex<crate::acme_mode::RenewTiming>,
    guard: Arc<crate::defence::Guard>,
    /// Ends the defence's background tasks when the manager is dropped.
    _guard_stop: watch::Sender<bool>,
    guard_stop_rx: watch::Receiver<bool>,
    /// Usage metering and health history, once [`ProxyManager::start_telemetry`] ran.
    usage: Mutex<Option<Arc<crate::telemetry::UsageMeter>>>,
    health: Mutex<Option<Arc<crate::telemetry::HealthWriter>>>,
    /// Model profiles and prompt templates, in memory (see [`crate::profiles`]).
    profiles: crate::profiles::SharedProfiles,
    /// Where they are stored, once [`ProxyManager::use_profiles`] ran.
    profile_service: Mutex<Option<flm_core::profiles::ProfileService>>,
}

/// Hosts proxy instances (in the daemon, or in the CLI with `--no-daemon`).
#[derive(Clone)]
pub struct ProxyManager {
    shared: Arc<Shared>,
}

/// How often the change markers are read (one read of three rows).
pub const CHANGE_POLL: Duration = Duration::from_millis(250);
/// How often the key table's fingerprint is compared without change markers.
const KEY_POLL: Duration = Duration::from_secs(2);

impl ProxyManager {
    /// A manager with no instance yet.
    pub fn new(deps: ProxyDeps) -> Self {
        let guard = Arc::new(crate::defence::Guard::new(
            deps.security.clone(),
            deps.audit.clone(),
        ));
        let (guard_stop, guard_stop_rx) = watch::channel(false);
        let keys = Arc::new(ArcSwap::from_pointee(KeyTable::default()));
        let key_lookup = Arc::new(crate::keys::KeyLookup::new(keys.clone(), deps.keys.clone()));
        Self {
            shared: Arc::new(Shared {
                guard,
                _guard_stop: guard_stop,
                guard_stop_rx,
                deps,
                keys,
                key_lookup,
                extra_keys: Mutex::new(Vec::new()),
                instances: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                key_task: Mutex::new(None),
                acme_renewal: Mutex::new(crate::acme_mode::RenewTiming::default()),
                usage: Mutex::new(None),
                health: Mutex::new(None),
                profiles: Arc::default(),
                profile_service: Mutex::new(None),
            }),
        }
    }

    /// Adds a key that is valid while this process runs and is never stored (the
    /// daemon's key for `flm chat` on this machine).
    pub fn add_ephemeral_key(&self, id: &str, plain: &str) -> Result<(), CoreError> {
        let mut probe = KeyTable::default();
        probe.insert(id, plain)?;
        if let Ok(mut extra) = self.shared.extra_keys.lock() {
            extra.push((id.to_owned(), plain.to_owned()));
        }
        Ok(())
    }

    /// Changes the ACME timings of instances started afterwards (default: issuance
    /// bounded by 90 s, checked every 24 h, renewed when fewer than 20 days remain).
    /// For tests and operators who need an earlier renewal or a shorter bound.
    pub fn set_acme_renewal(&self, timing: crate::acme_mode::RenewTiming) {
        if let Ok(mut t) = self.shared.acme_renewal.lock() {
            *t = timing;
        }
    }

    /// Starts the automatic audit retention (archiving into `archive_dir`, size cap,
    /// low-disk warning; see [`crate::retention`]) for as long as this manager lives.
    /// Does nothing without an audit store.
    pub fn start_audit_retention(
        &self,
        archive_dir: std::path::PathBuf,
        timing: crate::retention::RetentionTiming,
    ) {
        let Some(audit) = self.shared.deps.audit.clone() else {
            return;
        };
        tokio::spawn(crate::retention::run(
            audit,
            self.shared.deps.config.clone(),
            archive_dir,
            timing,
            self.shared.guard_stop_rx.clone(),
        ));
    }

    /// Records usage aggregates and engine health history for instances started
    /// afterwards, for as long as this manager lives (see [`crate::telemetry`]).
    pub fn start_telemetry(
        &self,
        usage: Arc<dyn flm_core::usage::UsageRepository>,
        health: Arc<dyn flm_core::health::HealthLogRepository>,
    ) {
        let meter = crate::telemetry::UsageMeter::new(usage);
        tokio::spawn(meter.clone().run(self.shared.guard_stop_rx.clone()));
        if let Ok(mut u) = self.shared.usage.lock() {
            *u = Some(meter);
        }
        if let Ok(mut h) = self.shared.health.lock() {
            *h = Some(crate::telemetry::HealthWriter::new(health));
        }
    }

    /// Serves the model profiles and prompt templates of `repo` (loaded now, then
    /// followed through the `profiles` change marker like keys). Without this call
    /// the proxy has none.
    pub async fn use_profiles(&self, repo: Arc<dyn flm_core::profiles::ProfileRepository>) {
        let service = flm_core::profiles::ProfileService::new(repo);
        if let Ok(mut s) = self.shared.profile_service.lock() {
            *s = Some(service);
        }
        if let Err(e) = self.reload_profiles().await {
            tracing::warn!(error = %e, "could not load the model profiles and prompt templates");
        }
    }

    /// Re-reads the model profiles and prompt templates now.
    pub async fn reload_profiles(&self) -> Result<(), CoreError> {
        let service = self
            .shared
            .profile_service
            .lock()
            .ok()
            .and_then(|s| s.clone());
        if let Some(service) = service {
            let set = service.snapshot().await?;
            self.shared.profiles.store(Arc::new(set));
        }
        Ok(())
    }

    /// Writes the usage counted so far now (also done every 10 s and at stop).
    pub async fn flush_usage(&self) {
        let meter = self.shared.usage.lock().ok().and_then(|u| u.clone());
        if let Some(m) = meter {
            m.flush().await;
        }
    }

    /// The defence shared by every instance (counters, flush).
    pub fn guard(&self) -> &Arc<crate::defence::Guard> {
        &self.shared.guard
    }

    /// Re-reads the security policy and the IP blocklist now (after a CLI change).
    pub async fn reload_security(&self) -> Result<(), CoreError> {
        self.shared
            .guard
            .reload()
            .await
            .map_err(|e| CoreError::from(ProxyError::InvalidConfig(e)))
    }

    /// Reloads the key table from the database now (after a revoke, for instance).
    pub async fn reload_keys(&self) -> Result<usize, CoreError> {
        let records = self.shared.deps.keys.list().await?;
        let mut table = KeyTable::new(records.iter());
        let extra = self
            .shared
            .extra_keys
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        for (id, plain) in &extra {
            table.insert(id, plain)?;
        }
        let n = table.len();
        self.shared.keys.store(Arc::new(table));
        self.shared.key_lookup.forget_misses();
        Ok(n)
    }

    /// Starts the task that keeps keys, policy and blocklist in step with the store
    /// (once per manager).
    fn ensure_key_task(&self) {
        let Ok(mut task) = self.shared.key_task.lock() else {
            return;
        };
        if task.is_some() {
            return;
        }
        let me = self.clone();
        *task = Some(tokio::spawn(async move { me.follow_changes().await }));
    }

    /// Polls the change markers and reloads what changed; without markers (or while
    /// they cannot be read), compares the key fingerprint every [`KEY_POLL`]. A
    /// reload that fails is retried at the next poll. The first read reloads
    /// everything: a change may have landed between the start's loads and that read.
    async fn follow_changes(self) {
        let mut seen_keys: Option<u64> = None;
        let mut seen_security: Option<(u64, u64)> = None;
        let mut seen_profiles: Option<u64> = None;
        let mut markers_failing = false;
        let mut reload_failing = false;
        let mut fingerprint = String::new();
        let mut fingerprint_checked: Option<std::time::Instant> = None;
        let mut stop = self.shared.guard_stop_rx.clone();
        loop {
            let markers = match &self.shared.deps.changes {
                Some(m) => match m.generations().await {
                    Ok(g) => {
                        if std::mem::take(&mut markers_failing) {
                            tracing::info!("change markers readable again");
                        }
                        Some(g)
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut markers_failing, true) {
                            tracing::warn!(error = %e, "could not read the change markers; checking the API keys every 2 s until they can be read");
                        }
                        None
                    }
                },
                None => None,
            };
            if let Some(now) = markers {
                let mut failed = None;
                if seen_keys != Some(now.api_keys) {
                    match self.reload_keys().await {
                        Ok(n) => {
                            if seen_keys.is_some() {
                                tracing::info!(keys = n, "API keys changed in the store: reloaded");
                            }
                            seen_keys = Some(now.api_keys);
                        }
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
                if seen_profiles != Some(now.profiles) {
                    match self.reload_profiles().await {
                        Ok(()) => {
                            if seen_profiles.is_some() {
                                tracing::info!("model profiles or prompt templates changed in the store: reloaded");
                            }
                            seen_profiles = Some(now.profiles);
                        }
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
                let security = (now.policy, now.blocklist);
                if seen_security != Some(security) {
                    match self.shared.guard.reload().await {
                        Ok(()) => {
                            if seen_security.is_some() {
                                tracing::info!("security policy or IP blocklist changed in the store: reloaded");
                            }
                            seen_security = Some(security);
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) if !reload_failing => {
                        tracing::warn!(error = %e, "could not apply a change of the store; retrying");
                        reload_failing = true;
                    }
                    None => reload_failing = false,
                    Some(_) => {}
                }
            } else if fingerprint_checked.is_none_or(|t| t.elapsed() >= KEY_POLL) {
                fingerprint_checked = Some(std::time::Instant::now());
                match self.shared.deps.keys.fingerprint().await {
                    Ok(fp) if fp != fingerprint => match self.reload_keys().await {
                        Ok(_) => fingerprint = fp,
                        Err(e) => tracing::warn!(error = %e, "could not reload API keys"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not check API keys"),
                }
                if let Err(e) = self.reload_profiles().await {
                    tracing::warn!(error = %e, "could not reload the model profiles");
                }
            }
            self.shared.key_lookup.budgets().flush_if_due().await;
            tokio::select! {
                _ = tokio::time::sleep(CHANGE_POLL) => {}
                _ = crate::stopped(&mut stop) => {
                    self.shared.key_lookup.budgets().flush().await;
                    return;
                }
            }
        }
    }

    /// Starts a proxy instance.
    pub async fn start(&self, config: ProxyConfig) -> Result<ProxyHandle, CoreError> {
        let ip = config.validate()?;
        let tls_mode = config.mode != ProxyMode::LocalHttp;
        let mut acme = if config.mode == ProxyMode::HttpsAcme {
            Some(crate::acme_mode::acme_config(
                &self.shared.deps.acme,
                &config,
                &self.shared.deps.certs_dir,
            )?)
        } else {
            None
        };
        if self
            .status()
            .iter()
            .any(|h| h.port == config.port || h.https_port == Some(config.port))
        {
            return Err(ProxyError::AlreadyRunning(format!(
                "a proxy already runs on port {}; stop it with `flm proxy stop --port {}`",
                config.port, config.port
            ))
            .into());
        }
        let (engines, egress, egress_note) = self.egress(&config.egress).await?;
        // ACME traffic takes the same egress as engine traffic (spec 30-proxy §11);
        // `socks5h`: the SOCKS server resolves the CA's name (no DNS leak under Tor).
        if let (Some(a), Some(ep)) = (acme.as_mut(), egress.endpoint()) {
            a.proxy = Some(format!("socks5h://{ep}"));
        }
        if let Some(a) = acme.as_mut() {
            if let Ok(t) = self.shared.acme_renewal.lock() {
                a.timeout = t.issuance_timeout;
            }
        }
        // Both ports are bound before anything starts, so a taken port+1 fails cleanly.
        let listener = bind(ip, config.port)?;
        let https_listener = if tls_mode {
            let https_port = config.port.checked_add(1).ok_or_else(|| {
                ProxyError::InvalidConfig("TLS modes also use port+1; choose a lower port".into())
            })?;
            Some(bind(ip, https_port)?)
        } else {
            None
        };
        let local = listener
            .local_addr()
            .map_err(|e| ProxyError::PortInUse(format!("cannot read the bound address: {e}")))?;
        let https_local = match &https_listener {
            Some(l) => Some(l.local_addr().map_err(|e| {
                ProxyError::PortInUse(format!("cannot read the bound address: {e}"))
            })?),
            None => None,
        };
        let lan = lan_ip();
        let settings = self.shared.deps.config.proxy_settings().await?;
        let grace = settings.shutdown_grace;
        // One connection table for all listeners of this proxy; trusted reverse proxies
        // carry many clients on one address, so they are exempt from the per-address cap.
        let conns = {
            let guard = self.shared.guard.clone();
            let exposed = !ip.is_loopback();
            let exempt: crate::server::Exempt = Box::new(move |peer| {
                guard
                    .policies()
                    .effective(exposed)
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(peer))
            });
            crate::server::Connections::new(
                crate::server::ConnLimits::of(&settings),
                self.shared.guard.conns.clone(),
                Some(exempt),
            )
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut servers = Vec::new();
        let mut http_listener = Some(listener);
        let mut mode = config.mode;
        let mut last_error = egress_note;
        let responder = flm_acme::Http01Responder::new();
        let mut acme_not_after = None;
        let tls = match (&acme, https_local) {
            (Some(acme), Some(https_local)) => {
                // HTTP-01 answers come first on the HTTP port, then the redirect.
                if let Some(l) = http_listener.take() {
                    let app = flm_acme::http01_router(responder.clone())
                        .merge(crate::tls_mode::redirect_app(https_local.port()));
                    servers.push(tokio::spawn(crate::server::serve(
                        l,
                        app,
                        shutdown_rx.clone(),
                        grace,
                        conns.clone(),
                    )));
                }
                let started =
                    crate::acme_mode::start(acme, &responder, &self.shared.deps.certs_dir, ip, lan)
                        .await;
                match started {
                    Ok(st) => {
                        mode = st.mode;
                        acme_not_after = st.acme_not_after;
                        if let Some(b) = &st.acme_bundle {
                            self.record_acme(b, config.acme_domain.clone());
                        }
                        if let Some(e) = st.last_error {
                            last_error = Some(match last_error {
                                Some(prev) => format!("{prev}; {e}"),
                                None => e,
                            });
                        }
                        Some(st.tls)
                    }
                    Err(e) => {
                        let _ = shutdown.send(true);
                        return Err(e);
                    }
                }
            }
            _ if tls_mode => {
                let (mode, dir) = (config.mode, self.shared.deps.certs_dir.clone());
                let setup = tokio::task::spawn_blocking(move || {
                    crate::tls_mode::setup(mode, &dir, ip, lan)
                })
                .await
                .map_err(|e| {
                    ProxyError::InvalidConfig(format!("certificate task failed: {e}"))
                })??;
                Some(setup)
            }
            _ => None,
        };
        if let Err(e) = self.reload_keys().await {
            let _ = shutdown.send(true);
            return Err(e);
        }
        self.ensure_key_task();
        self.shared
            .guard
            .load(self.shared.guard_stop_rx.clone())
            .await;
        let engine_settings = match self.shared.deps.engines.settings().await {
            Ok(s) => s,
            Err(e) => {
                let _ = shutdown.send(true);
                return Err(e);
            }
        };
        let router = Router::new();
        let state = Arc::new(AppState {
            router: router.clone(),
            key_lookup: self.shared.key_lookup.clone(),
            settings,
            guard: self.shared.guard.clone(),
            exposed: !ip.is_loopback(),
            first_check_wait: engine_settings.detect_timeout + Duration::from_secs(2),
            usage: self.shared.usage.lock().ok().and_then(|u| u.clone()),
            media_egress: egress.endpoint(),
            profiles: self.shared.profiles.clone(),
        });
        tokio::spawn(router.clone().monitor(
            engines,
            settings.engine_check_interval,
            engine_settings.request_timeout,
            self.shared.health.lock().ok().and_then(|h| h.clone()),
            shutdown_rx.clone(),
        ));
        let app = app::build(state);
        let id = format!("proxy-{}", local.port());
        let tls_files = tls.as_ref().map(|t| {
            (
                t.resolver.clone(),
                std::path::PathBuf::from(&t.info.cert_path),
                t.key_path.clone(),
            )
        });
        let (https_port, endpoints, tls_info) = match (https_listener, https_local, tls) {
            (Some(https), Some(https_local), Some(tls)) => {
                let server_config = match tls.resolver.server_config() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = shutdown.send(true);
                        return Err(ProxyError::InvalidConfig(format!(
                            "TLS configuration failed: {e}"
                        ))
                        .into());
                    }
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
                servers.push(tokio::spawn(crate::server::serve_tls(
                    https,
                    acceptor,
                    app,
                    shutdown_rx.clone(),
                    grace,
                    conns.clone(),
                )));
                if let Some(l) = http_listener.take() {
                    servers.push(tokio::spawn(crate::server::serve(
                        l,
                        crate::tls_mode::redirect_app(https_local.port()),
                        shutdown_rx.clone(),
                        grace,
                        conns.clone(),
                    )));
                }
                match acme {
                    Some(acme) => {
                        let me = self.clone();
                        let hid = id.clone();
                        let domain = config.acme_domain.clone();
                        let report: crate::acme_mode::Report =
                            Arc::new(move |mode, err, bundle| {
                                if let Some(b) = bundle {
                                    me.record_acme(b, domain.clone());
                                }
                                me.update_handle(&hid, |h| {
                                    h.mode = mode;
                                    h.last_error = err.clone();
                                    if let Some(b) = bundle {
                                        h.tls = Some(crate::acme_mode::info(b));
                                    }
                                })
                            });
                        tokio::spawn(crate::acme_mode::renew_loop(
                            acme,
                            responder,
                            tls.resolver.clone(),
                            acme_not_after,
                            report,
                            self.shared
                                .acme_renewal
                                .lock()
                                .map(|t| *t)
                                .unwrap_or_default(),
                            shutdown_rx.clone(),
                        ));
                    }
                    None => {
                        tokio::spawn(crate::tls_mode::renew_loop(
                            config.mode,
                            self.shared.deps.certs_dir.clone(),
                            ip,
                            lan,
                            tls.resolver.clone(),
                            shutdown_rx.clone(),
                        ));
                    }
                }
                tracing::info!(addr = %https_local, "listening on https://{https_local} (http://{local} redirects)");
                let mut eps = endpoints(ip, https_local, "https", lan);
                if let Some(d) = &config.acme_domain {
                    let d = d.trim();
                    let d = d.strip_prefix("*.").unwrap_or(d);
                    eps.external = Some(format!("https://{d}:{}", https_local.port()));
                }
                (Some(https_local.port()), eps, Some(tls.info))
            }
            _ => {
                if let Some(l) = http_listener.take() {
                    servers.push(tokio::spawn(crate::server::serve(
                        l,
                        app,
                        shutdown_rx.clone(),
                        grace,
                        conns.clone(),
                    )));
                }
                tracing::info!(addr = %local, "listening on http://{local}");
                (None, endpoints(ip, local, "http", lan), None)
            }
        };
        let handle = ProxyHandle {
            id,
            pid: std::process::id(),
            port: local.port(),
            https_port,
            mode,
            listen_addr: config.listen_addr.clone(),
            acme_domain: config.acme_domain.clone(),
            egress,
            running: true,
            last_error,
            started_at: chrono::Utc::now().to_rfc3339(),
            endpoints,
            tls: tls_info,
        };
        if let Ok(mut inst) = self.shared.instances.lock() {
            inst.insert(
                handle.id.clone(),
                Instance {
                    handle: handle.clone(),
                    shutdown,
                    servers,
                    grace,
                    router: router.clone(),
                    tls: tls_files,
                },
            );
        }
        self.shared.changed.notify_waiters();
        Ok(handle)
    }

    /// The engine service for `egress`, the egress to report, and a note for
    /// `last_error` when fail-open fell back to direct. A SOCKS endpoint that does not
    /// complete a SOCKS5 handshake (3 attempts) stops the start unless `fail_open`.
    async fn egress(
        &self,
        egress: &EgressConfig,
    ) -> Result<(EngineService, EgressConfig, Option<String>), CoreError> {
        let direct = self.shared.deps.engines.clone();
        let Some(endpoint) = egress.endpoint() else {
            return Ok((direct, egress.clone(), None));
        };
        let mut shown = egress.clone();
        shown.socks5_endpoint = Some(endpoint.clone());
        let url = shown.display_url();
        match crate::egress::check_socks5(&endpoint, crate::egress::START_ATTEMPTS).await {
            Ok(()) => {
                let build = self.shared.deps.egress_engines.as_ref().ok_or_else(|| {
                    ProxyError::InvalidConfig(
                        "this build cannot route engine traffic through SOCKS5; use --egress-mode direct".into(),
                    )
                })?;
                let engines = build(&shown)?;
                tracing::info!(egress = %url, "outbound traffic goes through SOCKS5 (loopback engines stay direct)");
                Ok((engines, shown, None))
            }
            Err(crate::egress::CheckError::NotSocks5(why)) => {
                // Fail closed even with --egress-fail-open: this is a wrong endpoint,
                // not an outage, and direct egress would silently bypass it.
                self.audit(
                    "socks5_not_socks",
                    serde_json::json!({"egress": url, "error": why}),
                )
                .await;
                Err(ProxyError::InvalidConfig(format!(
                    "the SOCKS5 endpoint {url} cannot be used ({why}); fix --socks5-endpoint (host:port of a SOCKS5 server such as Tor's 127.0.0.1:9050)"
                ))
                .into())
            }
            Err(crate::egress::CheckError::Unreachable(why)) => {
                let advice = if egress.mode == EgressMode::Tor {
                    "start Tor (e.g. `systemctl start tor`) or pass --socks5-endpoint"
                } else {
                    "start the SOCKS5 proxy or fix --socks5-endpoint"
                };
                let event = if egress.fail_open {
                    "egress_fail_open_triggered"
                } else if egress.mode == EgressMode::Tor {
                    "tor_unreachable"
                } else {
                    "socks5_unreachable"
                };
                self.audit(
                    event,
                    serde_json::json!({"egress": url, "error": why, "fail_open": egress.fail_open}),
                )
                .await;
                if egress.fail_open {
                    let note = format!(
                        "egress {url} unreachable ({why}); --egress-fail-open: using direct egress"
                    );
                    tracing::warn!(event = "egress_fail_open_triggered", egress = %url, error = %why, "{note}");
                    // The handle shows what really happens: direct.
                    let effective = EgressConfig {
                        mode: EgressMode::Direct,
                        socks5_endpoint: None,
                        fail_open: true,
                    };
                    Ok((direct, effective, Some(note)))
                } else {
                    if egress.mode == EgressMode::Tor {
                        tracing::warn!(event = "tor_unreachable", egress = %url, error = %why, "Tor is unreachable");
                    }
                    Err(ProxyError::InvalidConfig(format!(
                        "the SOCKS5 endpoint {url} is unreachable ({why}); {advice}, or pass --egress-fail-open to fall back to direct egress"
                    ))
                    .into())
                }
            }
        }
    }

    /// Appends a proxy-level event (not tied to a request) to the audit log.
    async fn audit(&self, event: &str, details: serde_json::Value) {
        let Some(audit) = &self.shared.deps.audit else {
            return;
        };
        let ev = flm_core::security::AuditEvent {
            request_id: crate::request_id::new_request_id().0,
            api_key_id: None,
            endpoint: "proxy/egress".into(),
            status: 503,
            latency_ms: None,
            created_at: chrono::Utc::now(),
            event_type: Some(event.to_owned()),
            severity: flm_core::security::AuditSeverity::High,
            ip: None,
            details: Some(details.to_string()),
        };
        if let Err(e) = audit.append_batch(&[ev]).await {
            tracing::warn!(error = %e, event, "cannot write the audit event");
        }
    }

    /// Records an ACME certificate in `security.db` → `certificates`.
    fn record_acme(&self, bundle: &flm_tls::CertBundle, domain: Option<String>) {
        let Some(repo) = self.shared.deps.certificates.clone() else {
            return;
        };
        let row = flm_core::security::CertificateRow {
            id: flm_tls::record_id(flm_tls::CertMode::Acme, domain.as_deref()),
            cert_path: bundle.cert_path.display().to_string(),
            key_path: bundle.key_path.display().to_string(),
            mode: flm_core::security::CertificateMode::Acme,
            domain,
            expires_at: Some(bundle.not_after),
            updated_at: chrono::Utc::now(),
        };
        tokio::spawn(async move {
            if let Err(e) = repo.upsert(&row).await {
                tracing::warn!(error = %e, "cannot record the ACME certificate");
            }
        });
    }

    /// Changes the handle of a running instance (renewal outcome, for instance).
    fn update_handle(&self, id: &str, f: impl FnOnce(&mut ProxyHandle)) {
        if let Ok(mut inst) = self.shared.instances.lock() {
            if let Some(i) = inst.get_mut(id) {
                f(&mut i.handle);
            }
        }
    }

    /// Running instances.
    pub fn status(&self) -> Vec<ProxyHandle> {
        let mut handles: Vec<ProxyHandle> = self
            .shared
            .instances
            .lock()
            .map(|i| i.values().map(|x| x.handle.clone()).collect())
            .unwrap_or_default();
        handles.sort_by_key(|h| h.port);
        handles
    }

    /// Stops matching instances gracefully (all when the target is empty); returns
    /// the stopped handles.
    pub async fn stop(&self, target: &StopTarget) -> Result<Vec<ProxyHandle>, CoreError> {
        let victims: Vec<Instance> = {
            let Ok(mut inst) = self.shared.instances.lock() else {
                return Ok(Vec::new());
            };
            let ids: Vec<String> = inst
                .values()
                .filter(|i| {
                    target.port.is_none_or(|p| i.handle.port == p)
                        && target.handle_id.as_ref().is_none_or(|h| &i.handle.id == h)
                })
                .map(|i| i.handle.id.clone())
                .collect();
            ids.iter().filter_map(|id| inst.remove(id)).collect()
        };
        if victims.is_empty() && (target.port.is_some() || target.handle_id.is_some()) {
            let what = target
                .port
                .map(|p| format!("port {p}"))
                .or_else(|| target.handle_id.clone())
                .unwrap_or_default();
            return Err(ProxyError::NotRunning(format!("no proxy runs on {what}")).into());
        }
        let mut stopped = Vec::new();
        for v in victims {
            let _ = v.shutdown.send(true);
            let _ = tokio::time::timeout(
                v.grace + Duration::from_secs(1),
                futures::future::join_all(v.servers),
            )
            .await;
            let mut h = v.handle;
            h.running = false;
            stopped.push(h);
        }
        // Bans, rate-limit windows and queued audit records reach the disk before
        // `stop` returns (the daemon may exit right after).
        self.shared.guard.flush().await;
        self.flush_usage().await;
        self.shared.key_lookup.budgets().flush().await;
        self.shared.changed.notify_waiters();
        Ok(stopped)
    }

    /// Re-reads what can change without a restart (spec 30-proxy §13) for the proxies
    /// matching `target` (all without one): API keys, the security policy and IP
    /// blocklist, and — in TLS modes — the certificate files, swapped in for new
    /// handshakes while open connections keep theirs. Nothing is closed. What fails
    /// keeps its previous state and is reported per proxy. No matching running proxy
    /// is an error.
    pub async fn reload(&self, target: &StopTarget) -> Result<Vec<ReloadOutcome>, CoreError> {
        type TlsFiles = Option<(
            Arc<flm_tls::ReloadableResolver>,
            std::path::PathBuf,
            std::path::PathBuf,
        )>;
        let chosen: Vec<(String, u16, TlsFiles)> = self
            .shared
            .instances
            .lock()
            .map(|inst| {
                inst.values()
                    .filter(|i| {
                        target.port.is_none_or(|p| i.handle.port == p)
                            && target.handle_id.as_ref().is_none_or(|h| &i.handle.id == h)
                    })
                    .map(|i| (i.handle.id.clone(), i.handle.port, i.tls.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if chosen.is_empty() {
            let what = target
                .port
                .map(|p| format!(" on port {p}"))
                .or_else(|| {
                    target
                        .handle_id
                        .as_ref()
                        .map(|h| format!(" with handle {h}"))
                })
                .unwrap_or_default();
            return Err(ProxyError::NotRunning(format!("no proxy runs{what}")).into());
        }
        // Keys and policy are shared by every instance of this manager.
        let mut shared_done = Vec::new();
        let mut shared_errors = Vec::new();
        match self.reload_keys().await {
            Ok(_) => shared_done.push("api_keys".to_owned()),
            Err(e) => shared_errors.push(format!("api_keys: {e}")),
        }
        match self.shared.guard.reload().await {
            Ok(()) => shared_done.push("security_policy".to_owned()),
            Err(e) => shared_errors.push(format!("security_policy: {e}")),
        }
        match self.reload_profiles().await {
            Ok(()) => shared_done.push("profiles".to_owned()),
            Err(e) => shared_errors.push(format!("profiles: {e}")),
        }
        let mut out = Vec::with_capacity(chosen.len());
        for (id, port, tls) in chosen {
            let mut o = ReloadOutcome {
                handle_id: id.clone(),
                port,
                reloaded: shared_done.clone(),
                certificate_changed: false,
                errors: shared_errors.clone(),
            };
            if let Some((resolver, cert, key)) = tls {
                let (c, k) = (cert.clone(), key.clone());
                let loaded =
                    tokio::task::spawn_blocking(move || flm_tls::load_bundle(&c, &k)).await;
                match loaded {
                    Ok(Ok(bundle)) => {
                        let changed = bundle.sha256_fingerprint != resolver.fingerprint();
                        let swapped = if changed {
                            resolver.reload(&bundle)
                        } else {
                            Ok(())
                        };
                        match swapped {
                            Ok(()) => {
                                o.reloaded.push("certificate".into());
                                o.certificate_changed = changed;
                                if changed {
                                    self.update_handle(&id, |h| {
                                        if let Some(t) = h.tls.as_mut() {
                                            t.fingerprint_sha256 =
                                                bundle.sha256_fingerprint.clone();
                                            t.not_after = bundle.not_after.to_rfc3339();
                                            t.sans = bundle
                                                .sans
                                                .iter()
                                                .map(ToString::to_string)
                                                .collect();
                                        }
                                    });
                                }
                            }
                            Err(e) => o.errors.push(format!("certificate: {e}")),
                        }
                    }
                    Ok(Err(e)) => o.errors.push(format!(
                        "certificate: {e}; the previous certificate stays in use"
                    )),
                    Err(e) => o.errors.push(format!("certificate: {e}")),
                }
            }
            tracing::info!(handle = %o.handle_id, reloaded = ?o.reloaded, errors = ?o.errors, "proxy reloaded");
            out.push(o);
        }
        Ok(out)
    }

    /// Resolves once no instance runs (after at least one change).
    pub async fn wait_until_empty(&self) {
        loop {
            let notified = self.shared.changed.notified();
            if self.status().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Ids of the engines the running proxies offer now (their routing monitors'
    /// view), sorted; the app turns changes into live engine events.
    pub fn offered_engines(&self) -> Vec<String> {
        let Ok(inst) = self.shared.instances.lock() else {
            return Vec::new();
        };
        let mut ids: Vec<String> = inst
            .values()
            .flat_map(|i| i.router.current().engine_ids())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The live key table (for tests and diagnostics).
    pub fn key_count(&self) -> usize {
        self.shared.keys.load().len()
    }
}

fn bind(ip: IpAddr, port: u16) -> Result<tokio::net::TcpListener, CoreError> {
    let addr = SocketAddr::new(ip, port);
    let std = std::net::TcpListener::bind(addr).map_err(|e| -> CoreError {
        match e.kind() {
            std::io::ErrorKind::AddrInUse => ProxyError::PortInUse(format!(
                "port {port} on {ip} is already in use; choose another with --port"
            ))
            .into(),
            std::io::ErrorKind::AddrNotAvailable => ProxyError::InvalidConfig(format!(
                "cannot listen on {ip}: the address does not belong to this machine"
            ))
            .into(),
            std::io::ErrorKind::PermissionDenied => ProxyError::PortInUse(format!(
                "not allowed to listen on port {port} (ports below 1024 need privileges)"
            ))
            .into(),
            _ => ProxyError::InvalidConfig(format!("cannot listen on {addr}: {e}")).into(),
        }
    })?;
    std.set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(std))
        .map_err(|e| ProxyError::InvalidConfig(format!("cannot listen on {addr}: {e}")).into())
}

/// URLs to show: never a wildcard address (spec 30-proxy §2.3).
fn endpoints(ip: IpAddr, local: SocketAddr, scheme: &str, lan: Option<IpAddr>) -> ProxyEndpoints {
    let port = local.port();
    let local_network = if ip.is_unspecified() {
        lan.map(|l| format!("{scheme}://{}", SocketAddr::new(l, port)))
    } else if !ip.is_loopback() {
        Some(format!("{scheme}://{}", SocketAddr::new(ip, port)))
    } else {
        None
    };
    ProxyEndpoints {
        localhost: format!("{scheme}://localhost:{port}"),
        local_network,
        external: None,
    }
}

/// The address of the interface that routes outwards. Connecting a UDP socket sends
/// nothing; it only asks the OS which local address it would use.
fn lan_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
