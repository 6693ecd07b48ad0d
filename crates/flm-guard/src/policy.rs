//! The security policy document (spec 40-security §3): parsing with per-field
//! validation, defaults, normalised serialisation, and the effective settings for an
//! exposure profile (§11).
//!
//! Parsing is two-phase in spirit (style guide §4): the raw JSON is walked by hand
//! rather than through `serde(deny_unknown_fields)` structs, because the spec needs
//! *every* problem reported with its field path (`rate_limit.rpm`,
//! `ip_whitelist[2]`), not just the first, and because root keys must stay open for
//! forward compatibility while `rate_limit` must be closed.
//!
//! Validation rules beyond the spec's schema, each to stop a silent misconfiguration:
//! unknown keys are rejected inside every section FLM owns except `cors` (a typo such as
//! `max_failure` would otherwise leave the default in force without a word); numbers
//! must be integers within sane ranges (percentages 1–100, block length up to a year);
//! `warning_threshold` must be below `score_threshold`; `permanent_block_threshold` is
//! 0 (never) or at least `max_failures`. CORS origins may also name `localhost` or an
//! IP literal (dev servers, `tauri://localhost`), which the spec's "valid domain" rule
//! would refuse.
//!
//! `enabled` is tri-state: absent means "the profile decides" ([`SecurityPolicy::effective`]
//! turns abuse protections on for exposed binds and off for loopback ones); an explicit
//! `true`/`false` always wins. The normalised form therefore writes `enabled` only when
//! it was given.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::anomaly::AnomalyConfig;
use crate::blocklist::BlocklistConfig;
use crate::intrusion::IntrusionConfig;
use crate::net::{AllowList, IpNet};
use crate::ratelimit::Limit;
use crate::resource::ResourceThresholds;

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    /// Path of the offending field (`rate_limit.rpm`, `ip_whitelist[2]`, `$` for the
    /// document itself).
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

/// Every problem found in a policy document (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// The problems.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid security policy: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// `cors`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CorsPolicy {
    /// Allowed origins; empty means `*`. Normalised: lower-case host, no trailing `/`.
    pub allowed_origins: Vec<String>,
    /// `Access-Control-Allow-Methods` (upper-cased).
    pub allowed_methods: Option<Vec<String>>,
    /// `Access-Control-Allow-Headers`.
    pub allowed_headers: Option<Vec<String>>,
    /// Other keys, kept as they were.
    pub extra: Map<String, Value>,
}

/// `rate_limit`: the per-API-key limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRateLimit {
    /// Requests per minute (> 0).
    pub rpm: u32,
    /// Burst (defaults to `rpm`).
    pub burst: u32,
}

/// `ip_rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRateLimitPolicy {
    /// Explicit switch; `None` = profile default.
    pub enabled: Option<bool>,
    /// Requests per minute (default 1000; 0 disables).
    pub rpm: u32,
    /// Burst, clamped to `rpm` (default `rpm`).
    pub burst: u32,
}

impl Default for IpRateLimitPolicy {
    fn default() -> Self {
        Self {
            enabled: None,
            rpm: 1000,
            burst: 1000,
        }
    }
}

/// `ip_blocklist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlocklistPolicy {
    /// Explicit switch; `None` = profile default.
    pub enabled: Option<bool>,
    /// Failures before the first block (5).
    pub max_failures: u32,
    /// Length of the first block (30).
    pub block_duration_minutes: u32,
    /// Failures before a permanent block (20; 0 = never).
    pub permanent_block_threshold: u32,
}

impl Default for BlocklistPolicy {
    fn default() -> Self {
        Self {
            enabled: None,
            max_failures: 5,
            block_duration_minutes: 30,
            permanent_block_threshold: 20,
        }
    }
}

/// `intrusion_detection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntrusionPolicy {
    /// Explicit switch; `None` = profile default.
    pub enabled: Option<bool>,
    /// Block threshold (100).
    pub score_threshold: u32,
    /// Warning threshold (50).
    pub warning_threshold: u32,
}

impl Default for IntrusionPolicy {
    fn default() -> Self {
        Self {
            enabled: None,
            score_threshold: 100,
            warning_threshold: 50,
        }
    }
}

/// `anomaly_detection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalyPolicy {
    /// Explicit switch; `None` = profile default.
    pub enabled: Option<bool>,
    /// Requests per second that count as a flood (100).
    pub request_rate_threshold: u32,
    /// Whether anomalies may block (true).
    pub auto_block: bool,
}

