//! Starting, stopping and listing proxy instances; keeping the key table current.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use flm_core::keys::KeyTable;
use flm_core::ports::ApiKeyRepository;
use flm_core::proxy::{ProxyConfig, ProxyEndpoints, ProxyError, ProxyHandle, ProxyMode};
use flm_core::services::{ConfigService, EngineService};
use flm_core::CoreError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::app::{self, AppState};
use crate::routing::Router;

/// What a proxy needs from the rest of FLM; built by a composition root.
#[derive(Clone)]
pub struct ProxyDeps {
    /// Engines (detection + adapters).
    pub engines: EngineService,
    /// Settings.
    pub config: ConfigService,
    /// API keys.
    pub keys: Arc<dyn ApiKeyRepository>,
    /// CORS allowed origins from the security policy (empty = any).
    pub cors_origins: Vec<String>,
    /// Where TLS certificates are kept (`<data dir>/certs`).
    pub certs_dir: std::path::PathBuf,
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
}

struct Shared {
    deps: ProxyDeps,
    keys: Arc<ArcSwap<KeyTable>>,
    extra_keys: Mutex<Vec<(String, String)>>,
    instances: Mutex<HashMap<String, Instance>>,
    changed: Notify,
    key_refresh: Notify,
    key_task: Mutex<Option<JoinHandle<()>>>,
}

/// Hosts proxy instances (in the daemon, or in the CLI with `--no-daemon`).
#[derive(Clone)]
pub struct ProxyManager {
    shared: Arc<Shared>,
}

/// How often the key table is compared with the database.
const KEY_POLL: Duration = Duration::from_secs(2);

impl ProxyManager {
    /// A manager with no instance yet.
    pub fn new(deps: ProxyDeps) -> Self {
        Self {
            shared: Arc::new(Shared {
                deps,
                keys: Arc::new(ArcSwap::from_pointee(KeyTable::default())),
                extra_keys: Mutex::new(Vec::new()),
                instances: Mutex::new(HashMap::new()),
                changed: Notify::new(),
                key_refresh: Notify::new(),
                key_task: Mutex::new(None),
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
        Ok(n)
    }

    fn ensure_key_task(&self) {
        let Ok(mut task) = self.shared.key_task.lock() else {
            return;
        };
        if task.is_some() {
            return;
        }
        let me = self.clone();
        *task = Some(tokio::spawn(async move {
            let mut last = String::new();
            loop {
                match me.shared.deps.keys.fingerprint().await {
                    Ok(fp) if fp != last => match me.reload_keys().await {
                        Ok(_) => last = fp,
                        Err(e) => tracing::warn!(error = %e, "could not reload API keys"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not check API keys"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(KEY_POLL) => {}
                    _ = me.shared.key_refresh.notified() => { last.clear(); }
                }
            }
        }));
    }

    /// Starts a proxy instance.
    pub async fn start(&self, config: ProxyConfig) -> Result<ProxyHandle, CoreError> {
        let ip = config.validate()?;
        let tls_mode = match config.mode {
            ProxyMode::LocalHttp => false,
            ProxyMode::DevSelfsigned | ProxyMode::PackagedCa => true,
            other => {
                return Err(ProxyError::InvalidConfig(format!(
                    "mode `{}` is not available yet; use local-http, dev-selfsigned or packaged-ca",
                    other.slug()
                ))
                .into())
            }
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
        let lan = lan_ip();
        let tls = if tls_mode {
            let (mode, dir) = (config.mode, self.shared.deps.certs_dir.clone());
            let setup =
                tokio::task::spawn_blocking(move || crate::tls_mode::setup(mode, &dir, ip, lan))
                    .await
                    .map_err(|e| {
                        ProxyError::InvalidConfig(format!("certificate task failed: {e}"))
                    })??;
            Some(setup)
        } else {
            None
        };
        self.reload_keys().await?;
        self.ensure_key_task();
        let settings = self.shared.deps.config.proxy_settings().await?;
        let engine_settings = self.shared.deps.engines.settings().await?;
        let router = Router::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            router: router.clone(),
            keys: self.shared.keys.clone(),
            settings,
            cors_origins: self.shared.deps.cors_origins.clone(),
            first_check_wait: engine_settings.detect_timeout + Duration::from_secs(2),
        });
        tokio::spawn(router.monitor(
            self.shared.deps.engines.clone(),
            settings.engine_check_interval,
            engine_settings.request_timeout,
            shutdown_rx.clone(),
        ));
        let app = app::build(state);
        let grace = settings.shutdown_grace;
        let mut servers = Vec::new();
        let (https_port, endpoints, tls_info) = match (https_listener, tls) {
            (Some(https), Some(tls)) => {
                let https_local = https.local_addr().map_err(|e| {
                    ProxyError::PortInUse(format!("cannot read the bound address: {e}"))
                })?;
                let server_config = tls.resolver.server_config().map_err(|e| {
                    ProxyError::InvalidConfig(format!("TLS configuration failed: {e}"))
                })?;
                let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
                servers.push(tokio::spawn(crate::server::serve_tls(
                    https,
                    acceptor,
                    app,
                    shutdown_rx.clone(),
                    grace,
                )));
                servers.push(tokio::spawn(crate::server::serve(
                    listener,
                    crate::tls_mode::redirect_app(https_local.port()),
                    shutdown_rx.clone(),
                    grace,
                )));
                tokio::spawn(crate::tls_mode::renew_loop(
                    config.mode,
                    self.shared.deps.certs_dir.clone(),
                    ip,
                    lan,
                    tls.resolver.clone(),
                    shutdown_rx.clone(),
                ));
                tracing::info!(addr = %https_local, "listening on https://{https_local} (http://{local} redirects)");
                (
                    Some(https_local.port()),
                    endpoints(ip, https_local, "https", lan),
                    Some(tls.info),
                )
            }
            _ => {
                servers.push(tokio::spawn(crate::server::serve(
                    listener,
                    app,
                    shutdown_rx.clone(),
                    grace,
                )));
                tracing::info!(addr = %local, "listening on http://{local}");
                (None, endpoints(ip, local, "http", lan), None)
            }
        };
        let handle = ProxyHandle {
            id: format!("proxy-{}", local.port()),
            pid: std::process::id(),
            port: local.port(),
            https_port,
            mode: config.mode,
            listen_addr: config.listen_addr.clone(),
            egress: config.egress.clone(),
            running: true,
            last_error: None,
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
                },
            );
        }
        self.shared.changed.notify_waiters();
        Ok(handle)
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
        self.shared.changed.notify_waiters();
        Ok(stopped)
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
