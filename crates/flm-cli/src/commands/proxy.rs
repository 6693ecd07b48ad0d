//! `flm proxy start|stop|status`: the proxy runs in the `flm-proxy` daemon, driven
//! through its admin API, or in this process with `--no-daemon`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use flm_core::keys::NewApiKey;
use flm_core::proxy::{
    AcmeChallenge, EgressConfig, EgressMode, ProxyConfig, ProxyHandle, ProxyMode,
};
use flm_proxy::{ProxyManager, StopTarget};
use flm_store::DbFile;
use serde_json::{json, Value};

use crate::app::App;
use crate::cli::{ChallengeArg, EgressArg, Format, ModeArg, ProxyCmd, StartArgs, StopArgs};
use crate::client::{self, Daemon, Lookup};
use crate::commands::Progress;
use crate::daemon::Terminate;
use crate::output::{table, CliError, Printer};

pub(crate) async fn run(app: &App, cmd: ProxyCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        ProxyCmd::Start(args) => start(app, args, printer).await,
        ProxyCmd::Stop(args) => stop(app, args, printer).await,
        ProxyCmd::Status => status(app, printer).await,
        ProxyCmd::Reload(args) => super::proxy_reload::run(app, args, printer).await,
    }
}

/// "No proxy is running" as an error.
pub(crate) fn not_running() -> CliError {
    CliError::user(
        "PROXY_NOT_RUNNING",
        "no proxy is running; start it with `flm proxy start`",
    )
}

/// Tells about a removed stale state file: a line in text mode, a log line otherwise.
pub(crate) fn report_stale(printer: &Printer, why: &str) {
    if printer.format == Format::Text {
        eprintln!("note: {why}");
    } else {
        tracing::warn!("{why}");
    }
}

/// The running daemon, if any (reporting a stale state file).
pub(crate) async fn running_daemon(
    app: &App,
    printer: &Printer,
) -> Result<Option<Daemon>, CliError> {
    match client::find(&app.data_dir).await? {
        Lookup::Running(d) => Ok(Some(d)),
        Lookup::NotRunning { stale } => {
            if let Some(why) = stale {
                report_stale(printer, &why);
            }
            Ok(None)
        }
    }
}

fn mode_of(arg: ModeArg) -> ProxyMode {
    match arg {
        ModeArg::LocalHttp => ProxyMode::LocalHttp,
        ModeArg::DevSelfsigned => ProxyMode::DevSelfsigned,
        ModeArg::HttpsAcme => ProxyMode::HttpsAcme,
        ModeArg::PackagedCa => ProxyMode::PackagedCa,
    }
}

async fn default_port(app: &App) -> Result<u16, CliError> {
    let entry = app.config.get("proxy.port").await?;
    entry.value.parse().map_err(|_| {
        CliError::user(
            "INVALID_ARGUMENT",
            format!(
                "the proxy.port setting `{}` is not a port; fix it with `flm config set proxy.port 8780`",
                entry.value
            ),
        )
    })
}

/// First-run experience (spec 30-proxy §2.3): without any active key the proxy would
/// refuse every client, so one is created (label `default`) and shown once.
async fn first_run_key(app: &App, printer: &Printer) -> Result<Option<NewApiKey>, CliError> {
    if app.keys.has_active_key().await? {
        return Ok(None);
    }
    if let Some(reason) = app.store.read_only_reason_of(DbFile::Security) {
        let msg = format!("no API key exists and none can be created ({reason}); only `flm chat` on this machine can use the proxy");
        if printer.format == Format::Text {
            eprintln!("warning: {msg}");
        } else {
            tracing::warn!("{msg}");
        }
        return Ok(None);
    }
    Ok(Some(app.keys.create("default").await?))
}

