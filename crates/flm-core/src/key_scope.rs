//! What an API key may do: the models it may use, the route classes it may call, and
//! when it expires (`docs/guides/api-keys.md`).
//!
//! A key without lists is *unscoped*: every model, every route — exactly what keys did
//! before scopes existed (old rows of `api_keys` have no lists and no expiry).
//!
//! ## Model patterns
//!
//! A pattern is matched against the model a request names, after the proxy resolved
//! it to an engine:
//! - a pattern starting with `flm://` is matched against the canonical id
//!   `flm://{engine_id}/{model}` (e.g. `flm://ollama-default/llama3.2:latest`,
//!   `flm://ollama-default/*`);
//! - any other pattern is matched against the engine's model name alone, on any engine
//!   (e.g. `llama3.2:latest`, `*llama*`, `nomic-embed-*`).
//!
//! `*` matches any run of characters (also none, also `/`), `?` exactly one
//! character; every other character matches itself, case-sensitively. A pattern
//! without `*` or `?` is an exact id or name.
//!
//! ## Route classes
//!
//! [`RouteClass`]: every protected route of the proxy belongs to one class; a key with
//! a route list is refused on routes of other classes (and on any route that belongs
//! to no class yet).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ids::MODEL_ID_SCHEME;

/// Patterns one key may hold, at most.
pub const MAX_MODEL_PATTERNS: usize = 100;
/// Characters of one pattern, at most.
pub const MAX_PATTERN_LEN: usize = 256;
/// The longest lifetime `--expires-in` accepts (10 years).
pub const MAX_EXPIRY_DAYS: i64 = 3650;

/// A class of proxy routes a key may be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions` (legacy text completion, fill-in-the-middle).
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `GET /v1/models` (and `/v1/models/{id}`).
    Models,
    /// `/v1/responses` and `/v1/responses/{id}`.
    Responses,
    /// `/v1/audio/*` (transcriptions, translations, speech).
    Audio,
    /// `/v1/images/*`.
    Images,
    /// `/engine/{engine_id}/*`: the engine's own API, unfiltered.
    Passthrough,
    /// `GET /metrics` (Prometheus).
    Metrics,
}

impl RouteClass {
    /// Every class, in documentation order.
    pub const ALL: [RouteClass; 9] = [
        RouteClass::Chat,
        RouteClass::Completions,
        RouteClass::Embeddings,
        RouteClass::Models,
        RouteClass::Responses,
        RouteClass::Audio,
        RouteClass::Images,
        RouteClass::Passthrough,
        RouteClass::Metrics,
    ];

    /// The name used by the CLI, the store and the app.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Chat => "chat",
            RouteClass::Completions => "completions",
            RouteClass::Embeddings => "embeddings",
            RouteClass::Models => "models",
            RouteClass::Responses => "responses",
            RouteClass::Audio => "audio",
            RouteClass::Images => "images",
            RouteClass::Passthrough => "passthrough",
            RouteClass::Metrics => "metrics",
        }
    }

    /// Parses a class name (case-insensitive, surrounding spaces ignored).
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let name = raw.trim().to_ascii_lowercase();
        RouteClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "unknown route class `{}`; expected one of: {}",
                    raw.trim(),
                    RouteClass::ALL.map(RouteClass::as_str).join(", ")
                ))
            })
    }

    /// The class of a request path of the proxy; `None` for a path of no class.
    pub fn of_path(path: &str) -> Option<Self> {
        let under = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if path == "/v1/chat/completions" {
            Some(RouteClass::Chat)
        } else if path == "/v1/completions" {
            Some(RouteClass::Completions)
        } else if path == "/v1/embeddings" {
            Some(RouteClass::Embeddings)
        } else if under("/v1/models") {
            Some(RouteClass::Models)
        } else if under("/v1/responses") {
            Some(RouteClass::Responses)
        } else if path.starts_with("/v1/audio/") {
            Some(RouteClass::Audio)
        } else if path.starts_with("/v1/images/") {
            Some(RouteClass::Images)
        } else if path.starts_with("/engine/") {
            Some(RouteClass::Passthrough)
        } else if path == "/metrics" {
            Some(RouteClass::Metrics)
        } else {
            None
        }
    }
}