impl Default for AnomalyPolicy {
    fn default() -> Self {
        Self {
            enabled: None,
            request_rate_threshold: 100,
            auto_block: true,
        }
    }
}

/// `resource_protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePolicy {
    /// Explicit switch; `None` = profile default.
    pub enabled: Option<bool>,
    /// CPU percentage (90).
    pub cpu_threshold: u32,
    /// Memory percentage (90).
    pub memory_threshold: u32,
}

impl Default for ResourcePolicy {
    fn default() -> Self {
        Self {
            enabled: None,
            cpu_threshold: 90,
            memory_threshold: 90,
        }
    }
}

/// `media_fetch`: how the proxy fetches remote media (`image_url` parts with an
/// `http(s)` URL) on a client's behalf, and which addresses it may reach (see
/// [`crate::ssrf`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFetchPolicy {
    /// Fetch loopback, RFC 1918, CGNAT, link-local and unique-local addresses too
    /// (never cloud metadata addresses: list those in `allowed_cidrs` if you must).
    pub allow_private: bool,
    /// Networks the proxy may fetch from whatever their class.
    pub allowed_cidrs: Vec<IpNet>,
    /// Largest fetched image in bytes.
    pub max_image_bytes: u32,
    /// Largest sum of fetched image bytes in one request.
    pub max_total_bytes: u32,
    /// Most image parts in one request (inline and remote); 0 refuses images.
    pub max_images: u32,
    /// Time for all fetches of one request, in seconds.
    pub timeout_secs: u32,
    /// Most redirects followed per image; every hop is checked again.
    pub max_redirects: u32,
    /// Largest `input_audio` payload (decoded) in bytes.
    pub max_audio_bytes: u32,
}

impl Default for MediaFetchPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            allowed_cidrs: Vec::new(),
            max_image_bytes: 10 * 1024 * 1024,
            max_total_bytes: 20 * 1024 * 1024,
            max_images: 8,
            timeout_secs: 10,
            max_redirects: 3,
            max_audio_bytes: 25 * 1024 * 1024,
        }
    }
}

/// A validated security policy with defaults applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecurityPolicy {
    /// `ip_whitelist`; empty = everyone allowed.
    pub ip_whitelist: Vec<IpNet>,
    /// `cors`.
    pub cors: CorsPolicy,
    /// `rate_limit`; `None` = off (omitted, `{}` or `rpm: 0`).
    pub rate_limit: Option<KeyRateLimit>,
    /// `ip_rate_limit`.
    pub ip_rate_limit: IpRateLimitPolicy,
    /// `ip_blocklist`.
    pub ip_blocklist: BlocklistPolicy,
    /// `intrusion_detection`.
    pub intrusion_detection: IntrusionPolicy,
    /// `anomaly_detection`.
    pub anomaly_detection: AnomalyPolicy,
    /// `resource_protection`.
    pub resource_protection: ResourcePolicy,
    /// `acme_domain` (lower-case).
    pub acme_domain: Option<String>,
    /// `trusted_proxy_ips`.
    pub trusted_proxy_ips: Vec<IpNet>,
    /// `media_fetch`.
    pub media_fetch: MediaFetchPolicy,
    /// Unknown root keys, kept for forward compatibility.
    pub extra: Map<String, Value>,
}

/// The settings in force for one listener: `None` means the protection is off.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectivePolicy {
    /// IP allow list (both profiles).
    pub allow_list: AllowList,
    /// Proxies whose forwarding headers are believed (both profiles).
    pub trusted_proxies: Vec<IpNet>,
    /// Per-API-key limit (both profiles).
    pub key_rate_limit: Option<Limit>,
    /// Per-IP limit.
    pub ip_rate_limit: Option<Limit>,
    /// Automatic IP blocklist.
    pub blocklist: Option<BlocklistConfig>,
    /// Intrusion detection.
    pub intrusion: Option<IntrusionConfig>,
    /// Anomaly detection.
    pub anomaly: Option<AnomalyConfig>,
    /// Resource protection.
    pub resources: Option<ResourceThresholds>,
}

// === impl SecurityPolicy ===

impl SecurityPolicy {
    /// Parses and validates a policy document.
    pub fn from_json_str(s: &str) -> Result<Self, PolicyErrors> {
        Self::from_json_slice(s.as_bytes())
    }