async fn start(app: &App, args: StartArgs, printer: &Printer) -> Result<(), CliError> {
    let mut mode = mode_of(args.mode);
    if mode == ProxyMode::HttpsAcme && args.egress_mode == EgressArg::Tor {
        let msg = if args.force {
            "https-acme with --egress-mode tor (--force): ACME requests go through Tor too; the CA may refuse Tor exit nodes (then the proxy falls back to dev-selfsigned)"
        } else {
            mode = ProxyMode::LocalHttp;
            "https-acme with --egress-mode tor: ACME CAs often refuse Tor exit nodes; starting in local-http instead (pass --force to keep https-acme)"
        };
        if printer.format == Format::Text {
            eprintln!("warning: {msg}");
        } else {
            tracing::warn!("{msg}");
        }
    }
    let port = match args.port {
        Some(p) => p,
        None => default_port(app).await?,
    };
    let config = ProxyConfig {
        mode,
        port,
        listen_addr: args.bind.trim().to_owned(),
        egress: EgressConfig {
            mode: match args.egress_mode {
                EgressArg::Direct => EgressMode::Direct,
                EgressArg::Tor => EgressMode::Tor,
                EgressArg::Socks5 => EgressMode::Socks5,
            },
            socks5_endpoint: args
                .socks5_endpoint
                .map(|e| e.trim().trim_start_matches("socks5://").to_owned()),
            fail_open: args.egress_fail_open,
        },
        acme_email: args.acme_email.map(|e| e.trim().to_owned()),
        acme_domain: args.acme_domain.map(|d| d.trim().to_owned()),
        acme_challenge: match args.challenge {
            ChallengeArg::Http01 => AcmeChallenge::Http01,
            ChallengeArg::Dns01 => AcmeChallenge::Dns01,
        },
        dns_hook: args.dns_hook.map(|h| h.trim().to_owned()),
        dns_propagation_wait_secs: args.dns_propagation_wait,
    };
    let ip = config.validate()?;
    let new_key = first_run_key(app, printer).await?;
    let result = if args.no_daemon {
        foreground(app, config, ip, new_key.as_ref(), printer).await
    } else {
        in_daemon(app, &config, new_key.as_ref(), printer).await
    };
    if let (Err(_), Some(k)) = (&result, &new_key) {
        // Nobody saw this key: it must not stay valid.
        if let Err(e) = app.keys.revoke(&k.metadata.id).await {
            tracing::warn!(error = %e.to_string(), "cannot revoke the unused first-run key");
        }
    }
    result
}

async fn in_daemon(
    app: &App,
    config: &ProxyConfig,
    new_key: Option<&NewApiKey>,
    printer: &Printer,
) -> Result<(), CliError> {
    let existing = running_daemon(app, printer).await?;
    let handle = {
        let _p = Progress::start(printer, "Starting the FLM proxy");
        let (daemon, spawned) = match existing {
            Some(d) => (d, false),
            None => (client::start_daemon(&app.data_dir).await?, true),
        };
        match daemon.start(config).await {
            Ok(h) => h,
            Err(e) => {
                // Leave nothing behind: a daemon that serves no proxy goes away.
                let idle = spawned
                    || daemon
                        .status()
                        .await
                        .map(|s| s.proxies.is_empty())
                        .unwrap_or(false);
                if idle {
                    let grace = Duration::from_secs(1);
                    if daemon.stop(&StopTarget::default(), grace).await.is_ok() {
                        daemon.wait_exit(Duration::from_secs(5)).await;
                    }
                }
                return Err(e);
            }
        }
    };
    print_started(&handle, new_key, true, printer)
}

async fn foreground(
    app: &App,
    config: ProxyConfig,
    ip: IpAddr,
    new_key: Option<&NewApiKey>,
    printer: &Printer,
) -> Result<(), CliError> {
    let mut signals = Terminate::new();
    let manager = ProxyManager::new(app.proxy_deps().await?);
    manager.start_audit_retention(app.data_dir.join("archive"), Default::default());
    manager.start_telemetry(app.store.usage(), app.store.health_log());
    manager.use_profiles(app.store.profiles()).await;
    let handle = manager.start(config).await?;
    let (log_stop, log_watch) = tokio::sync::watch::channel(false);
    crate::daemon::watch_foreground_log(app.config.clone(), log_watch);
    print_started(&handle, new_key, false, printer)?;
    // One plain line, in every format: scripts wait for it.
    eprintln!("listening on http://{}", SocketAddr::new(ip, handle.port));
    let signal = signals.recv().await;
    if printer.format == Format::Text {
        eprintln!("{signal}: stopping the proxy…");
    }
    if let Err(e) = manager.stop(&StopTarget::default()).await {
        tracing::warn!(error = %e, "stopping the proxy failed");
    }
    let _ = log_stop.send(true);
    if printer.format == Format::Text {
        eprintln!("Proxy stopped.");
    }
    Ok(())
}

