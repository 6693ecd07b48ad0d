//! `flm usage`.

use std::sync::Arc;

use flm_core::ports::SystemClock;
use flm_core::services::UsageService;
use flm_core::usage::{UsageGroupBy, UsageRange};

use crate::app::App;
use crate::cli::UsageArgs;
use crate::output::{table, CliError, Printer};

pub(crate) async fn run(app: &App, args: UsageArgs, printer: &Printer) -> Result<(), CliError> {
    let range: UsageRange = args.range.parse().map_err(CliError::from)?;
    let by: UsageGroupBy = args.by.parse().map_err(CliError::from)?;
    let service = UsageService::new(
        app.store.usage(),
        Some(app.store.api_keys()),
        Arc::new(SystemClock),
    );
    let report = service.report(range, by).await?;
    printer.success(&report, || {
        if report.groups.is_empty() {
            return format!(
                "No requests through the proxy in the last {}. Usage is written by the running proxy every 10 s.",
                range.as_str()
            );
        }
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"));
        let rows: Vec<Vec<String>> = report
            .groups
            .iter()
            .map(|g| {
                let name = if g.group.is_empty() {
                    "(none)".to_owned()
                } else {
                    match &g.label {
                        Some(l) => format!("{} ({l})", g.group),
                        None => g.group.clone(),
                    }
                };
                vec![
                    name,
                    g.requests.to_string(),
                    g.errors.to_string(),
                    g.tokens_in.to_string(),
                    g.tokens_out.to_string(),
                    ms(g.latency_p50_ms),
                    ms(g.latency_p95_ms),
                    ms(g.ttft_p50_ms),
                    ms(g.ttft_p95_ms),
                ]
            })
            .collect();
        let first = match by {
            UsageGroupBy::Key => "KEY",
            UsageGroupBy::Model => "MODEL",
            UsageGroupBy::Engine => "ENGINE",
        };
        let mut out = format!("Last {}:\n", range.as_str());
        out.push_str(&table(
            &[
                first, "REQUESTS", "ERRORS", "TOKENS IN", "TOKENS OUT", "P50", "P95", "TTFT P50",
                "TTFT P95",
            ],
            &rows,
        ));
        out
    })
}