impl std::fmt::Display for RouteClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a scoped key may not call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefusal {
    /// English explanation, for the error body.
    pub message: String,
}

/// The models and routes a key may use. Built only through [`KeyScope::new`], so a
/// value always holds valid, de-duplicated lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyScope {
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<RouteClass>>,
}

impl KeyScope {
    /// The scope of a key without lists: everything.
    pub fn unscoped() -> Self {
        Self::default()
    }

    /// A scope from model patterns and route classes (`None`: no limit of that kind).
    /// Patterns are trimmed and de-duplicated (first occurrence kept); an empty list,
    /// an invalid pattern or too many patterns is an error.
    pub fn new(
        models: Option<Vec<String>>,
        routes: Option<Vec<RouteClass>>,
    ) -> Result<Self, CoreError> {
        let models = match models {
            None => None,
            Some(list) => {
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for raw in &list {
                    let p = validate_pattern(raw)?;
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                if out.is_empty() {
                    return Err(CoreError::InvalidInput(
                        "the model list is empty; give at least one model id or pattern, or no list for every model".into(),
                    ));
                }
                if out.len() > MAX_MODEL_PATTERNS {
                    return Err(CoreError::InvalidInput(format!(
                        "too many model patterns ({}); at most {MAX_MODEL_PATTERNS}",
                        out.len()
                    )));
                }
                Some(out)
            }
        };
        let routes = match routes {
            None => None,
            Some(list) => {
                let mut out = list;
                out.sort();
                out.dedup();
                if out.is_empty() {
                    return Err(CoreError::InvalidInput(
                        "the route list is empty; give at least one route class, or no list for every route".into(),
                    ));
                }
                Some(out)
            }
        };
        Ok(Self { models, routes })
    }

    /// Parses route class names (see [`RouteClass::parse`]) into a scope's route list.
    pub fn parse_routes<S: AsRef<str>>(names: &[S]) -> Result<Vec<RouteClass>, CoreError> {
        names
            .iter()
            .map(|n| RouteClass::parse(n.as_ref()))
            .collect()
    }

    /// The model patterns (`None`: every model).
    pub fn models(&self) -> Option<&[String]> {
        self.models.as_deref()
    }

    /// The route classes (`None`: every route).
    pub fn routes(&self) -> Option<&[RouteClass]> {
        self.routes.as_deref()
    }

    /// Whether the key has no limit at all.
    pub fn is_unscoped(&self) -> bool {
        self.models.is_none() && self.routes.is_none()
    }

    /// Whether the key may call a route of class `class` (`None`: a route of no class).
    ///
    /// A key limited to models may use the pass-through (which reaches every model of
    /// an engine) only when its route list names `passthrough` explicitly.
    pub fn check_route(&self, class: Option<RouteClass>) -> Result<(), RouteRefusal> {
        let Some(class) = class else {
            return match &self.routes {
                None => Ok(()),
                Some(_) => Err(RouteRefusal {
                    message: "this API key is limited to some routes, and this route belongs to none of its route classes".into(),
                }),
            };
        };
        match &self.routes {
            Some(routes) if !routes.contains(&class) => Err(RouteRefusal {
                message: format!(
                    "this API key may not use `{class}` routes; it is limited to: {}",
                    routes
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            None if class == RouteClass::Passthrough && self.models.is_some() => {
                Err(RouteRefusal {
                    message: "this API key is limited to some models, and the pass-through (`/engine/…`) reaches every model of an engine; give the key the `passthrough` route class explicitly to allow it".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether the key may use model `model` of engine `engine_id`.
    pub fn allows_model(&self, engine_id: &str, model: &str) -> bool {
        let Some(patterns) = &self.models else {
            return true;
        };
        let mut full: Option<String> = None;
        patterns.iter().any(|p| {
            if p.starts_with(MODEL_ID_SCHEME) {
                let id =
                    full.get_or_insert_with(|| format!("{MODEL_ID_SCHEME}{engine_id}/{model}"));
                glob_match(p, id)
            } else {
                glob_match(p, model)
            }
        })
    }
}

/// Checks one model pattern; returns it trimmed.
fn validate_pattern(raw: &str) -> Result<String, CoreError> {
    let p = raw.trim();
    if p.is_empty() {
        return Err(CoreError::InvalidInput(
            "empty model pattern; give a model id (flm://engine/model), a model name, or a pattern such as `flm://ollama-default/*` or `*llama*`".into(),
        ));
    }
    if p.chars().count() > MAX_PATTERN_LEN {
        return Err(CoreError::InvalidInput(format!(
            "model pattern `{}…` is longer than {MAX_PATTERN_LEN} characters",
            p.chars().take(32).collect::<String>()
        )));
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::InvalidInput(format!(
            "model pattern `{}` contains a space or control character",
            p.escape_debug()
        )));
    }
    if let Some(rest) = p.strip_prefix(MODEL_ID_SCHEME) {
        let wild = rest.contains(['*', '?']);
        let shaped = match rest.split_once('/') {
            Some((engine, model)) => !engine.is_empty() && !model.is_empty(),
            None => false,
        };
        if !wild && !shaped {
            return Err(CoreError::InvalidInput(format!(
                "model pattern `{p}` is not a model id: expected flm://{{engine_id}}/{{model}} (or a pattern such as flm://{{engine_id}}/*)"
            )));
        }
    } else if p.contains("://") {
        return Err(CoreError::InvalidInput(format!(
            "model pattern `{p}` has a scheme other than flm://; give flm://{{engine_id}}/{{model}} or a bare model name"
        )));
    }
    Ok(p.to_owned())
}

/// Glob match of the whole `text`: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and where in `text` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((after, from)) => {
                    pi = after;
                    ti = from + 1;
                    star = Some((after, from + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Parses a lifetime such as `30d`, `12h`, `90m` or `45s`: a positive whole number
/// and one unit (`s`, `m`, `h`, `d`), at most [`MAX_EXPIRY_DAYS`] days.
pub fn parse_lifetime(raw: &str) -> Result<Duration, CoreError> {
    let s = raw.trim();
    let bad = |why: &str| {
        CoreError::InvalidInput(format!(
            "invalid duration `{s}`: {why}; expected a positive whole number followed by s, m, h or d (e.g. 30d, 12h, 90m, 45s)"
        ))
    };
    let Some(unit) = s.chars().last() else {
        return Err(bad("it is empty"));
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    let seconds_per: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        c if c.is_ascii_digit() => return Err(bad("the unit is missing")),
        _ => return Err(bad(&format!("unknown unit `{unit}`"))),
    };
    if digits.is_empty() {
        return Err(bad("the number is missing"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the number is not a whole number"));
    }
    let max = MAX_EXPIRY_DAYS * 86_400;
    let n: i64 = digits
        .parse()
        .map_err(|_| bad(&format!("longer than {MAX_EXPIRY_DAYS} days")))?;
    if n == 0 {
        return Err(bad("it must be greater than zero"));
    }
    let secs = n
        .checked_mul(seconds_per)
        .filter(|s| *s <= max)
        .ok_or_else(|| bad(&format!("longer than {MAX_EXPIRY_DAYS} days")))?;
    Ok(Duration::seconds(secs))
}

/// Token budgets of a key: tokens per minute and tokens per calendar month (UTC).
/// `None`: no budget of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBudget {
    /// Tokens per minute (prompt + completion), a bucket refilled continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens per calendar month (UTC), persisted across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_tokens: Option<u64>,
}

/// The largest budget value accepted (SQLite stores signed 64-bit integers).
pub const MAX_BUDGET: u64 = i64::MAX as u64;

impl KeyBudget {
    /// A budget; zero or out-of-range values are refused with the flag name.
    pub fn new(tpm: Option<u64>, monthly_tokens: Option<u64>) -> Result<Self, CoreError> {
        for (name, v) in [("--tpm", tpm), ("--monthly-tokens", monthly_tokens)] {
            match v {
                Some(0) => {
                    return Err(CoreError::InvalidInput(format!(
                        "{name} must be at least 1 (omit it for no limit)"
                    )))
                }
                Some(n) if n > MAX_BUDGET => {
                    return Err(CoreError::InvalidInput(format!(
                        "{name} is larger than {MAX_BUDGET}"
                    )))
                }
                _ => {}
            }
        }
        Ok(Self {
            tpm,
            monthly_tokens,
        })
    }

    /// Whether no budget is set.
    pub fn is_unlimited(&self) -> bool {
        self.tpm.is_none() && self.monthly_tokens.is_none()
    }
}

/// The calendar month (UTC) of `t`, as stored: `YYYY-MM`.
pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The start of the calendar month (UTC) after the one of `t`.
pub fn next_month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike, TimeZone};
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(t + Duration::days(31))
}

/// Whether a key with expiry `expires_at` is expired at `now` (an expiry equal to
/// `now` has passed).
pub fn is_expired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|e| e <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(models: &[&str], routes: Option<&[RouteClass]>) -> KeyScope {
        KeyScope::new(
            Some(models.iter().map(|s| (*s).to_owned()).collect()),
            routes.map(<[RouteClass]>::to_vec),
        )
        .unwrap()
    }

    #[test]
    fn glob_matching() {
        let yes = [
            ("*", ""),
            ("*", "anything/at:all"),
            ("*llama*", "tiny-llama"),
            ("*llama*", "llama3.2:latest"),
            ("llama?", "llama3"),
            (
                "flm://ollama-default/*",
                "flm://ollama-default/llama3.2:latest",
            ),
            ("flm://*/nomic-*", "flm://vllm-1/nomic-embed-text"),
            ("a*b*c", "aXXbYYc"),
            ("a*b*c", "abcbc"),
            ("**", "x"),
            ("モデル*", "モデル一"),
            ("?", "é"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p} should match {t}");
        }
        let no = [
            ("llama", "llama3"),
            ("llama?", "llama"),
            ("llama?", "llama31"),
            ("*llama", "llama3"),
            ("flm://ollama-default/*", "flm://ollama-other/llama3"),
            ("a*b*c", "aXXbYY"),
            ("Llama*", "llama3"),
            ("", "x"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p} should not match {t}");
        }
    }

    #[test]
    fn model_patterns_match_ids_or_names() {
        let s = scope(&["flm://ollama-default/*", "*embed*"], None);
        assert!(s.allows_model("ollama-default", "llama3.2:latest"));
        assert!(!s.allows_model("llamacpp-default", "tiny-llama"));
        assert!(s.allows_model("vllm", "nomic-embed-text"));
        let exact = scope(&["flm://llamacpp-default/tiny"], None);
        assert!(exact.allows_model("llamacpp-default", "tiny"));
        assert!(!exact.allows_model("llamacpp-default", "tiny2"));
        assert!(!exact.allows_model("other", "tiny"));
        let name = scope(&["tiny"], None);
        assert!(name.allows_model("a", "tiny"));
        assert!(name.allows_model("b", "tiny"));
        assert!(!name.allows_model("b", "tiny:latest"));
        assert!(KeyScope::unscoped().allows_model("x", "y"));
    }

    #[test]
    fn bad_patterns_are_refused_precisely() {
        let err = |p: &str| {
            KeyScope::new(Some(vec![p.to_owned()]), None)
                .unwrap_err()
                .to_string()
        };
        assert!(err("").contains("empty model pattern"));
        assert!(err("  ").contains("empty model pattern"));
        assert!(err("two words").contains("space"));
        assert!(err("flm://engine-only").contains("not a model id"));
        assert!(err("flm:///model").contains("not a model id"));
        assert!(err("http://x/y").contains("scheme other than flm://"));
        assert!(err(&"x".repeat(300)).contains("longer than 256"));
        let many: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
        assert!(KeyScope::new(Some(many), None)
            .unwrap_err()
            .to_string()
            .contains("too many"));
        assert!(KeyScope::new(Some(vec![]), None)
            .unwrap_err()
            .to_string()
            .contains("model list is empty"));
        assert!(KeyScope::new(None, Some(vec![]))
            .unwrap_err()
            .to_string()
            .contains("route list is empty"));
        // Wildcards make a partial id fine; duplicates collapse.
        let s = KeyScope::new(
            Some(vec!["flm://*".into(), " flm://*".into(), "a".into()]),
            None,
        )
        .unwrap();
        assert_eq!(s.models().unwrap(), ["flm://*", "a"]);
    }

    #[test]
    fn route_classes_parse_and_classify_paths() {
        assert_eq!(RouteClass::parse(" Chat ").unwrap(), RouteClass::Chat);
        for c in RouteClass::ALL {
            assert_eq!(RouteClass::parse(c.as_str()).unwrap(), c);
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        let e = RouteClass::parse("chats").unwrap_err().to_string();
        assert!(e.contains("unknown route class `chats`"), "{e}");
        assert!(e.contains("chat, completions, embeddings, models, responses, audio, images, passthrough, metrics"), "{e}");
        let paths = [
            ("/v1/chat/completions", Some(RouteClass::Chat)),
            ("/v1/completions", Some(RouteClass::Completions)),
            ("/v1/embeddings", Some(RouteClass::Embeddings)),
            ("/v1/models", Some(RouteClass::Models)),
            ("/v1/models/flm://a/b", Some(RouteClass::Models)),
            ("/v1/modelsx", None),
            ("/v1/responses", Some(RouteClass::Responses)),
            ("/v1/responses/resp_1", Some(RouteClass::Responses)),
            ("/v1/audio/transcriptions", Some(RouteClass::Audio)),
            ("/v1/images/generations", Some(RouteClass::Images)),
            (
                "/engine/ollama-default/api/tags",
                Some(RouteClass::Passthrough),
            ),
            ("/metrics", Some(RouteClass::Metrics)),
            ("/v1/other", None),
        ];
        for (p, c) in paths {
            assert_eq!(RouteClass::of_path(p), c, "{p}");
        }
    }

    #[test]
    fn route_checks() {
        let emb = KeyScope::new(None, Some(vec![RouteClass::Embeddings])).unwrap();
        assert!(emb.check_route(Some(RouteClass::Embeddings)).is_ok());
        let refused = emb.check_route(Some(RouteClass::Chat)).unwrap_err();
        assert!(refused.message.contains("may not use `chat` routes"));
        assert!(refused.message.contains("limited to: embeddings"));
        assert!(emb.check_route(None).is_err());
        let all = KeyScope::unscoped();
        for c in RouteClass::ALL {
            assert!(all.check_route(Some(c)).is_ok());
        }
        assert!(all.check_route(None).is_ok());
        // Model-limited keys reach the pass-through only when it is named.
        let m = scope(&["tiny"], None);
        assert!(m.check_route(Some(RouteClass::Passthrough)).is_err());
        assert!(m.check_route(Some(RouteClass::Chat)).is_ok());
        let mp = scope(&["tiny"], Some(&[RouteClass::Passthrough]));
        assert!(mp.check_route(Some(RouteClass::Passthrough)).is_ok());
    }

    #[test]
    fn budgets_and_months() {
        assert!(KeyBudget::new(None, None).unwrap().is_unlimited());
        let b = KeyBudget::new(Some(1000), Some(50_000)).unwrap();
        assert_eq!((b.tpm, b.monthly_tokens), (Some(1000), Some(50_000)));
        assert!(KeyBudget::new(Some(0), None)
            .unwrap_err()
            .to_string()
            .contains("--tpm must be at least 1"));
        assert!(KeyBudget::new(None, Some(u64::MAX))
            .unwrap_err()
            .to_string()
            .contains("--monthly-tokens is larger than"));
        let t: DateTime<Utc> = "2026-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(month_of(t), "2026-12");
        assert_eq!(
            next_month_start(t),
            "2027-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let t: DateTime<Utc> = "2026-02-10T10:00:00Z".parse().unwrap();
        assert_eq!(
            next_month_start(t),
            "2026-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_lifetime("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_lifetime("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_lifetime(" 2s ").unwrap(), Duration::seconds(2));
        assert_eq!(parse_lifetime("3650d").unwrap(), Duration::days(3650));
        let err = |s: &str| parse_lifetime(s).unwrap_err().to_string();
        assert!(err("").contains("it is empty"));
        assert!(err("30").contains("unit is missing"));
        assert!(err("30w").contains("unknown unit `w`"));
        assert!(err("d").contains("number is missing"));
        assert!(err("-1d").contains("not a whole number"));
        assert!(err("1.5h").contains("not a whole number"));
        assert!(err("0s").contains("greater than zero"));
        assert!(err("3651d").contains("longer than 3650 days"));
        assert!(err("99999999999999999999s").contains("longer than 3650 days"));
        assert!(err("1 d").contains("not a whole number"));
        let now = Utc::now();
        assert!(is_expired(Some(now), now));
        assert!(!is_expired(Some(now + Duration::seconds(1)), now));
        assert!(!is_expired(None, now));
    }
}