fn listen_addr(h: &ProxyHandle) -> String {
    match h.listen_addr.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, h.port).to_string(),
        Err(_) => format!("{}:{}", h.listen_addr, h.port),
    }
}

/// The egress as shown: the config, plus `url` (`tor://127.0.0.1:9050`, …) when it
/// goes through SOCKS5.
fn egress_json(e: &EgressConfig) -> Value {
    let mut v = json!(e);
    if e.mode != EgressMode::Direct {
        v["url"] = json!(e.display_url());
    }
    v
}

fn start_output(h: &ProxyHandle, new_key: Option<&NewApiKey>, daemon: bool) -> Value {
    let mut v = json!({
        "status": "running",
        "mode": h.mode,
        "listen_addr": listen_addr(h),
        "port": h.port,
        "endpoints": h.endpoints,
        "openai_base_url": format!("{}/v1", h.endpoints.localhost),
        "pid": h.pid,
        "handle_id": h.id,
        "egress": egress_json(&h.egress),
        "daemon": daemon,
    });
    if let Some(https) = h.https_port {
        v["https_port"] = json!(https);
    }
    if let Some(err) = &h.last_error {
        v["last_error"] = json!(err);
    }
    if let Some(tls) = &h.tls {
        v["tls"] = json!(tls);
    }
    if let Some(k) = new_key {
        v["api_key"] = json!({
            "id": k.metadata.id,
            "label": k.metadata.label,
            "key": k.key,
        });
    }
    v
}

fn print_started(
    h: &ProxyHandle,
    new_key: Option<&NewApiKey>,
    daemon: bool,
    printer: &Printer,
) -> Result<(), CliError> {
    printer.success(&start_output(h, new_key, daemon), || {
        let url = &h.endpoints.localhost;
        let mut out = format!("FLM proxy running on {url} (pid {})\n", h.pid);
        out.push_str(&format!("OpenAI base URL: {url}/v1\n"));
        if let Some(lan) = &h.endpoints.local_network {
            out.push_str(&format!("On your network: {lan}/v1\n"));
        }
        if h.egress.mode != EgressMode::Direct {
            out.push_str(&format!(
                "Egress to remote engines: {} (engines on this machine: direct)\n",
                h.egress.display_url()
            ));
        }
        if let Some(err) = &h.last_error {
            out.push_str(&format!("Warning: {err}\n"));
        }
        if h.listen_addr.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback()) {
            out.push_str("Reachable from other machines: every client needs an API key.\n");
        }
        if let Some(tls) = &h.tls {
            out.push_str(&format!(
                "HTTPS on port {} (http://…:{} redirects to it)\nCertificate SHA-256: {}\nValid until: {}\n",
                h.https_port.unwrap_or_default(),
                h.port,
                tls.fingerprint_sha256,
                tls.not_after
            ));
            if h.mode == ProxyMode::HttpsAcme {
                out.push_str(&format!(
                    "Certificate issued by the ACME CA for {}; clients trust it without extra steps.\n",
                    h.acme_domain.as_deref().unwrap_or("the domain")
                ));
                if let Some(ext) = &h.endpoints.external {
                    out.push_str(&format!("From the internet: {ext}/v1\n"));
                }
            } else if h.mode == ProxyMode::PackagedCa {
                out.push_str(&format!(
                    "Clients trust it through FLM's local root CA: {}\n  this machine: `flm security install-ca`; other machines: import that file.\n",
                    tls.trust_cert_path
                ));
            } else {
                out.push_str(&format!(
                    "Clients must trust this self-signed certificate: {}\n  curl: --cacert {}; Python: REQUESTS_CA_BUNDLE / SSL_CERT_FILE={}\n",
                    tls.trust_cert_path, tls.trust_cert_path, tls.trust_cert_path
                ));
            }
        }
        let cacert = h
            .tls
            .as_ref()
            .filter(|t| !t.trust_cert_path.is_empty())
            .map(|t| format!("--cacert {} ", t.trust_cert_path))
            .unwrap_or_default();
        let key_shown = match new_key {
            Some(k) => {
                out.push_str(&format!("\nYour API key (shown once): {}\n", k.key));
                out.push_str("Store it now: FLM keeps only its hash and cannot show it again.\n");
                k.key.clone()
            }
            None => "$FLM_API_KEY".to_owned(),
        };
        out.push_str(&format!(
            "\nTry it:\n  curl {cacert}{url}/v1/models -H \"Authorization: Bearer {key_shown}\"\n  flm chat --model <id from `flm models list`> --prompt \"Hello\"\n"
        ));
        if daemon {
            out.push_str("Stop it with `flm proxy stop`.");
        } else {
            out.push_str("Press Ctrl-C to stop.");
        }
        out
    })
}

