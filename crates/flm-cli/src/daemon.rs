//! `flm-proxy --daemon`: the composition root of the proxy daemon (spec 30-proxy
//! §12).
//!
//! Opens the store, builds the proxy's dependencies exactly like the CLI does
//! ([`App`]), binds the admin API on a random loopback port and publishes it in the
//! state file (`<data-dir>/run/proxy-daemon.json`, 0600) together with a fresh admin
//! token and an API key that lives only as long as this process (for `flm chat` on
//! this machine). It runs until its last proxy stops — or, if no proxy was ever
//! started, until a stop request or [`IDLE_EXIT`] — or until SIGTERM/SIGINT, then
//! stops every proxy gracefully, removes the state file and exits 0. Logs are JSON
//! lines in `<data-dir>/logs/proxy.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use clap::Parser;
use flm_engines::discovery::process_env;
use flm_proxy::state_file::{self, DaemonState};
use flm_proxy::{ProxyManager, StopTarget};
use rand::Rng;
use tokio::sync::{watch, Notify};

use crate::app::{log_dir, proxy_log_path, resolve_data_dir, state_file_path, App};
use crate::client;
use crate::log_file::{RotatingLog, DEFAULT_MAX_SIZE_MB};
use crate::output::CliError;

/// A daemon in which no proxy was ever started exits after this long (it was
/// started by a CLI that died before `POST /admin/start`).
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

/// Id of the daemon's own, never stored, API key.
pub const CLI_KEY_ID: &str = "key_local-cli";

/// flm-proxy — FLM's proxy daemon.
///
/// Started by `flm proxy start`; not meant to be run by hand. It hosts the proxies
/// behind a loopback admin API (bearer token) and publishes how to reach it in
/// <data-dir>/run/proxy-daemon.json. Logs: <data-dir>/logs/proxy.log.
#[derive(Debug, Parser)]
#[command(name = "flm-proxy", version = crate::build_info::VERSION, max_term_width = 100)]
pub struct DaemonCli {
    /// Run as the daemon (required).
    #[arg(long)]
    pub daemon: bool,
    /// Directory holding config.db and security.db [default: $FLM_HOME, else
    /// $FLM_DATA_DIR, else ~/.config/flm on Linux]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Entry point of the `flm-proxy` binary.
pub fn main() -> ExitCode {
    let args = match DaemonCli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !args.daemon {
        eprintln!("error: flm-proxy is started by `flm proxy start`; to run it by hand use `flm-proxy --daemon [--data-dir DIR]`");
        return ExitCode::from(1);
    }
    let data_dir = match resolve_data_dir(args.data_dir, &process_env()) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let log_control = match init_logging(&data_dir) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let runtime = match crate::app::proxy_runtime_builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&CliError::internal(
                "INTERNAL",
                format!("cannot start the async runtime: {e}"),
            ))
        }
    };
    let result = runtime.block_on(run(data_dir, log_control));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Logs the error (the CLI reads it back from the log) and turns it into an exit code.
fn fail(e: &CliError) -> ExitCode {
    tracing::error!(code = %e.code, exit = e.exit, "{}", e.message);
    eprintln!("error: {} [{}]", e.message, e.code);
    ExitCode::from(u8::try_from(e.exit).unwrap_or(2))
}

/// JSON lines at INFO (or `RUST_LOG`) to `<data-dir>/logs/proxy.log`, directory
/// 0700, file 0600, rotated by size ([`RotatingLog`]). Returns what applies the
/// `log.*` settings at run time (the level handle is `None` when `RUST_LOG` is set:
/// it wins over the setting).
fn init_logging(data_dir: &Path) -> Result<LogControl, CliError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CliError::internal("IO_ERROR", format!("cannot {what} {}: {e}", p.display()))
    };
    let dir = log_dir(data_dir);
    state_file::create_private_dir(&dir).map_err(|e| io("create", &dir, e))?;
    let path = proxy_log_path(data_dir);
    let file = RotatingLog::open(
        &path,
        DEFAULT_MAX_SIZE_MB * MIB,
        crate::log_file::DEFAULT_MAX_FILES,
    )
    .map_err(|e| io("open", &path, e))?;
    let file = Arc::new(file);
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|_| tracing_subscriber::EnvFilter::try_from_default_env().ok());
    let env_wins = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| log_filter("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file.clone())
                .with_ansi(false)
                .with_current_span(false),
        )
        .try_init();
    Ok(LogControl {
        level: (!env_wins).then_some(handle),
        file,
    })
}

