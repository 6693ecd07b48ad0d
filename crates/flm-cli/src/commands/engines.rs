//! `flm engines detect|add|list|remove`.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use flm_core::ports::SystemClock;
use flm_core::services::DetectOptions;
use flm_core::services::HealthHistoryService;
use flm_core::EngineKind;
use serde_json::json;

use crate::app::App;
use crate::cli::EnginesCmd;
use crate::commands::{ms, Progress};
use crate::output::{table, CliError, Printer};

pub(crate) async fn run(app: &App, cmd: EnginesCmd, printer: &Printer) -> Result<(), CliError> {
    match cmd {
        EnginesCmd::Detect(args) => {
            let report = {
                let _p = Progress::start(printer, "Detecting engines");
                app.engines
                    .detect(&DetectOptions {
                        filter: args.engine,
                        fresh: args.fresh,
                    })
                    .await?
            };
            printer.success(&report, || {
                let mut out = if report.engines.is_empty() {
                    "No engines found. Start Ollama, vLLM, LM Studio or llama-server, or add an endpoint with `flm engines add --kind <kind> --url <url>`.\n".to_owned()
                } else {
                    let rows: Vec<Vec<String>> = report
                        .engines
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.to_string(),
                                e.kind.to_string(),
                                e.status.name().to_owned(),
                                ms(e.status.latency_ms()),
                                e.model_count.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                                e.base_url.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect();
                    let mut t = table(&["ID", "KIND", "STATUS", "LATENCY", "MODELS", "ADDRESS"], &rows);
                    for e in &report.engines {
                        if let Some(r) = e.status.reason() {
                            t.push_str(&format!("{}: {r}\n", e.id));
                        }
                        if let Some(b) = &e.binary_path {
                            if !e.status.is_running() {
                                t.push_str(&format!("{}: installed at {b}\n", e.id));
                            }
                        }
                    }
                    t
                };
                if report.cached {
                    let age = Utc::now().signed_duration_since(report.detected_at).num_seconds().max(0);
                    out.push_str(&format!("(cached {age} s ago; --fresh probes again)\n"));
                }
                out
            })
        }
        EnginesCmd::Add(args) => {
            let kind: EngineKind = args.kind.parse().map_err(CliError::from)?;
            let ep = app
                .engines
                .add_endpoint(kind, &args.url, args.id.as_deref())
                .await?;
            printer.success(&ep, || {
                format!(
                    "Added {} ({}) at {}. Run `flm engines detect` to check it.",
                    ep.id, ep.kind, ep.base_url
                )
            })
        }
        EnginesCmd::List => {
            let eps = app.engines.list_endpoints().await?;
            printer.success(&json!({ "endpoints": eps }), || {
                if eps.is_empty() {
                    return "No engine endpoints configured. Default addresses are always probed; add others with `flm engines add --kind <kind> --url <url>`.".to_owned();
                }
                let rows: Vec<Vec<String>> = eps
                    .iter()
                    .map(|e| vec![e.id.to_string(), e.kind.to_string(), e.base_url.clone(), e.created_at.to_rfc3339()])
                    .collect();
                table(&["ID", "KIND", "URL", "ADDED"], &rows)
            })
        }
        EnginesCmd::Remove { id } => {
            app.engines.remove_endpoint(&id).await?;
            printer.success(&json!({ "removed": id }), || format!("Removed {id}."))
        }
        EnginesCmd::HealthHistory(args) => {
            let service = HealthHistoryService::new(app.store.health_log(), Arc::new(SystemClock));
            let h = service
                .history(
                    args.hours,
                    args.limit,
                    args.engine.as_deref(),
                    args.model.as_deref(),
                )
                .await?;
            let logs: Vec<_> = h
                .samples
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id, "engine_id": s.engine_id, "model_id": s.model, "status": s.status,
                        "latency_ms": s.latency_ms, "error_rate": s.error_rate, "error": s.error,
                        "created_at": s.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    })
                })
                .collect();
            printer.success(&json!({ "logs": logs, "summary": h.summary }), || {
                if h.samples.is_empty() {
                    return format!(
                        "No health samples in the last {} h. The running proxy records them (`flm proxy start`).",
                        args.hours
                    );
                }
                let rows: Vec<Vec<String>> = h
                    .summary
                    .iter()
                    .map(|s| {
                        vec![
                            s.engine_id.clone(),
                            s.model.clone().unwrap_or_else(|| "-".into()),
                            s.samples.to_string(),
                            format!("{:.1}%", s.success_rate * 100.0),
                            s.avg_latency_ms.map(|l| format!("{l:.0} ms")).unwrap_or_else(|| "-".into()),
                            format!("{:.1}%", s.error_rate * 100.0),
                        ]
                    })
                    .collect();
                let mut out = table(&["ENGINE", "MODEL", "SAMPLES", "SUCCESS", "AVG LATENCY", "ERRORS"], &rows);
                out.push('\n');
                let rows: Vec<Vec<String>> = h
                    .samples
                    .iter()
                    .map(|s| {
                        vec![
                            s.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                            s.engine_id.clone(),
                            s.model.clone().unwrap_or_else(|| "-".into()),
                            s.status.clone(),
                            ms(s.latency_ms),
                            s.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.push_str(&table(&["TIME", "ENGINE", "MODEL", "STATUS", "LATENCY", "ERROR"], &rows));
                out
            })
        }
    }
}
