//! `flm security certificates list`: the TLS certificates FLM manages — the
//! `dev-selfsigned` certificate, the local root CA and the `packaged-ca` server
//! certificate it signed (files in `<data-dir>/certs`), and the ACME certificates
//! recorded in `security.db` → `certificates` — with subject, SANs and expiry read
//! from the files themselves.

use std::path::{Path, PathBuf};

use chrono::Utc;
use flm_store::format_ts;
use serde_json::{json, Value};

use crate::app::{certs_dir, App};
use crate::output::{table, CliError, Printer};

/// One certificate slot: where it lives and what it is for.
struct Slot {
    id: String,
    mode: &'static str,
    kind: &'static str,
    domain: Option<String>,
    cert: PathBuf,
    key: PathBuf,
    updated_at: Option<String>,
}

/// The certificates FLM creates itself in `dir` (present or not).
fn local_slots(dir: &Path) -> Vec<Slot> {
    let slot = |id: &str, mode, kind, cert: &str, key: &str| Slot {
        id: id.to_owned(),
        mode,
        kind,
        domain: None,
        cert: dir.join(cert),
        key: dir.join(key),
        updated_at: None,
    };
    vec![
        slot(
            "self-signed",
            "self-signed",
            "server",
            "dev-cert.pem",
            "dev-key.pem",
        ),
        slot(
            flm_tls::LOCAL_CA_RECORD_ID,
            "packaged-ca",
            "ca",
            "flm-ca.crt",
            "flm-ca.key",
        ),
        slot(
            "packaged-ca",
            "packaged-ca",
            "server",
            "server.pem",
            "server.key",
        ),
    ]
}

fn describe(s: &Slot) -> Value {
    let now = Utc::now();
    let mut v = json!({
        "id": s.id,
        "mode": s.mode,
        "kind": s.kind,
        "domain": s.domain,
        "cert_path": s.cert.display().to_string(),
        "key_path": s.key.display().to_string(),
        "updated_at": s.updated_at,
    });
    match flm_tls::describe_certificate(&s.cert) {
        Ok(c) => {
            v["subject"] = json!(c.subject);
            v["issuer"] = json!(c.issuer);
            v["sans"] = json!(c.sans);
            v["not_before"] = json!(format_ts(&c.not_before));
            v["expires_at"] = json!(format_ts(&c.not_after));
            v["is_expired"] = json!(now >= c.not_after);
            v["days_left"] = json!((c.not_after - now).num_days());
            v["self_signed"] = json!(c.self_signed);
            v["is_ca"] = json!(c.is_ca);
            v["sha256_fingerprint"] = json!(c.sha256_fingerprint);
        }
        Err(e) => {
            v["error"] = json!(e.to_string());
        }
    }
    v
}

pub(crate) async fn list(app: &App, printer: &Printer) -> Result<(), CliError> {
    let dir = certs_dir(&app.data_dir);
    let mut slots: Vec<Slot> = local_slots(&dir)
        .into_iter()
        .filter(|s| s.cert.is_file())
        .collect();
    for row in app.store.certificates().list().await? {
        let cert = PathBuf::from(&row.cert_path);
        if let Some(s) = slots.iter_mut().find(|s| s.cert == cert || s.id == row.id) {
            s.updated_at = Some(format_ts(&row.updated_at));
            continue;
        }
        slots.push(Slot {
            id: row.id.clone(),
            mode: row.mode.as_str(),
            kind: "server",
            domain: row.domain.clone(),
            cert,
            key: PathBuf::from(&row.key_path),
            updated_at: Some(format_ts(&row.updated_at)),
        });
    }
    let data: Vec<Value> =
        tokio::task::spawn_blocking(move || slots.iter().map(describe).collect())
            .await
            .map_err(|e| CliError::internal("INTERNAL", e.to_string()))?;
    printer.success(&data, || {
        if data.is_empty() {
            return format!(
                "no certificates yet: FLM creates them when a proxy starts in an HTTPS mode ({})",
                dir.display()
            );
        }
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
        let rows: Vec<Vec<String>> = data
            .iter()
            .map(|v| {
                let expiry = match (v["expires_at"].as_str(), v["is_expired"].as_bool()) {
                    (Some(t), Some(true)) => format!("{t} (EXPIRED)"),
                    (Some(t), _) => format!("{t} ({} days)", v["days_left"]),
                    (None, _) => format!("unreadable: {}", s(v, "error")),
                };
                let sans = v["sans"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                vec![
                    s(v, "id"),
                    s(v, "mode"),
                    s(v, "subject"),
                    sans,
                    expiry,
                    s(v, "cert_path"),
                ]
            })
            .collect();
        table(&["ID", "MODE", "SUBJECT", "SANS", "EXPIRES", "PATH"], &rows)
    })
}