/// The log of a proxy served in the foreground (`flm proxy start --no-daemon`, e.g.
/// under systemd): the daemon's file, rotation and live `log.*` settings — so every
/// way of starting the proxy logs alike — plus WARN and above on stderr like every
/// CLI command (the journal gets those). `RUST_LOG` sets both when present. The
/// settings watcher starts with the proxy ([`watch_foreground_log`]).
pub(crate) fn init_foreground_logging(data_dir: &Path) -> Result<(), CliError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let dir = log_dir(data_dir);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CliError::internal("IO_ERROR", format!("cannot {what} {}: {e}", p.display()))
    };
    state_file::create_private_dir(&dir).map_err(|e| io("create", &dir, e))?;
    let path = proxy_log_path(data_dir);
    let file = Arc::new(
        RotatingLog::open(
            &path,
            DEFAULT_MAX_SIZE_MB * MIB,
            crate::log_file::DEFAULT_MAX_FILES,
        )
        .map_err(|e| io("open", &path, e))?,
    );
    let env_filter = || {
        std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .and_then(|_| tracing_subscriber::EnvFilter::try_from_default_env().ok())
    };
    let from_env = env_filter();
    let env_wins = from_env.is_some();
    let (file_filter, handle) =
        tracing_subscriber::reload::Layer::new(from_env.unwrap_or_else(|| log_filter("info")));
    let stderr_filter = env_filter().unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file.clone())
                .with_ansi(false)
                .with_current_span(false)
                .with_filter(file_filter),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_current_span(false)
                .with_filter(stderr_filter),
        )
        .try_init();
    let control = LogControl {
        level: (!env_wins).then_some(handle),
        file,
    };
    if let Ok(mut slot) = FOREGROUND_LOG.lock() {
        *slot = Some(control);
    }
    Ok(())
}

/// What [`init_foreground_logging`] set up, until the foreground proxy starts.
static FOREGROUND_LOG: std::sync::Mutex<Option<LogControl>> = std::sync::Mutex::new(None);

/// Applies the `log.*` settings to a foreground proxy's log until `shutdown` (or
/// its sender is dropped); nothing when its logging was not set up.
pub(crate) fn watch_foreground_log(
    config: flm_core::services::ConfigService,
    shutdown: watch::Receiver<bool>,
) {
    let control = FOREGROUND_LOG.lock().ok().and_then(|mut s| s.take());
    if let Some(control) = control {
        watch_log_settings(control, config, shutdown);
    }
}

const MIB: u64 = 1024 * 1024;

/// What applies the `log.*` settings to the running daemon.
struct LogControl {
    /// `log.level` (`None`: `RUST_LOG` wins).
    level: Option<LogLevelHandle>,
    /// `log.max_size_mb`, `log.max_files`.
    file: Arc<RotatingLog>,
}

/// Applies `log.level` to the running daemon's log.
type LogLevelHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// FLM's own crates log at `level`; libraries stay at `info` at most, so `debug`
/// shows what FLM does without every socket read of the HTTP and database stacks.
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let detailed = matches!(level, "debug" | "trace");
    let spec = if detailed {
        let own: Vec<String> = [
            "flm",
            "flm_proxy",
            "flm_cli",
            "flm_core",
            "flm_engines",
            "flm_guard",
            "flm_store",
            "flm_tls",
            "flm_acme",
        ]
        .iter()
        .map(|c| format!("{c}={level}"))
        .collect();
        format!("info,{}", own.join(","))
    } else {
        level.to_owned()
    };
    tracing_subscriber::EnvFilter::new(spec)
}

