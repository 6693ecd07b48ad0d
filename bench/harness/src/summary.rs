//! Turns the results of `bench/proxy.sh` into the Markdown table of
//! `docs/benchmarks.md`.
//!
//! Input: one [`LoadReport`] JSON line per run, labelled `<scenario>/<path>` with
//! path `direct` or `proxy`, in the order they ran (direct, proxy, direct, proxy …).
//! The n-th direct run of a scenario is paired with its n-th proxy run; differences
//! and ratios are computed per pair, then the median over pairs is reported, so that
//! a noisy moment of the shared machine hits both sides of a pair.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context as _};

use crate::load::LoadReport;

/// Scenario labels written by `bench/proxy.sh`.
pub const CHAT_C1: &str = "chat-c1";
/// See [`CHAT_C1`].
pub const CHAT_C64: &str = "chat-c64";
/// See [`CHAT_C1`].
pub const STREAM_C16: &str = "stream-c16";

/// Extra figures measured by the script, not by the load generator.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    /// Proxy VmRSS after start-up, before any load, KiB.
    pub rss_idle_kib: Option<u64>,
    /// Largest proxy VmRSS read at the end of a concurrency-64 run, KiB.
    pub rss_c64_kib: Option<u64>,
}

/// The rendered table and whether every target was met.
#[derive(Debug)]
pub struct Summary {
    /// Markdown, ready to paste.
    pub markdown: String,
    /// Targets missed (empty when all pass), by row name.
    pub missed: Vec<String>,
    /// Errors plus non-2xx answers over all runs; any is a broken run.
    pub failures: u64,
}

#[derive(Default)]
struct Pairs {
    direct: Vec<LoadReport>,
    proxy: Vec<LoadReport>,
}

/// Parses the JSON lines of a results file.
pub fn parse_lines(text: &str) -> anyhow::Result<Vec<LoadReport>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("results line {}", i + 1)))
        .collect()
}

/// Builds the table.
pub fn summarize(reports: &[LoadReport], extras: &Extras) -> anyhow::Result<Summary> {
    let mut by_scenario: BTreeMap<&str, Pairs> = BTreeMap::new();
    for r in reports {
        let label = r.label.as_deref().context("a result has no label")?;
        let Some((scenario, path)) = label.rsplit_once('/') else {
            bail!("label {label:?} is not <scenario>/<direct|proxy>");
        };
        let pairs = by_scenario.entry(scenario).or_default();
        match path {
            "direct" => pairs.direct.push(r.clone()),
            "proxy" => pairs.proxy.push(r.clone()),
            _ => bail!("label {label:?} is not <scenario>/<direct|proxy>"),
        }
    }
    let mut t = Table::default();
    if let Some(p) = by_scenario.get(CHAT_C1) {
        let name = "chat, c=1";
        t.added(name, "p50 latency µs", p, |r| r.p50_us, Some(60.0));
        t.added(name, "p99 latency µs", p, |r| r.p99_us, Some(250.0));
        t.ratio(name, "requests/s", p, |r| r.rps, None);
    }
    if let Some(p) = by_scenario.get(CHAT_C64) {
        let name = "chat, c=64";
        t.ratio(name, "requests/s", p, |r| r.rps, Some(0.5));
        t.added(name, "p50 latency µs", p, |r| r.p50_us, None);
        t.added(name, "p99 latency µs", p, |r| r.p99_us, None);
    }
    if let Some(p) = by_scenario.get(STREAM_C16) {
        let name = "stream (20 chunks), c=16";
        t.added(
            name,
            "TTFB p50 µs",
            p,
            |r| r.ttfb_p50_us.unwrap_or(0.0),
            Some(100.0),
        );
        t.added(
            name,
            "TTFB p99 µs",
            p,
            |r| r.ttfb_p99_us.unwrap_or(0.0),
            None,
        );
        t.ratio(name, "streams/s", p, |r| r.rps, Some(0.5));
        t.added(name, "full stream p50 µs", p, |r| r.p50_us, None);
    }
    t.rss("proxy RSS", "idle MiB", extras.rss_idle_kib, 15.0);
    t.rss("proxy RSS", "after c=64 MiB", extras.rss_c64_kib, 40.0);

    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    let non_2xx: u64 = reports.iter().map(|r| r.non_2xx).sum();
    let reconnects: u64 = reports.iter().map(|r| r.reconnects).sum();
    let rounds = by_scenario
        .values()
        .map(|p| p.direct.len().min(p.proxy.len()))
        .max()
        .unwrap_or(0);
    let mut markdown = t.rows;
    writeln!(
        markdown,
        "\n`direct` and `via proxy`: medians of the per-round figures; `proxy vs direct`: \
         median of the per-round differences (or ratios) of interleaved pairs, so it need \
         not equal the difference of the two medians."
    )?;
    writeln!(
        markdown,
        "{} runs ({rounds} interleaved rounds per scenario), {requests} measured requests: \
         {errors} errors, {non_2xx} non-2xx, {reconnects} reconnects.",
        reports.len()
    )?;
    Ok(Summary {
        markdown,
        missed: t.missed,
        failures: errors + non_2xx,
    })
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn fmt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

// === impl Table ===

struct Table {
    rows: String,
    missed: Vec<String>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            rows:
                "| scenario | metric | direct | via proxy | proxy vs direct | target | result |\n\
                   |---|---|---|---|---|---|---|\n"
                    .to_owned(),
            missed: Vec::new(),
        }
    }
}

