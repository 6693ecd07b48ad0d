//! Request metrics for `GET /metrics`: the OpenTelemetry GenAI histograms
//! (`gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`,
//! `gen_ai_server_time_per_output_token_seconds`, `gen_ai_client_token_usage`) and the
//! `flm_requests_total` counter, fed by the access-log body wrapper
//! ([`crate::access_log`]) once per request, whether the access log is on or off.
//!
//! The table is process-wide and sharded by thread (like the usage meter), so a
//! request takes one uncontended shard lock, never a global one. Cardinality is
//! bounded: routes are folded onto the route table, engines and models are the ones
//! the router resolved (configured ones), error types are FLM's fixed error codes,
//! and once [`MAX_SERIES`] label sets exist any new one is recorded with the
//! label values `other`. No key id or client address is ever a label.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The most label sets kept per table (GenAI series, request counters); beyond
/// it new label sets are folded into `other`.
pub const MAX_SERIES: usize = 1000;

const SHARDS: usize = 8;

/// `gen_ai.client.operation.duration` buckets (seconds), used for the request duration.
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The facts of one finished request, computed once by the access-log wrapper.
pub(crate) struct Facts<'a> {
    pub(crate) method: &'a str,
    pub(crate) route: &'a str,
    pub(crate) engine_id: Option<&'a str>,
    pub(crate) engine_kind: Option<&'static str>,
    pub(crate) model: Option<&'a str>,
    pub(crate) status: u16,
    pub(crate) error_code: Option<&'static str>,
    pub(crate) duration: Duration,
    pub(crate) ttft: Option<Duration>,
    pub(crate) tokens: Option<(u64, u64)>,
}

#[derive(Clone, Default)]
struct Hist {
    /// Per-bucket (not cumulative) counts; the last slot is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn merge(&mut self, o: &Hist) {
        if o.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; o.counts.len()];
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum += o.sum;
        self.count += o.count;
    }
}

/// `(operation, provider, model, error_type)`.
type GenAiKey = (&'static str, String, String, &'static str);
/// `(route, status_class, engine, model, outcome)`.
type ReqKey = (&'static str, &'static str, String, String, &'static str);

#[derive(Clone, Default)]
struct Series {
    duration: Hist,
    ttft: Hist,
    tpot: Hist,
    input: Hist,
    output: Hist,
}

#[derive(Default)]
struct Shard {
    genai: HashMap<GenAiKey, Series>,
    requests: HashMap<ReqKey, u64>,
}

struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// Label sets inserted (a set new to several shards counts several times, so
    /// the cap errs on the safe side).
    genai_sets: AtomicUsize,
    request_sets: AtomicUsize,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table {
        shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        genai_sets: AtomicUsize::new(0),
        request_sets: AtomicUsize::new(0),
    })
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard leaves plain counters behind: keep using them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The GenAI operation name of a route (`None`: not a GenAI operation).
fn operation(method: &str, route: &str) -> Option<&'static str> {
    if method != "POST" {
        return None;
    }
    Some(match route {
        "/v1/chat/completions" => "chat",
        "/v1/completions" => "text_completion",
        "/v1/embeddings" => "embeddings",
        "/v1/responses" => "responses",
        "/v1/audio/transcriptions" => "transcription",
        "/v1/audio/translations" => "translation",
        "/v1/audio/speech" => "speech",
        "/v1/images/generations" => "image_generation",
        _ => return None,
    })
}