    /// Parses and validates a policy document from bytes (invalid UTF-8 is an error).
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PolicyErrors> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            PolicyErrors(vec![PolicyError {
                field: "$".into(),
                message: format!("not valid JSON: {e}"),
            }])
        })?;
        Self::from_value(&value)
    }

    /// Validates a parsed document, collecting every problem.
    pub fn from_value(value: &Value) -> Result<Self, PolicyErrors> {
        let mut v = Validator::default();
        let Some(root) = value.as_object() else {
            v.err("$", "the policy must be a JSON object");
            return Err(PolicyErrors(v.errors));
        };
        let mut p = SecurityPolicy {
            ip_whitelist: v.ip_list(root.get("ip_whitelist"), "ip_whitelist"),
            cors: v.cors(root.get("cors")),
            rate_limit: v.rate_limit(root.get("rate_limit")),
            ip_rate_limit: v.ip_rate_limit(root.get("ip_rate_limit")),
            ip_blocklist: v.blocklist(root.get("ip_blocklist")),
            intrusion_detection: v.intrusion(root.get("intrusion_detection")),
            anomaly_detection: v.anomaly(root.get("anomaly_detection")),
            resource_protection: v.resource(root.get("resource_protection")),
            acme_domain: None,
            trusted_proxy_ips: v.ip_list(root.get("trusted_proxy_ips"), "trusted_proxy_ips"),
            media_fetch: v.media_fetch(root.get("media_fetch")),
            extra: Map::new(),
        };
        match root.get("acme_domain") {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) => {
                let d = d.to_ascii_lowercase();
                if is_valid_domain(&d) {
                    p.acme_domain = Some(d);
                } else {
                    v.err(
                        "acme_domain",
                        "must be a domain name (labels of 1-63 letters, digits or `-`, at least two labels, at most 253 characters)",
                    );
                }
            }
            Some(_) => v.err("acme_domain", "must be a string or null"),
        }
        for (k, val) in root {
            if !KNOWN_ROOT_KEYS.contains(&k.as_str()) {
                p.extra.insert(k.clone(), val.clone());
            }
        }
        if v.errors.is_empty() {
            Ok(p)
        } else {
            Err(PolicyErrors(v.errors))
        }
    }

    /// The normalised document: defaults filled in, CIDRs canonical, origins
    /// normalised, unknown root keys kept. Parsing it gives back an equal policy.
    pub fn to_value(&self) -> Value {
        let mut root = self.extra.clone();
        let ips =
            |l: &[IpNet]| Value::Array(l.iter().map(|n| Value::String(n.to_string())).collect());
        root.insert("ip_whitelist".into(), ips(&self.ip_whitelist));
        let mut cors = self.cors.extra.clone();
        cors.insert(
            "allowed_origins".into(),
            strings(&self.cors.allowed_origins),
        );
        if let Some(m) = &self.cors.allowed_methods {
            cors.insert("allowed_methods".into(), strings(m));
        }
        if let Some(h) = &self.cors.allowed_headers {
            cors.insert("allowed_headers".into(), strings(h));
        }
        root.insert("cors".into(), Value::Object(cors));
        let mut rl = Map::new();
        if let Some(r) = self.rate_limit {
            rl.insert("rpm".into(), r.rpm.into());
            rl.insert("burst".into(), r.burst.into());
        }
        root.insert("rate_limit".into(), Value::Object(rl));
        let section = |enabled: Option<bool>, fields: Vec<(&str, Value)>| {
            let mut m = Map::new();
            if let Some(e) = enabled {
                m.insert("enabled".into(), e.into());
            }
            for (k, val) in fields {
                m.insert(k.into(), val);
            }
            Value::Object(m)
        };
        let i = &self.ip_rate_limit;
        root.insert(
            "ip_rate_limit".into(),
            section(
                i.enabled,
                vec![("rpm", i.rpm.into()), ("burst", i.burst.into())],
            ),
        );
        let b = &self.ip_blocklist;
        root.insert(
            "ip_blocklist".into(),
            section(
                b.enabled,
                vec![
                    ("max_failures", b.max_failures.into()),
                    ("block_duration_minutes", b.block_duration_minutes.into()),
                    (
                        "permanent_block_threshold",
                        b.permanent_block_threshold.into(),
                    ),
                ],
            ),
        );
        let d = &self.intrusion_detection;
        root.insert(
            "intrusion_detection".into(),
            section(
                d.enabled,
                vec![
                    ("score_threshold", d.score_threshold.into()),
                    ("warning_threshold", d.warning_threshold.into()),
                ],
            ),
        );
        let a = &self.anomaly_detection;
        root.insert(
            "anomaly_detection".into(),
            section(
                a.enabled,
                vec![
                    ("request_rate_threshold", a.request_rate_threshold.into()),
                    ("auto_block", a.auto_block.into()),
                ],
            ),
        );
        let r = &self.resource_protection;
        root.insert(
            "resource_protection".into(),
            section(
                r.enabled,
                vec![
                    ("cpu_threshold", r.cpu_threshold.into()),
                    ("memory_threshold", r.memory_threshold.into()),
                ],
            ),
        );
        if let Some(dom) = &self.acme_domain {
            root.insert("acme_domain".into(), Value::String(dom.clone()));
        }
        root.insert("trusted_proxy_ips".into(), ips(&self.trusted_proxy_ips));
        // Written only when it differs from the defaults, so documents that never
        // mention it keep their normalised form.
        let m = &self.media_fetch;
        if m != &MediaFetchPolicy::default() {
            root.insert(
                "media_fetch".into(),
                section(
                    None,
                    vec![
                        ("allow_private", m.allow_private.into()),
                        ("allowed_cidrs", ips(&m.allowed_cidrs)),
                        ("max_image_bytes", m.max_image_bytes.into()),
                        ("max_total_bytes", m.max_total_bytes.into()),
                        ("max_images", m.max_images.into()),
                        ("timeout_secs", m.timeout_secs.into()),
                        ("max_redirects", m.max_redirects.into()),
                        ("max_audio_bytes", m.max_audio_bytes.into()),
                    ],
                ),
            );
        }
        Value::Object(root)
    }

    /// The normalised document as compact JSON text.
    pub fn to_json_string(&self) -> String {
        self.to_value().to_string()
    }

    /// The settings in force on a listener. `exposed` is true for a bind on a
    /// non-loopback address (`0.0.0.0`, `::`, a LAN address). On loopback binds the
    /// abuse protections (per-IP limit, blocklist, intrusion, anomaly, resources) are
    /// off unless their `enabled` is explicitly `true`; on exposed binds they are on
    /// unless explicitly `false`. Allow list, trusted proxies and the per-key limit
    /// apply in both profiles.
    pub fn effective(&self, exposed: bool) -> EffectivePolicy {
        let on = |e: Option<bool>| e.unwrap_or(exposed);
        let ip = &self.ip_rate_limit;
        let bl = &self.ip_blocklist;
        let id = &self.intrusion_detection;
        let an = &self.anomaly_detection;
        let rp = &self.resource_protection;
        let intrusion = IntrusionConfig {
            warning_threshold: id.warning_threshold,
            score_threshold: id.score_threshold,
        };
        EffectivePolicy {
            allow_list: AllowList::new(self.ip_whitelist.clone()),
            trusted_proxies: self.trusted_proxy_ips.clone(),
            key_rate_limit: self
                .rate_limit
                .filter(|r| r.rpm > 0)
                .map(|r| Limit::new(r.rpm, r.burst)),
            ip_rate_limit: (on(ip.enabled) && ip.rpm > 0)
                .then(|| Limit::new(ip.rpm, ip.burst.min(ip.rpm))),
            blocklist: on(bl.enabled).then(|| {
                BlocklistConfig::from_policy(
                    bl.max_failures,
                    bl.block_duration_minutes,
                    bl.permanent_block_threshold,
                )
            }),
            intrusion: on(id.enabled).then_some(intrusion),
            // Anomalies use the same ladder as intrusion (spec §8).
            anomaly: on(an.enabled).then(|| AnomalyConfig {
                request_rate_threshold: an.request_rate_threshold,
                auto_block: an.auto_block,
                warning_threshold: id.warning_threshold,
                block_threshold: id.score_threshold,
                ..AnomalyConfig::default()
            }),
            resources: on(rp.enabled).then(|| ResourceThresholds {
                cpu_pct: f64::from(rp.cpu_threshold),
                memory_pct: f64::from(rp.memory_threshold),
                ..ResourceThresholds::default()
            }),
        }
    }
}