impl Table {
    fn row(&mut self, cells: [&str; 7]) {
        self.rows.push_str("| ");
        self.rows.push_str(&cells.join(" | "));
        self.rows.push_str(" |\n");
    }

    fn verdict(&mut self, scenario: &str, metric: &str, ok: Option<bool>) -> &'static str {
        match ok {
            Some(true) => "pass",
            Some(false) => {
                self.missed.push(format!("{scenario}: {metric}"));
                "**MISS**"
            }
            None => "–",
        }
    }

    /// Proxy minus direct, median over pairs; `max` is the largest allowed.
    fn added(
        &mut self,
        scenario: &str,
        metric: &str,
        p: &Pairs,
        f: fn(&LoadReport) -> f64,
        max: Option<f64>,
    ) {
        let diffs = p
            .direct
            .iter()
            .zip(&p.proxy)
            .map(|(d, x)| f(x) - f(d))
            .collect();
        let diff = median(diffs);
        let direct = median(p.direct.iter().map(f).collect());
        let proxy = median(p.proxy.iter().map(f).collect());
        let ok = max.and_then(|m| diff.map(|d| d <= m));
        let target = max.map_or_else(|| "–".to_owned(), |m| format!("≤ +{m:.0} µs"));
        let verdict = self.verdict(scenario, metric, ok);
        let diff = diff.map_or_else(|| "–".to_owned(), |d| format!("{d:+.1}"));
        self.row([
            scenario,
            metric,
            &fmt(direct),
            &fmt(proxy),
            &diff,
            &target,
            verdict,
        ]);
    }

    /// Proxy over direct, median over pairs; `min` is the smallest allowed.
    fn ratio(
        &mut self,
        scenario: &str,
        metric: &str,
        p: &Pairs,
        f: fn(&LoadReport) -> f64,
        min: Option<f64>,
    ) {
        let ratios = p
            .direct
            .iter()
            .zip(&p.proxy)
            .filter(|(d, _)| f(d) > 0.0)
            .map(|(d, x)| f(x) / f(d))
            .collect();
        let ratio = median(ratios);
        let direct = median(p.direct.iter().map(f).collect());
        let proxy = median(p.proxy.iter().map(f).collect());
        let ok = min.and_then(|m| ratio.map(|r| r >= m));
        let target = min.map_or_else(|| "–".to_owned(), |m| format!("≥ ×{m:.1}"));
        let verdict = self.verdict(scenario, metric, ok);
        let ratio = ratio.map_or_else(|| "–".to_owned(), |r| format!("×{r:.2}"));
        self.row([
            scenario,
            metric,
            &fmt(direct),
            &fmt(proxy),
            &ratio,
            &target,
            verdict,
        ]);
    }

    fn rss(&mut self, scenario: &str, metric: &str, kib: Option<u64>, max_mib: f64) {
        let Some(kib) = kib else { return };
        let mib = kib as f64 / 1024.0;
        let verdict = self.verdict(scenario, metric, Some(mib <= max_mib));
        let target = format!("≤ {max_mib:.0} MiB");
        self.row([
            scenario,
            metric,
            "–",
            &format!("{mib:.1}"),
            "–",
            &target,
            verdict,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, p50: f64, p99: f64, rps: f64) -> LoadReport {
        LoadReport {
            label: Some(label.to_owned()),
            stream: false,
            concurrency: 1,
            requests: 10,
            errors: 0,
            non_2xx: 0,
            reconnects: 0,
            duration_s: 1.0,
            rps,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            ttfb_p50_us: None,
            ttfb_p99_us: None,
        }
    }

    #[test]
    fn pairs_rounds_and_takes_medians_of_differences() {
        let reports = vec![
            report("chat-c1/direct", 50.0, 100.0, 1000.0),
            report("chat-c1/proxy", 90.0, 200.0, 600.0),
            report("chat-c1/direct", 60.0, 100.0, 1000.0),
            report("chat-c1/proxy", 170.0, 500.0, 400.0),
            report("chat-c1/direct", 55.0, 100.0, 1000.0),
            report("chat-c1/proxy", 100.0, 300.0, 500.0),
        ];
        let s = summarize(
            &reports,
            &Extras {
                rss_idle_kib: Some(20 * 1024),
                rss_c64_kib: None,
            },
        )
        .expect("summary");
        // Differences 40, 110, 45 -> median 45; p99 differences 100, 400, 200 -> 200.
        assert!(
            s.markdown.contains(
                "| chat, c=1 | p50 latency µs | 55.0 | 100.0 | +45.0 | ≤ +60 µs | pass |"
            ),
            "{}",
            s.markdown
        );
        assert!(
            s.markdown.contains("| +200.0 | ≤ +250 µs | pass |"),
            "{}",
            s.markdown
        );
        assert!(s.markdown.contains("×0.50"), "{}", s.markdown);
        assert_eq!(s.missed, vec!["proxy RSS: idle MiB".to_owned()]);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn rejects_unlabelled_results() {
        let mut r = report("x/direct", 1.0, 1.0, 1.0);
        r.label = None;
        assert!(summarize(&[r], &Extras::default()).is_err());
    }
}