fn uptime(started_at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(started_at) else {
        return "-".into();
    };
    let s = chrono::Utc::now()
        .signed_duration_since(t)
        .num_seconds()
        .max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

async fn status(app: &App, printer: &Printer) -> Result<(), CliError> {
    let (daemon, proxies) = match running_daemon(app, printer).await? {
        None => (Value::Null, Vec::new()),
        Some(d) => {
            let st = d.status().await?;
            (
                json!({"pid": st.pid, "admin_port": d.state.port, "started_at": st.started_at}),
                st.proxies,
            )
        }
    };
    let shown: Vec<Value> = proxies
        .iter()
        .map(|h| {
            let mut v = json!(h);
            v["egress"] = egress_json(&h.egress);
            v
        })
        .collect();
    printer.success(&json!({"daemon": daemon, "proxies": shown}), || {
        if proxies.is_empty() {
            return "No proxy is running. Start one with `flm proxy start`.".to_owned();
        }
        let rows: Vec<Vec<String>> = proxies
            .iter()
            .map(|h| {
                vec![
                    h.port.to_string(),
                    h.mode.slug().to_owned(),
                    h.listen_addr.clone(),
                    format!("{}/v1", h.endpoints.localhost),
                    h.egress.display_url(),
                    h.pid.to_string(),
                    uptime(&h.started_at),
                ]
            })
            .collect();
        let mut out = table(
            &["PORT", "MODE", "BIND", "URL", "EGRESS", "PID", "UPTIME"],
            &rows,
        );
        for h in &proxies {
            if let Some(err) = &h.last_error {
                out.push_str(&format!("\nport {}: {err}", h.port));
            }
        }
        out
    })
}

async fn stop(app: &App, args: StopArgs, printer: &Printer) -> Result<(), CliError> {
    let Some(daemon) = running_daemon(app, printer).await? else {
        return Err(not_running());
    };
    let grace = app.config.proxy_settings().await?.shutdown_grace;
    let exit_wait = grace + Duration::from_secs(5);
    let status = daemon.status().await?;
    let before = status.proxies;
    // A daemon kept up by the app does not exit: waiting for it would only stall.
    let exits = !status.app_in_use;
    if before.is_empty() {
        // An idle daemon: let it go, then report that nothing ran.
        if daemon.stop(&StopTarget::default(), grace).await.is_ok() && exits {
            daemon.wait_exit(exit_wait).await;
        }
        return Err(not_running());
    }
    let target = StopTarget {
        port: args.port,
        handle_id: args.handle_id,
    };
    let stopped = {
        let _p = Progress::start(printer, "Stopping");
        let stopped = daemon.stop(&target, grace).await?;
        let remaining = before
            .iter()
            .filter(|b| !stopped.iter().any(|s| s.id == b.id))
            .count();
        if remaining == 0 && exits && !daemon.wait_exit(exit_wait).await {
            tracing::warn!(
                pid = daemon.state.pid,
                "the proxy daemon did not exit within {} s",
                exit_wait.as_secs()
            );
        }
        stopped
    };
    printer.success(&json!({ "stopped": stopped }), || {
        stopped
            .iter()
            .map(|h| format!("Stopped the proxy on port {} ({}).", h.port, h.id))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