/// Applies the stored `log.*` settings now and then about once a second (config.db
/// has no change marker; a few keyed reads per second are cheap), so `flm config
/// set`, the app or any other process changes the running daemon's log without a
/// restart.
fn watch_log_settings(
    control: LogControl,
    config: flm_core::services::ConfigService,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut applied = String::from("info");
        let mut applied_files = (DEFAULT_MAX_SIZE_MB, crate::log_file::DEFAULT_MAX_FILES);
        loop {
            let access = config.get("log.access").await.map(|e| e.value != "false");
            flm_proxy::access_log::set_enabled(access.unwrap_or(true));
            let number = |v: Result<flm_core::services::ConfigEntry, _>, default: u64| {
                v.ok()
                    .and_then(|e| e.value.parse::<u64>().ok())
                    .unwrap_or(default)
            };
            let size_mb = number(config.get("log.max_size_mb").await, DEFAULT_MAX_SIZE_MB);
            let files = number(
                config.get("log.max_files").await,
                crate::log_file::DEFAULT_MAX_FILES as u64,
            );
            let files =
                usize::try_from(files.min(100)).unwrap_or(crate::log_file::DEFAULT_MAX_FILES);
            if (size_mb, files) != applied_files {
                control
                    .file
                    .set_limits(size_mb.max(1).saturating_mul(MIB), files);
                tracing::info!(
                    max_size_mb = size_mb,
                    max_files = files,
                    "log rotation applied"
                );
                applied_files = (size_mb, files);
            }
            let Some(handle) = control.level.as_ref() else {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            match config.get("log.level").await {
                Ok(e) if e.value != applied => {
                    let level = if flm_core::config::LOG_LEVELS.contains(&e.value.as_str()) {
                        e.value
                    } else {
                        "info".to_owned()
                    };
                    if level != applied {
                        match handle.reload(log_filter(&level)) {
                            Ok(()) => {
                                tracing::info!(level = %level, "log level applied");
                                applied = level;
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "cannot change the log level");
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read log.level"),
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// 32 random bytes as 64 hex characters.
pub fn admin_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

struct StopWatch {
    manager: ProxyManager,
    empty_after_stop: Notify,
    ui: Option<flm_proxy::ui::UiHandle>,
}

/// Whether someone is logged in to the app (or about to): the daemon then stays up
/// with no proxy, so the dashboard can start one again.
fn ui_in_use(ui: Option<&flm_proxy::ui::UiHandle>) -> bool {
    ui.is_some_and(|u| u.in_use())
}

/// After a successful `POST /admin/stop` that left nothing running, ask the daemon
/// to exit (this is also how a CLI whose start failed cleans up a fresh daemon).
async fn watch_stops(State(w): State<Arc<StopWatch>>, req: Request, next: Next) -> Response {
    let is_stop = req.method() == axum::http::Method::POST && req.uri().path() == "/admin/stop";
    let resp = next.run(req).await;
    if is_stop
        && resp.status().is_success()
        && w.manager.status().is_empty()
        && !ui_in_use(w.ui.as_ref())
    {
        w.empty_after_stop.notify_one();
    }
    resp
}

async fn run(data_dir: PathBuf, log_control: LogControl) -> Result<(), CliError> {
    let mut signals = Terminate::new();
    let state_path = state_file_path(&data_dir);
    if let client::Lookup::Running(other) = client::find(&data_dir).await? {
        return Err(CliError::user(
            "PROXY_DAEMON_ERROR",
            format!(
                "another FLM proxy daemon (pid {}) already runs for {}",
                other.state.pid,
                data_dir.display()
            ),
        ));
    }
    let app = App::open(data_dir.clone()).await?;
    let result = serve(&app, &state_path, &mut signals, log_control).await;
    app.store.close().await;
    result
}

async fn serve(
    app: &App,
    state_path: &Path,
    signals: &mut Terminate,
    log_control: LogControl,
) -> Result<(), CliError> {
    let manager = ProxyManager::new(app.proxy_deps().await?);
    manager.start_audit_retention(app.data_dir.join("archive"), Default::default());
    manager.start_telemetry(app.store.usage(), app.store.health_log());
    manager.use_profiles(app.store.profiles()).await;
    let now = chrono::Utc::now();
    let (_, cli_key) = flm_core::keys::generate("local cli", now)?;
    manager.add_ephemeral_key(CLI_KEY_ID, &cli_key)?;
    let token = admin_token();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| {
            CliError::internal(
                "PROXY_DAEMON_ERROR",
                format!("cannot bind the admin API on 127.0.0.1: {e}"),
            )
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| CliError::internal("PROXY_DAEMON_ERROR", e.to_string()))?
        .port();
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    watch_log_settings(log_control, app.config.clone(), shutdown_rx.clone());
    let ui = start_ui(app, &manager, &cli_key, shutdown_rx.clone()).await;
    let watch_state = Arc::new(StopWatch {
        manager: manager.clone(),
        empty_after_stop: Notify::new(),
        ui: ui.clone(),
    });
    let admin = flm_proxy::admin::router_with_ui(manager.clone(), token.clone(), port, ui.clone())
        .layer(middleware::from_fn_with_state(
            watch_state.clone(),
            watch_stops,
        ))
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, admin)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|s| *s).await;
            })
            .await
    });

    let state = DaemonState {
        pid: std::process::id(),
        port,
        token,
        cli_key,
        started_at: now.to_rfc3339(),
        updated_at: now.to_rfc3339(),
        ui_url: ui.as_ref().map(|u| u.url.clone()),
    };
    state_file::write(state_path, &state).map_err(|e| {
        CliError::internal(
            "IO_ERROR",
            format!("cannot write {}: {e}", state_path.display()),
        )
    })?;
    tracing::info!(pid = state.pid, admin_port = port, data_dir = %app.data_dir.display(), "proxy daemon ready");

    let reason = tokio::select! {
        r = signals.recv() => r,
        _ = watch_state.empty_after_stop.notified() => "the last proxy was stopped",
        r = lifetime(&manager, ui.as_ref()) => r,
        r = &mut server => match r {
            Ok(Ok(())) => "the admin API stopped",
            Ok(Err(e)) => { tracing::error!(error = %e, "admin API failed"); "the admin API failed" }
            Err(e) => { tracing::error!(error = %e, "admin API task failed"); "the admin API failed" }
        },
    };
    tracing::info!(reason, "proxy daemon stopping");
    // No new admin requests (and so no new proxies) from here on.
    let _ = shutdown_tx.send(true);
    match manager.stop(&StopTarget::default()).await {
        Ok(stopped) if !stopped.is_empty() => {
            tracing::info!(count = stopped.len(), "stopped the remaining proxies");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "stopping the proxies failed"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Ok(Some(now)) = state_file::read(state_path) {
        if now.pid == state.pid && now.token == state.token {
            if let Err(e) = state_file::remove(state_path) {
                tracing::warn!(error = %e, "cannot remove the state file");
            }
        }
    }
    tracing::info!("proxy daemon stopped");
    Ok(())
}

/// Resolves once the last proxy stopped after at least one ran, or when no proxy
/// was started within [`IDLE_EXIT`]. While the app is in use (a live session or
/// login code) neither counts: the idle time starts when the last session ends.
async fn lifetime(manager: &ProxyManager, ui: Option<&flm_proxy::ui::UiHandle>) -> &'static str {
    loop {
        let mut since = Instant::now();
        while manager.status().is_empty() {
            if ui_in_use(ui) {
                since = Instant::now();
            }
            if since.elapsed() >= IDLE_EXIT {
                return "no proxy was started";
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        manager.wait_until_empty().await;
        if !ui_in_use(ui) {
            return "no proxy is left";
        }
    }
}

/// Routers of other app API modules (paths relative to `/api/v1`, state applied),
/// mounted behind the app's session guard: the security screens and usage/health
/// history.
fn app_api_routers(app: &App) -> Vec<axum::Router> {
    vec![
        flm_proxy::ui_api::security::router(crate::app::security_api_deps(&app.store)),
        flm_proxy::ui_api::usage::router(flm_proxy::ui_api::usage::UsageApiDeps::new(
            app.store.usage(),
            app.store.health_log(),
            app.store.api_keys(),
        )),
        flm_proxy::ui_api::setup::router(),
        flm_proxy::ui_api::profiles::router(flm_proxy::ui_api::profiles::ProfilesApiDeps::new(
            app.store.profiles(),
            app.store.api_keys(),
        )),
    ]
}

/// Starts the app server on loopback (`ui.port`, else a random port). The daemon
/// runs without the app if that fails: the proxies do not depend on it.
async fn start_ui(
    app: &App,
    manager: &ProxyManager,
    cli_key: &str,
    shutdown: watch::Receiver<bool>,
) -> Option<flm_proxy::ui::UiHandle> {
    let port = match app.config.get("ui.port").await {
        Ok(e) => e.value.parse().unwrap_or(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read ui.port; using a random port");
            0
        }
    };
    let listener = match flm_proxy::ui::bind(port).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot bind the app on 127.0.0.1; running without it");
            return None;
        }
    };
    let deps = match app.proxy_deps().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e.message, "cannot build the app's dependencies; running without it");
            return None;
        }
    };
    let alert_deps = flm_proxy::alert_watch::AlertDeps {
        config: app.config.clone(),
        audit: deps.audit.clone(),
        events: deps.security.as_ref().map(|s| s.events.clone()),
    };
    let ui_deps = flm_proxy::ui::UiDeps {
        manager: manager.clone(),
        config: app.config.clone(),
        engines: app.engines.clone(),
        keys: app.keys.clone(),
        security: deps.security,
        changes: deps.changes,
        relay_key: Some(cli_key.to_owned()),
        timing: Default::default(),
    };
    match flm_proxy::ui::start(listener, ui_deps, app_api_routers(app), shutdown.clone()) {
        Ok((handle, _task)) => {
            // Alerts go wherever the app runs: its live stream and the audit log.
            flm_proxy::alert_watch::spawn(alert_deps, handle.events.clone(), shutdown);
            Some(handle)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the app server; running without it");
            None
        }
    }
}

/// SIGTERM / SIGINT, watched from the moment this value exists (so a signal that
/// arrives before anyone awaits it is not lost, nor fatal).
pub struct Terminate {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    /// Installs the handlers now.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch {name}");
                    None
                }
            };
            Self {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                int: watch(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves at the first SIGTERM or SIGINT; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => "SIGTERM",
                _ = next(&mut self.int) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

impl Default for Terminate {
    fn default() -> Self {
        Self::new()
    }
}