impl FromStr for SecurityPolicy {
    type Err = PolicyErrors;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json_str(s)
    }
}

impl Serialize for SecurityPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

const KNOWN_ROOT_KEYS: &[&str] = &[
    "ip_whitelist",
    "cors",
    "rate_limit",
    "ip_rate_limit",
    "ip_blocklist",
    "intrusion_detection",
    "anomaly_detection",
    "resource_protection",
    "acme_domain",
    "trusted_proxy_ips",
    "media_fetch",
];

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// Upper bound for counts and rates: large enough for anything real, small enough that
/// arithmetic on it never overflows.
const MAX_COUNT: u64 = 1_000_000_000;

#[derive(Default)]
struct Validator {
    errors: Vec<PolicyError>,
}

impl Validator {
    fn err(&mut self, field: &str, message: &str) {
        self.errors.push(PolicyError {
            field: field.to_owned(),
            message: message.to_owned(),
        });
    }

    /// A section object: `None` (and no error) when absent or null.
    fn section<'a>(
        &mut self,
        v: Option<&'a Value>,
        name: &str,
        allowed: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                for k in m.keys() {
                    if !allowed.contains(&k.as_str()) {
                        self.err(
                            &format!("{name}.{k}"),
                            &format!("unknown key (allowed: {})", allowed.join(", ")),
                        );
                    }
                }
                Some(m)
            }
            Some(_) => {
                self.err(name, "must be an object");
                None
            }
        }
    }

    fn int(
        &mut self,
        m: &Map<String, Value>,
        section: &str,
        key: &str,
        default: u32,
        min: u64,
        max: u64,
    ) -> u32 {
        let field = format!("{section}.{key}");
        match m.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) if x < min => {
                    self.err(&field, &format!("must be at least {min}"));
                    default
                }
                Some(x) if x > max => {
                    self.err(&field, &format!("must be at most {max}"));
                    default
                }
                Some(x) => u32::try_from(x).unwrap_or(default),
                None if n.as_i64().is_some() => {
                    self.err(&field, &format!("must be at least {min}"));
                    default
                }
                None => {
                    self.err(&field, "must be an integer");
                    default
                }
            },
            Some(_) => {
                self.err(&field, "must be an integer");
                default
            }
        }
    }

    fn boolean(&mut self, m: &Map<String, Value>, section: &str, key: &str) -> Option<bool> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.err(&format!("{section}.{key}"), "must be true or false");
                None
            }
        }
    }

    /// An array of non-empty strings; `None` when absent/null. `check` validates each
    /// string and returns an error message; errors come out in array order.
    fn string_list<'a>(
        &mut self,
        v: Option<&'a Value>,
        field: &str,
        mut check: impl FnMut(&'a str) -> Result<(), String>,
    ) -> Option<Vec<&'a str>> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let problem = match item {
                        Value::String(s) if s.is_empty() => Some("must not be empty".to_owned()),
                        Value::String(s) => match check(s) {
                            Ok(()) => {
                                out.push(s.as_str());
                                None
                            }
                            Err(m) => Some(m),
                        },
                        _ => Some("must be a string".to_owned()),
                    };
                    if let Some(m) = problem {
                        self.err(&format!("{field}[{i}]"), &m);
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.err(field, "must be an array of strings");
                None
            }
        }
    }

    fn ip_list(&mut self, v: Option<&Value>, field: &str) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = Vec::new();
        let valid = self
            .string_list(v, field, |s| {
                s.parse::<IpNet>().map(drop).map_err(|e| e.to_string())
            })
            .unwrap_or_default();
        for n in valid.iter().filter_map(|s| s.parse::<IpNet>().ok()) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    fn media_fetch(&mut self, v: Option<&Value>) -> MediaFetchPolicy {
        let d = MediaFetchPolicy::default();
        let Some(m) = self.section(
            v,
            "media_fetch",
            &[
                "allow_private",
                "allowed_cidrs",
                "max_image_bytes",
                "max_total_bytes",
                "max_images",
                "timeout_secs",
                "max_redirects",
                "max_audio_bytes",
            ],
        ) else {
            return d;
        };
        const GIB: u64 = 1024 * 1024 * 1024;
        let s = "media_fetch";
        MediaFetchPolicy {
            allow_private: self
                .boolean(m, s, "allow_private")
                .unwrap_or(d.allow_private),
            allowed_cidrs: self.ip_list(m.get("allowed_cidrs"), "media_fetch.allowed_cidrs"),
            max_image_bytes: self.int(m, s, "max_image_bytes", d.max_image_bytes, 1024, GIB),
            max_total_bytes: self.int(m, s, "max_total_bytes", d.max_total_bytes, 1024, GIB),
            max_images: self.int(m, s, "max_images", d.max_images, 0, 256),
            timeout_secs: self.int(m, s, "timeout_secs", d.timeout_secs, 1, 600),
            max_redirects: self.int(m, s, "max_redirects", d.max_redirects, 0, 20),
            max_audio_bytes: self.int(m, s, "max_audio_bytes", d.max_audio_bytes, 1024, GIB),
        }
    }

    fn cors(&mut self, v: Option<&Value>) -> CorsPolicy {
        let mut c = CorsPolicy::default();
        let m = match v {
            None | Some(Value::Null) => return c,
            Some(Value::Object(m)) => m,
            Some(_) => {
                self.err("cors", "must be an object");
                return c;
            }
        };
        let origins = self.string_list(m.get("allowed_origins"), "cors.allowed_origins", |o| {
            normalize_origin(o).map(drop).ok_or_else(|| {
                "must be `*`, a host name or a URL such as `https://example.com` (no path)"
                    .to_owned()
            })
        });
        for n in origins
            .unwrap_or_default()
            .into_iter()
            .filter_map(normalize_origin)
        {
            if !c.allowed_origins.contains(&n) {
                c.allowed_origins.push(n);
            }
        }
        let methods = self.string_list(m.get("allowed_methods"), "cors.allowed_methods", |s| {
            if is_token(s) {
                Ok(())
            } else {
                Err("must be an HTTP method name".to_owned())
            }
        });
        c.allowed_methods = methods.map(|l| l.iter().map(|s| s.to_ascii_uppercase()).collect());
        let headers = self.string_list(m.get("allowed_headers"), "cors.allowed_headers", |s| {
            if is_token(s) || s == "*" {
                Ok(())
            } else {
                Err("must be an HTTP header name".to_owned())
            }
        });
        c.allowed_headers = headers.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
        for (k, val) in m {
            if !matches!(
                k.as_str(),
                "allowed_origins" | "allowed_methods" | "allowed_headers"
            ) {
                c.extra.insert(k.clone(), val.clone());
            }
        }
        c
    }

    fn rate_limit(&mut self, v: Option<&Value>) -> Option<KeyRateLimit> {
        let m = self.section(v, "rate_limit", &["rpm", "burst"])?;
        if m.is_empty() {
            return None;
        }
        if !m.contains_key("rpm") {
            self.err("rate_limit.rpm", "required when `rate_limit` is not empty");
        }
        let rpm = self.int(m, "rate_limit", "rpm", 0, 0, MAX_COUNT);
        let burst = self.int(m, "rate_limit", "burst", 0, 0, MAX_COUNT);
        (rpm > 0).then_some(KeyRateLimit {
            rpm,
            burst: if burst == 0 { rpm } else { burst },
        })
    }

    fn ip_rate_limit(&mut self, v: Option<&Value>) -> IpRateLimitPolicy {
        let d = IpRateLimitPolicy::default();
        let Some(m) = self.section(v, "ip_rate_limit", &["enabled", "rpm", "burst"]) else {
            return d;
        };
        let enabled = self.boolean(m, "ip_rate_limit", "enabled");
        let rpm = self.int(m, "ip_rate_limit", "rpm", d.rpm, 0, MAX_COUNT);
        let burst = self.int(m, "ip_rate_limit", "burst", 0, 0, MAX_COUNT);
        let burst = if burst == 0 { rpm } else { burst.min(rpm) };
        IpRateLimitPolicy {
            enabled,
            rpm,
            burst,
        }
    }

    fn blocklist(&mut self, v: Option<&Value>) -> BlocklistPolicy {
        let d = BlocklistPolicy::default();
        let Some(m) = self.section(
            v,
            "ip_blocklist",
            &[
                "enabled",
                "max_failures",
                "block_duration_minutes",
                "permanent_block_threshold",
            ],
        ) else {
            return d;
        };
        let s = "ip_blocklist";
        let enabled = self.boolean(m, s, "enabled");
        let max_failures = self.int(m, s, "max_failures", d.max_failures, 1, MAX_COUNT);
        let block_duration_minutes = self.int(
            m,
            s,
            "block_duration_minutes",
            d.block_duration_minutes,
            1,
            366 * 24 * 60,
        );
        let permanent_block_threshold = self.int(
            m,
            s,
            "permanent_block_threshold",
            d.permanent_block_threshold,
            0,
            MAX_COUNT,
        );
        if permanent_block_threshold != 0 && permanent_block_threshold < max_failures {
            self.err(
                "ip_blocklist.permanent_block_threshold",
                "must be 0 (never) or at least `max_failures`",
            );
        }
        BlocklistPolicy {
            enabled,
            max_failures,
            block_duration_minutes,
            permanent_block_threshold,
        }
    }

    fn intrusion(&mut self, v: Option<&Value>) -> IntrusionPolicy {
        let d = IntrusionPolicy::default();
        let Some(m) = self.section(
            v,
            "intrusion_detection",
            &["enabled", "score_threshold", "warning_threshold"],
        ) else {
            return d;
        };
        let s = "intrusion_detection";
        let enabled = self.boolean(m, s, "enabled");
        let score_threshold = self.int(m, s, "score_threshold", d.score_threshold, 1, MAX_COUNT);
        let warning_threshold =
            self.int(m, s, "warning_threshold", d.warning_threshold, 1, MAX_COUNT);
        if warning_threshold >= score_threshold {
            self.err(
                "intrusion_detection.warning_threshold",
                "must be below `score_threshold`",
            );
        }
        IntrusionPolicy {
            enabled,
            score_threshold,
            warning_threshold,
        }
    }

    fn anomaly(&mut self, v: Option<&Value>) -> AnomalyPolicy {
        let d = AnomalyPolicy::default();
        let Some(m) = self.section(
            v,
            "anomaly_detection",
            &["enabled", "request_rate_threshold", "auto_block"],
        ) else {
            return d;
        };
        let s = "anomaly_detection";
        AnomalyPolicy {
            enabled: self.boolean(m, s, "enabled"),
            request_rate_threshold: self.int(
                m,
                s,
                "request_rate_threshold",
                d.request_rate_threshold,
                1,
                MAX_COUNT,
            ),
            auto_block: self.boolean(m, s, "auto_block").unwrap_or(d.auto_block),
        }
    }

    fn resource(&mut self, v: Option<&Value>) -> ResourcePolicy {
        let d = ResourcePolicy::default();
        let Some(m) = self.section(
            v,
            "resource_protection",
            &["enabled", "cpu_threshold", "memory_threshold"],
        ) else {
            return d;
        };
        let s = "resource_protection";
        ResourcePolicy {
            enabled: self.boolean(m, s, "enabled"),
            cpu_threshold: self.int(m, s, "cpu_threshold", d.cpu_threshold, 1, 100),
            memory_threshold: self.int(m, s, "memory_threshold", d.memory_threshold, 1, 100),
        }
    }
}