/// The route-table entry of a path (`other` for paths that match none).
fn route_label(route: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/v1/models",
        "/metrics",
        "/health",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/speech",
        "/v1/images/generations",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == route) {
        return k;
    }
    if route.starts_with("/v1/responses/") {
        "/v1/responses/{id}"
    } else if route.starts_with("/engine/") {
        "/engine/{engine_id}/{*path}"
    } else {
        "other"
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Records one finished request.
pub(crate) fn record(f: &Facts<'_>) {
    let failed = f.status >= 400 || f.error_code.is_some();
    let outcome = match f.error_code {
        Some("client_disconnected") => "cancelled",
        _ if failed => "error",
        _ => "ok",
    };
    let error_type = if failed {
        f.error_code.unwrap_or_else(|| status_class(f.status))
    } else {
        ""
    };
    let t = table();
    let mut shard = lock(&t.shards[shard_index()]);
    let req_key: ReqKey = (
        route_label(f.route),
        status_class(f.status),
        f.engine_id.unwrap_or("").to_owned(),
        f.model.unwrap_or("").to_owned(),
        outcome,
    );
    let req_key = if shard.requests.contains_key(&req_key)
        || t.request_sets.fetch_add(1, Ordering::Relaxed) < MAX_SERIES
    {
        req_key
    } else {
        (
            req_key.0,
            req_key.1,
            "other".to_owned(),
            "other".to_owned(),
            outcome,
        )
    };
    *shard.requests.entry(req_key).or_default() += 1;

    let Some(op) = operation(f.method, f.route) else {
        return;
    };
    let key: GenAiKey = (
        op,
        f.engine_kind.unwrap_or("").to_owned(),
        f.model.unwrap_or("").to_owned(),
        error_type,
    );
    let key = if shard.genai.contains_key(&key)
        || t.genai_sets.fetch_add(1, Ordering::Relaxed) < MAX_SERIES
    {
        key
    } else {
        (op, "other".to_owned(), "other".to_owned(), error_type)
    };
    let s = shard.genai.entry(key).or_default();
    let duration = f.duration.as_secs_f64();
    s.duration.observe(DURATION_BUCKETS, duration);
    if let Some(ttft) = f.ttft {
        let ttft = ttft.as_secs_f64();
        s.ttft.observe(TTFT_BUCKETS, ttft);
        if let Some((_, out)) = f.tokens.filter(|t| t.1 > 1) {
            let per = (duration - ttft).max(0.0) / (out - 1) as f64;
            s.tpot.observe(TPOT_BUCKETS, per);
        }
    }
    if let Some((input, output)) = f.tokens {
        s.input.observe(TOKEN_BUCKETS, input as f64);
        // Embeddings produce no output tokens.
        if op != "embeddings" {
            s.output.observe(TOKEN_BUCKETS, output as f64);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".to_owned()
    } else {
        format!("{v}")
    }
}

fn render_hist(out: &mut String, name: &str, labels: &str, bounds: &[f64], h: &Hist) {
    let mut cum = 0;
    for (i, c) in h.counts.iter().enumerate() {
        cum += c;
        let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {cum}",
            fmt_f64(le)
        );
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", fmt_f64(h.sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// Appends the request metrics to `out` in the Prometheus text format.
pub(crate) fn render(out: &mut String) {
    let t = table();
    let mut genai: BTreeMap<GenAiKey, Series> = BTreeMap::new();
    let mut requests: BTreeMap<ReqKey, u64> = BTreeMap::new();
    for m in t.shards.iter() {
        let s = lock(m);
        for (k, v) in &s.genai {
            let e = genai.entry(k.clone()).or_default();
            e.duration.merge(&v.duration);
            e.ttft.merge(&v.ttft);
            e.tpot.merge(&v.tpot);
            e.input.merge(&v.input);
            e.output.merge(&v.output);
        }
        for (k, v) in &s.requests {
            *requests.entry(k.clone()).or_default() += v;
        }
    }
    let labels = |k: &GenAiKey| {
        let mut l = format!(
            "gen_ai_operation_name=\"{}\",gen_ai_provider_name=\"{}\",gen_ai_request_model=\"{}\"",
            k.0,
            escape(&k.1),
            escape(&k.2)
        );
        if !k.3.is_empty() {
            let _ = write!(l, ",error_type=\"{}\"", escape(k.3));
        }
        l
    };
    type Pick = fn(&Series) -> &Hist;
    let families: [(&str, &str, &[f64], Pick); 3] = [
        (
            "gen_ai_server_request_duration_seconds",
            "GenAI request duration in seconds, until the end of the response body.",
            DURATION_BUCKETS,
            |s| &s.duration,
        ),
        (
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first body chunk of a streamed GenAI response, in seconds.",
            TTFT_BUCKETS,
            |s| &s.ttft,
        ),
        (
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first of a streamed GenAI response, in seconds.",
            TPOT_BUCKETS,
            |s| &s.tpot,
        ),
    ];
    for (name, help, bounds, pick) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (k, s) in &genai {
            let h = pick(s);
            if h.count > 0 {
                render_hist(out, name, &labels(k), bounds, h);
            }
        }
    }
    let name = "gen_ai_client_token_usage";
    let _ = writeln!(
        out,
        "# HELP {name} Tokens per GenAI request, as the engine reported them in usage.\n# TYPE {name} histogram"
    );
    for (k, s) in &genai {
        for (ty, h) in [("input", &s.input), ("output", &s.output)] {
            if h.count > 0 {
                let l = format!("{},gen_ai_token_type=\"{ty}\"", labels(k));
                render_hist(out, name, &l, TOKEN_BUCKETS, h);
            }
        }
    }
    let name = "flm_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests served by the proxy, by route, status class, engine, model and outcome.\n# TYPE {name} counter"
    );
    for (k, v) in &requests {
        let _ = writeln!(
            out,
            "{name}{{route=\"{}\",status_class=\"{}\",engine=\"{}\",model=\"{}\",outcome=\"{}\"}} {v}",
            k.0,
            k.1,
            escape(&k.2),
            escape(&k.3),
            k.4
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labels_bounded() {
        assert_eq!(route_label("/nope/123"), "other");
        assert_eq!(route_label("/v1/responses/resp_1"), "/v1/responses/{id}");
        assert_eq!(
            route_label("/engine/x/v1/models"),
            "/engine/{engine_id}/{*path}"
        );
        let mut h = Hist::default();
        for v in [0.005, 0.05, 100.0] {
            h.observe(DURATION_BUCKETS, v);
        }
        let mut out = String::new();
        render_hist(&mut out, "x", "a=\"b\"", DURATION_BUCKETS, &h);
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.08\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }

    #[test]
    fn label_sets_beyond_the_cap_become_other() {
        let models: Vec<String> = (0..MAX_SERIES + 50).map(|i| format!("e/m{i}")).collect();
        for m in &models {
            record(&Facts {
                method: "POST",
                route: "/v1/chat/completions",
                engine_id: Some("e"),
                engine_kind: Some("vllm"),
                model: Some(m),
                status: 200,
                error_code: None,
                duration: Duration::from_millis(5),
                ttft: None,
                tokens: Some((3, 4)),
            });
        }
        let mut out = String::new();
        render(&mut out);
        let requests: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("flm_requests_total{"))
            .collect();
        assert!(requests.len() <= MAX_SERIES + 1, "{}", requests.len());
        assert!(requests.iter().any(|l| l.contains("model=\"other\"")));
        let durations = out
            .lines()
            .filter(|l| l.starts_with("gen_ai_server_request_duration_seconds_count{"))
            .count();
        assert!(durations <= MAX_SERIES + 1, "{durations}");
        assert!(out.contains("gen_ai_request_model=\"other\""));
        // Nothing is lost: every request is counted somewhere.
        let total: u64 = requests
            .iter()
            .filter(|l| l.contains("route=\"/v1/chat/completions\""))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert!(total >= models.len() as u64);
    }
}