/// An HTTP token (RFC 9110 `tchar`s).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A domain name: labels of 1–63 `[a-z0-9-]` not starting or ending with `-`, at least
/// two labels, at most 253 characters, a top-level label that is not all digits.
pub fn is_valid_domain(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|t| !t.bytes().all(|b| b.is_ascii_digit()))
}

/// A host for a CORS origin: a domain, `localhost`, an IPv4 address or a bracketed
/// IPv6 address; optionally `:port`.
fn is_valid_origin_host(hostport: &str) -> bool {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return false;
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            a => match a.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return false;
        }
    }
    if host.is_empty() {
        // Bracketed IPv6 with a port, already checked.
        return hostport.starts_with('[');
    }
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok() || is_valid_domain(host)
}

/// Validates and normalises a CORS origin entry; `None` when invalid.
fn normalize_origin(o: &str) -> Option<String> {
    if o == "*" {
        return Some(o.to_owned());
    }
    let lower = o.to_ascii_lowercase();
    match lower.split_once("://") {
        Some((scheme, rest)) => {
            let scheme_ok = scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            let host = rest.strip_suffix('/').unwrap_or(rest);
            (scheme_ok && is_valid_origin_host(host)).then(|| format!("{scheme}://{host}"))
        }
        None => is_valid_origin_host(&lower).then_some(lower),
    }
}

#[cfg(test)]
mod tests;
