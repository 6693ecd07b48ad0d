//! Intrusion detection (spec 40-security §7, §9; DESIGN.md §3.3): signature matching on
//! the parts of a request that are *not* prompt content, and a per-IP cumulative score.
//!
//! # What is inspected
//!
//! [`RequestFacts`]: the method, the path (decoded up to three times, see
//! [`crate::normalize`]), the query string, the header values (except `Authorization`,
//! `Proxy-Authorization` and `Cookie`; headers with a fixed grammar such as `Accept`,
//! `Content-Type` or `Sec-*` only for Log4Shell/Shellshock; every other header —
//! `User-Agent`, `Referer`, forwarding and unknown headers — for every family in its
//! *header form*, percent-decoded when it has a `%` or non-ASCII bytes), and the
//! **non-content** JSON fields the caller
//! extracts with [`fields_from_json`]: `model`, identifiers such as `user`, parameters
//! that should be numbers (a string there is scanned), and tool/function *names*.
//!
//! The header forms are stricter than the path/query/field forms because URLs, `;`
//! and punctuation are normal in headers: a `..` only counts as a whole path segment,
//! a command after `;`/`|`/`&&` only with shell syntax after it (`; CAT S61` and
//! `; id;` occur in real Android User-Agents), and a URL only for a dangerous scheme or
//! a cloud-metadata host (`https://chat.example.com/?x=1` never matches).
//! `tests/detection.rs` holds the measured rates and a 240-set benign header bar.
//! `messages[].content`, `prompt`, `input`, `instructions`, `stop` and tool arguments
//! are never looked at: prompts legitimately contain SQL, shell and paths.
//!
//! # Signatures
//!
//! | pattern | points | fires on |
//! |---|---|---|
//! | `sql_injection` | 20 | *combinations*: quote + `or/and` + comparison (`' or 1=1`, `" or "a"="a`); `or/and N=N` tautologies; quote + comment (`admin'--`); `union [all] select`; `;` + SQL statement (`; drop table`, `; select … from`); blind/out-of-band functions (`sleep(`, `benchmark(`, `pg_sleep(`, `waitfor delay`, `extractvalue(`, `load_file(`, `into outfile`, `information_schema`, `@@version`, `xp_cmdshell`) |
//! | `path_traversal` | 20 | `../`, `..\`, trailing `/..`, `..;/` after decoding (catches `%2e%2e%2f`, `%252e`, `..%c0%af`, `%u002e`, full-width `．．／`); sensitive files (`/etc/passwd`, `/etc/shadow`, `/proc/self/`, `win.ini`, `boot.ini`, `c:/windows`, `web-inf/`, `id_rsa`, `.htpasswd`) |
//! | `xss` | 20 | `<script`, `</script`, `javascript:`, `vbscript:`, `data:text/html` / `data:image/svg+xml`, `<iframe`, `<svg`/`<img`/`<body` with handlers, `on<event>=` for common events, `document.cookie`, `fromcharcode(` |
//! | `command_injection` | 20 | `$(…)`, backticks around a command, `;`/`|`/`||`/`&&`/newline followed by a shell command (`cat`, `wget`, `curl`, `nc`, `bash`…) that has an argument or another operator after it (`dog|cat` is a filter value; bare probes such as `|id`, `;whoami` count alone), `& cmd -flag` (cmd.exe chaining), `${ifs}`, `/bin/sh`, `cmd.exe`, `powershell -` |
//! | `ssrf_scheme` | 20 | `file:/`, `gopher://`, `dict://`, `php://`, `phar://`, `expect://`, `tftp://`, `ldap://` (also with one slash, as in a collapsed path), `jar:`, `netdoc:`; cloud metadata `169.254.169.254` / `metadata.google.internal` anywhere, and as a URL host every spelling of it (`2852039166`, `0xa9fea9fe`, octal, `[::ffff:a9fe:a9fe]`) plus `169.254.170.2`, `fd00:ec2::254`, `100.100.100.200`, `metadata`, `instance-data` |
//! | `log4shell` | 50 | `${jndi:` and its obfuscations (`${lower:`, `${::-j}`, `${env:`…) |
//! | `shellshock` | 50 | a header value starting with `() {` |
//! | `null_byte` | 20 | NUL after decoding in the path, query or fields |
//! | `double_encoding` | 15 | a second decoding round produced `.`, `/`, `%`, `<`… (`%252e`) or overlong UTF-8 |
//! | `crlf_injection` | 20 | CR/LF in the decoded path; CR/LF + `header:` in the query |
//! | `suspicious_user_agent` | 10 | attack tools: `sqlmap`, `nikto`, `nmap`, `masscan`, `zgrab`, `nuclei`, `gobuster`, `dirbuster`, `wfuzz`, `ffuf`, `acunetix`, `nessus`, `openvas`, `w3af`, `wpscan`… (whole words) |
//! | `empty_user_agent` | 10, weak | no or blank User-Agent |
//! | `unusual_method` | 10 | `TRACE`, `TRACK`, `DEBUG`, `CONNECT`, WebDAV methods, lower-case or unknown methods; `OPTIONS` that is not a CORS preflight is *weak* |
//! | `honeypot_access` | 10 | [`HONEYPOT_ROUTES`] and other probe paths (see [`is_honeypot_path`]) |
//!
//! **Cost.** Signatures are anchored on trigger bytes (see `signatures`), so a request
//! made of plain identifiers costs one table look-up per byte. Measured (release build,
//! shared 2-core machine, `tests/perf.rs`): ≈ 1–2.5 µs for a typical SDK or browser
//! request, including path normalisation and header scanning (full header families
//! since the header gaps were closed: ≈ +15 % on a browser request).
//!
//! **Why combinations for SQL injection.** The spec's list (`'`, `;`, `--`, `/*`) fires
//! on benign traffic: `;` separates parameters in some clients and appears in every
//! `Content-Type` and browser User-Agent, `'` is an apostrophe, `--` appears in ids. A
//! character alone is not an attack; an attack needs a quote *and* a boolean/comment, or
//! a SQL keyword sequence. Each family also has a cheap byte prefilter, so benign text
//! usually costs one pass over its bytes.
//!
//! Weak signals count at most once per 10 minutes per IP (see [`crate::score`]).
//! 404 bursts are scored by [`crate::anomaly`], not here.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::normalize::{self, Decoded};
use crate::score::{Ladder, Points, ScoreBoard, Verdict};
use crate::Millis;

/// The honeypot routes of spec §9 (any method): the router answers them with
/// `404 not_found` and they add [`Pattern::HoneypotAccess`] points.
pub const HONEYPOT_ROUTES: &[&str] = &["/admin", "/api/v1/users", "/wp-admin", "/phpmyadmin"];

/// Header values longer than this are only scanned up to here.
const MAX_HEADER_SCAN: usize = 8 * 1024;
/// Headers examined at most.
const MAX_HEADERS: usize = 64;
/// JSON fields examined at most.
const MAX_FIELDS: usize = 256;

/// What the caller knows about a request, borrowed: building it costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The method as received (case-sensitive, `GET`).
    pub method: &'a str,
    /// The raw path, without the query string.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Header names (any case) and raw values.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Non-content JSON fields as `(name, value)`, e.g. from [`fields_from_json`].
    pub fields: &'a [(&'a str, &'a str)],
}

/// A signature family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Pattern {
    /// SQL injection.
    SqlInjection,
    /// Path traversal or a sensitive file.
    PathTraversal,
    /// Cross-site scripting.
    Xss,
    /// Shell command injection.
    CommandInjection,
    /// SSRF/LFI URL schemes and metadata endpoints.
    SsrfScheme,
    /// Log4j JNDI lookup.
    Log4Shell,
    /// Bash function-definition exploit in a header.
    Shellshock,
    /// NUL byte.
    NullByte,
    /// Double percent-encoding or overlong UTF-8.
    DoubleEncoding,
    /// CR/LF injection.
    CrlfInjection,
    /// Attack-tool User-Agent.
    SuspiciousUserAgent,
    /// Missing or blank User-Agent.
    EmptyUserAgent,
    /// Unusual HTTP method.
    UnusualMethod,
    /// Honeypot path.
    HoneypotAccess,
}

impl Pattern {
    /// The `pattern` name stored in `intrusion_attempts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::SqlInjection => "sql_injection",
            Pattern::PathTraversal => "path_traversal",
            Pattern::Xss => "xss",
            Pattern::CommandInjection => "command_injection",
            Pattern::SsrfScheme => "ssrf_scheme",
            Pattern::Log4Shell => "log4shell",
            Pattern::Shellshock => "shellshock",
            Pattern::NullByte => "null_byte",
            Pattern::DoubleEncoding => "double_encoding",
            Pattern::CrlfInjection => "crlf_injection",
            Pattern::SuspiciousUserAgent => "suspicious_user_agent",
            Pattern::EmptyUserAgent => "empty_user_agent",
            Pattern::UnusualMethod => "unusual_method",
            Pattern::HoneypotAccess => "honeypot_access",
        }
    }

    /// Default points (see the table in the module docs).
    pub fn points(self) -> u32 {
        match self {
            Pattern::Log4Shell | Pattern::Shellshock => 50,
            Pattern::DoubleEncoding => 15,
            Pattern::SuspiciousUserAgent
            | Pattern::EmptyUserAgent
            | Pattern::UnusualMethod
            | Pattern::HoneypotAccess => 10,
            _ => 20,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Location {
    /// The method.
    Method,
    /// The path.
    Path,
    /// The query string.
    Query,
    /// A header value (lower-case name).
    Header(String),
    /// A JSON field.
    Field(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Method => f.write_str("method"),
            Location::Path => f.write_str("path"),
            Location::Query => f.write_str("query"),
            Location::Header(n) => write!(f, "header:{n}"),
            Location::Field(n) => write!(f, "field:{n}"),
        }
    }
}

/// One signature hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The family.
    pub pattern: Pattern,
    /// Points it adds.
    pub score: u32,
    /// Where.
    pub location: Location,
    /// Which signature of the family (stable, for audit details).
    pub detail: &'static str,
    /// A weak signal (counted at most once per 10 minutes per IP).
    pub weak: bool,
}

impl Finding {
    fn new(pattern: Pattern, location: Location, detail: &'static str) -> Self {
        Self {
            pattern,
            score: pattern.points(),
            location,
            detail,
            weak: false,
        }
    }

    fn weak(mut self) -> Self {
        self.weak = true;
        self
    }

    /// The contribution of this finding to a score.
    pub fn points(&self) -> Points {
        Points {
            pattern: self.pattern.as_str(),
            points: self.score,
            weak: self.weak,
        }
    }
}

/// Sum of the points of `findings` (weak ones included).
pub fn total_score(findings: &[Finding]) -> u32 {
    findings.iter().fold(0u32, |a, f| a.saturating_add(f.score))
}

/// Where a finding is made, borrowed until a finding actually needs it (a clean request
/// allocates nothing).
#[derive(Clone, Copy)]
enum Loc<'a> {
    Method,
    Path,
    Query,
    Header(&'a str),
    Field(&'a str),
}

impl Loc<'_> {
    fn owned(self) -> Location {
        match self {
            Loc::Method => Location::Method,
            Loc::Path => Location::Path,
            Loc::Query => Location::Query,
            Loc::Header(n) => Location::Header(n.to_ascii_lowercase()),
            Loc::Field(n) => Location::Field(n.to_owned()),
        }
    }
}

/// Inspects a request; returns the findings, at most one per (pattern, location).
///
/// Pure. Allocates only a lower-case copy of scanned text that has upper-case letters
/// and the findings themselves (an empty `Vec` does not allocate). Cost grows with the
/// number of "trigger" bytes in the request, not with the number of signatures; see the
/// module docs.
///
/// The proxy can split the work in two: `inspect` with empty `fields` as soon as the
/// head is parsed (so an attack is scored before the body is read), then
/// [`inspect_fields`] once the JSON body is parsed.
pub fn inspect(facts: &RequestFacts<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    inspect_method(facts, &mut out);
    inspect_path(facts.path, &mut out);
    if let Some(q) = facts.query.filter(|q| !q.is_empty()) {
        let d = normalize::decode(q.as_bytes(), true);
        decoded_flags(&d, Loc::Query, true, &mut out);
        scan(&d.text, signatures::ALL, Loc::Query, &mut out);
    }
    inspect_headers(facts.headers, &mut out);
    scan_fields(facts.fields, &mut out);
    out
}

/// Inspects only non-content JSON fields (see [`fields_from_json`]); the second half of
/// a split inspection.
pub fn inspect_fields(fields: &[(&str, &str)]) -> Vec<Finding> {
    let mut out = Vec::new();
    scan_fields(fields, &mut out);
    out
}

fn scan_fields(fields: &[(&str, &str)], out: &mut Vec<Finding>) {
    for (name, value) in fields.iter().take(MAX_FIELDS) {
        let loc = Loc::Field(name);
        if value.contains('%') || !value.is_ascii() {
            let d = normalize::decode(value.as_bytes(), false);
            if d.nul {
                push(out, Pattern::NullByte, loc, "nul");
            }
            scan(&d.text, signatures::ALL, loc, out);
        } else {
            scan(value, signatures::ALL, loc, out);
        }
    }
}

/// Findings kept per request at most: bounds the dedup scan on hostile input.
const MAX_FINDINGS: usize = 64;

fn push(out: &mut Vec<Finding>, pattern: Pattern, loc: Loc<'_>, detail: &'static str) {
    push_finding(out, Finding::new(pattern, loc.owned(), detail));
}

fn push_finding(out: &mut Vec<Finding>, f: Finding) {
    if out.len() < MAX_FINDINGS
        && !out
            .iter()
            .any(|o| o.pattern == f.pattern && o.location == f.location)
    {
        out.push(f);
    }
}

/// Classifies `text`, lower-cases it only if it has upper-case letters, and runs the
/// families that its trigger bytes allow.
fn scan(text: &str, fam: signatures::Families, loc: Loc<'_>, out: &mut Vec<Finding>) {
    let m = signatures::classify(text.as_bytes());
    if m & !signatures::C_UPPER == 0 {
        return;
    }
    let lower: Cow<'_, str> = if m & signatures::C_UPPER != 0 {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    };
    signatures::scan_text(&lower, m & !signatures::C_UPPER, fam, &mut |p, d| {
        push(out, p, loc, d)
    });
}

fn inspect_method(facts: &RequestFacts<'_>, out: &mut Vec<Finding>) {
    let m = facts.method;
    let detail = match m {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" => return,
        "OPTIONS" => {
            let preflight = header(facts.headers, "origin").is_some()
                && header(facts.headers, "access-control-request-method").is_some();
            if !preflight {
                push_finding(
                    out,
                    Finding::new(
                        Pattern::UnusualMethod,
                        Location::Method,
                        "options_not_preflight",
                    )
                    .weak(),
                );
            }
            return;
        }
        "TRACE" | "TRACK" => "trace",
        "DEBUG" => "debug",
        "CONNECT" => "connect",
        "PROPFIND" | "PROPPATCH" | "MKCOL" | "COPY" | "MOVE" | "LOCK" | "UNLOCK" | "SEARCH" => {
            "webdav"
        }
        _ if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => "unknown",
        _ => "malformed",
    };
    push(out, Pattern::UnusualMethod, Loc::Method, detail);
}

fn inspect_path(raw: &str, out: &mut Vec<Finding>) {
    if normalize::is_plain_path(raw) {
        // Fast path: every real route. Only honeypots and sensitive names can match.
        if is_plain_honeypot(raw) {
            push(out, Pattern::HoneypotAccess, Loc::Path, "honeypot");
        }
        let m = signatures::classify(raw.as_bytes());
        let lower: Cow<'_, str> = if m & signatures::C_UPPER != 0 {
            Cow::Owned(raw.to_ascii_lowercase())
        } else {
            Cow::Borrowed(raw)
        };
        if let Some(d) = signatures::sensitive_file(&lower, m) {
            push(out, Pattern::PathTraversal, Loc::Path, d);
        }
        return;
    }
    let n = normalize::normalize_path(raw);
    if is_honeypot_canonical(&n.canonical) {
        push(out, Pattern::HoneypotAccess, Loc::Path, "honeypot");
    }
    decoded_flags(&n.decoded, Loc::Path, false, out);
    scan(&n.decoded.text, signatures::ALL, Loc::Path, out);
}

fn decoded_flags(d: &Decoded, loc: Loc<'_>, is_query: bool, out: &mut Vec<Finding>) {
    if d.double_encoded {
        push(out, Pattern::DoubleEncoding, loc, "double_percent");
    }
    if d.overlong {
        push(out, Pattern::DoubleEncoding, loc, "overlong_utf8");
        push(out, Pattern::PathTraversal, loc, "overlong_utf8");
    }
    if d.nul {
        push(out, Pattern::NullByte, loc, "nul");
    }
    if d.crlf && (!is_query || crlf_header_injection(&d.text)) {
        push(out, Pattern::CrlfInjection, loc, "crlf");
    }
}

/// `\r` or `\n` followed by something shaped like a header (`name:`).
fn crlf_header_injection(s: &str) -> bool {
    s.split(['\r', '\n']).skip(1).any(|line| {
        let line = line.trim_start();
        match line.split_once(':') {
            Some((name, _)) => {
                !name.is_empty()
                    && name.len() <= 40
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
            None => false,
        }
    })
}

fn header<'a>(headers: &'a [(&'a str, &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn inspect_headers(headers: &[(&str, &[u8])], out: &mut Vec<Finding>) {
    let ua_loc = Loc::Header("user-agent");
    match header(headers, "user-agent") {
        None => push_finding(
            out,
            Finding::new(Pattern::EmptyUserAgent, ua_loc.owned(), "missing").weak(),
        ),
        Some(v) if v.iter().all(u8::is_ascii_whitespace) => push_finding(
            out,
            Finding::new(Pattern::EmptyUserAgent, ua_loc.owned(), "blank").weak(),
        ),
        Some(v) => {
            if let Some(tool) = scanner_tool(v) {
                push(out, Pattern::SuspiciousUserAgent, ua_loc, tool);
            }
        }
    }
    for (name, value) in headers.iter().take(MAX_HEADERS) {
        if name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("cookie")
        {
            continue;
        }
        let value = value.get(..MAX_HEADER_SCAN).unwrap_or(value);
        let loc = Loc::Header(name);
        let trimmed = value.trim_ascii_start();
        if trimmed.starts_with(b"() {") || trimmed.starts_with(b"(){") {
            push(out, Pattern::Shellshock, loc, "function_definition");
        }
        let fam = if is_structured_header(name) {
            signatures::LOOKUPS_ONLY
        } else {
            signatures::HEADER
        };
        if fam.strict && needs_decoding(value) {
            // Percent-encoded (`%3Cscript`, `%252e%252e%252f`) or raw non-ASCII bytes
            // (overlong `C0 AF`): decode like a query string, without `+` as space
            // (User-Agents carry `+http://…`). Plain ASCII values, the common case,
            // are scanned as they are.
            let d = normalize::decode(value, false);
            if d.overlong {
                push(out, Pattern::PathTraversal, loc, "overlong_utf8");
            }
            scan(&d.text, fam, loc, out);
            continue;
        }
        match std::str::from_utf8(value) {
            Ok(text) => scan(text, fam, loc, out),
            Err(_) => scan(&String::from_utf8_lossy(value), fam, loc, out),
        }
    }
}

/// Whether a header value needs [`normalize::decode`] before scanning: it has a `%` or
/// a non-ASCII byte.
fn needs_decoding(value: &[u8]) -> bool {
    value.iter().any(|&b| b == b'%' || b >= 0x80)
}

/// Request headers whose values have a fixed grammar that only the HTTP stack parses
/// (`Accept: text/html;q=0.9`, `Sec-CH-UA: "Chromium";v="124"`). Scanning them for SQL
/// or XSS costs time on every request and finds nothing an attacker does not also send
/// in the query, path or User-Agent; they are checked for Log4Shell and Shellshock only.
/// `User-Agent`, `Referer`, forwarding headers and every unknown header get the full
/// header scan.
fn is_structured_header(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "host",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-type",
        "content-length",
        "content-encoding",
        "connection",
        "keep-alive",
        "cache-control",
        "pragma",
        "te",
        "upgrade-insecure-requests",
        "dnt",
        "priority",
        "if-none-match",
        "if-modified-since",
        "origin",
        "traceparent",
        "tracestate",
    ];
    const PREFIXES: &[&str] = &["sec-", "x-stainless-", "access-control-request-"];
    EXACT.iter().any(|h| name.eq_ignore_ascii_case(h))
        || PREFIXES.iter().any(|p| {
            name.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        })
}

/// Attack tools that announce themselves in the User-Agent; matched as whole words.
const SCANNER_TOOLS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "gobuster",
    "dirbuster",
    "dirb",
    "wfuzz",
    "ffuf",
    "feroxbuster",
    "acunetix",
    "nessus",
    "openvas",
    "w3af",
    "havij",
    "hydra",
    "netsparker",
    "wpscan",
    "whatweb",
    "zmeu",
    "jorgee",
    "commix",
    "arachni",
    "skipfish",
    "fimap",
    "xsstrike",
    "l9explore",
    "morfeus",
];

fn scanner_tool(ua: &[u8]) -> Option<&'static str> {
    ua.split(|b| !b.is_ascii_alphanumeric())
        .filter(|w| (3..=12).contains(&w.len()))
        .find_map(|w| {
            SCANNER_TOOLS
                .iter()
                .find(|t| t.as_bytes().eq_ignore_ascii_case(w))
                .copied()
        })
}

// === honeypots ===

/// Probe paths beyond the spec's four routes: dot-files, CMS and admin panels,
/// script extensions FLM never serves. `/.well-known/` is deliberately absent (ACME).
const HONEYPOT_PREFIXES: &[&str] = &[
    "/admin",
    "/api/v1/users",
    "/wp-admin",
    "/phpmyadmin",
    "/wp-login.php",
    "/wp-content",
    "/wp-includes",
    "/xmlrpc.php",
    "/server-status",
    "/actuator",
    "/cgi-bin",
    "/vendor/phpunit",
    "/boaform",
    "/manager/html",
    "/hnap1",
    "/owa",
    "/pma",
    "/mysql",
    "/myadmin",
    "/administrator",
];
const HONEYPOT_SEGMENTS: &[&str] = &[
    ".env",
    ".git",
    ".svn",
    ".hg",
    ".aws",
    ".ssh",
    ".htaccess",
    ".htpasswd",
    ".ds_store",
    ".docker",
    ".kube",
    ".npmrc",
    ".bash_history",
];
const PROBE_EXTENSIONS: &[&str] = &[".php", ".asp", ".aspx", ".jsp", ".cgi", ".do", ".action"];

/// Whether a raw request path is a honeypot or a well-known probe path. The path is
/// decoded and canonicalised first, so `/%61dmin`, `//ADMIN/` and `/admin;x` match.
/// Only for the public listener: the daemon's own admin API lives under `/admin/` on a
/// separate loopback listener and must not be inspected with this.
pub fn is_honeypot_path(raw: &str) -> bool {
    if normalize::is_plain_path(raw) {
        return is_plain_honeypot(raw);
    }
    is_honeypot_canonical(&normalize::normalize_path(raw).canonical)
}

/// [`is_honeypot_path`] for a path that passed [`normalize::is_plain_path`]: its
/// canonical form is the path lower-cased without a trailing slash.
fn is_plain_honeypot(raw: &str) -> bool {
    let trimmed = raw.trim_end_matches('/');
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        is_honeypot_canonical(&trimmed.to_ascii_lowercase())
    } else {
        is_honeypot_canonical(trimmed)
    }
}

fn is_honeypot_canonical(p: &str) -> bool {
    let prefix_hit = HONEYPOT_PREFIXES.iter().any(|h| {
        p.strip_prefix(h)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('.'))
    });
    if prefix_hit {
        return true;
    }
    p.split('/').any(|seg| {
        HONEYPOT_SEGMENTS
            .iter()
            .any(|h| seg == *h || seg.strip_prefix(h).is_some_and(|r| r.starts_with('.')))
            || PROBE_EXTENSIONS
                .iter()
                .any(|e| seg.len() > e.len() && seg.ends_with(e))
    })
}

// === non-content JSON fields ===

/// Top-level fields that are identifiers or parameters, never prompt content.
const SCANNED_FIELDS: &[&str] = &[
    "model",
    "user",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "seed",
    "stream",
    "logprobs",
    "top_logprobs",
    "encoding_format",
    "dimensions",
    "size",
    "quality",
    "style",
    "voice",
    "language",
    "service_tier",
    "reasoning_effort",
    "response_format",
    "parallel_tool_calls",
];
/// Tool names scanned at most per request.
const MAX_TOOL_NAMES: usize = 128;

/// Extracts the non-content fields of an OpenAI-style request body for [`inspect`]:
/// the fields of `SCANNED_FIELDS` that are strings (numbers and booleans cannot carry a
/// payload and are skipped), `response_format.type`, and tool / function names
/// (`tools[].function.name`, `tools[].name`, `functions[].name`,
/// `tool_choice.function.name`). Message content, `prompt`, `input`, `instructions`,
/// `stop`, `metadata` and tool arguments are never returned.
pub fn fields_from_json(body: &serde_json::Value) -> Vec<(String, String)> {
    use serde_json::Value;
    let mut out = Vec::new();
    let Some(obj) = body.as_object() else {
        return out;
    };
    for name in SCANNED_FIELDS {
        match obj.get(*name) {
            Some(Value::String(s)) => out.push(((*name).to_owned(), s.clone())),
            Some(Value::Object(o)) if *name == "response_format" => {
                if let Some(Value::String(t)) = o.get("type") {
                    out.push(("response_format.type".to_owned(), t.clone()));
                }
            }
            _ => {}
        }
    }
    let mut names = 0usize;
    let mut push_name = |field: &str, v: Option<&Value>, out: &mut Vec<(String, String)>| {
        if let Some(Value::String(s)) = v {
            if names < MAX_TOOL_NAMES {
                names += 1;
                out.push((field.to_owned(), s.clone()));
            }
        }
    };
    if let Some(Value::Array(tools)) = obj.get("tools") {
        for t in tools.iter().take(MAX_TOOL_NAMES) {
            push_name("tools[].name", t.get("name"), &mut out);
            push_name(
                "tools[].function.name",
                t.get("function").and_then(|f| f.get("name")),
                &mut out,
            );
        }
    }
    if let Some(Value::Array(fns)) = obj.get("functions") {
        for f in fns.iter().take(MAX_TOOL_NAMES) {
            push_name("functions[].name", f.get("name"), &mut out);
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        push_name(
            "tool_choice.function.name",
            tc.get("function").and_then(|f| f.get("name")),
            &mut out,
        );
    }
    out
}

// === per-IP scoring ===

/// Intrusion thresholds (policy `intrusion_detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IntrusionConfig {
    /// Warning threshold (default 50).
    pub warning_threshold: u32,
    /// Block threshold (default 100); twice this blocks for 24 h.
    pub score_threshold: u32,
}

impl Default for IntrusionConfig {
    fn default() -> Self {
        Self {
            warning_threshold: 50,
            score_threshold: 100,
        }
    }
}

impl IntrusionConfig {
    /// The score ladder: warn, 1 h block at `score_threshold`, 24 h at twice that.
    pub fn ladder(&self) -> Ladder {
        Ladder::new(self.warning_threshold, self.score_threshold)
    }
}

/// Per-IP intrusion scores.
#[derive(Debug, Clone)]
pub struct IntrusionDetector {
    board: ScoreBoard,
}

// === impl IntrusionDetector ===

impl IntrusionDetector {
    /// A detector with the given thresholds.
    pub fn new(config: IntrusionConfig) -> Self {
        Self {
            board: ScoreBoard::new(config.ladder()),
        }
    }

    /// Adds the findings of one request to the IP's score. Call only when
    /// `findings` is non-empty (a clean request needs no lock on the detector).
    pub fn observe(&mut self, ip: IpAddr, findings: &[Finding], now: Millis) -> Verdict {
        let points: Vec<Points> = findings.iter().map(Finding::points).collect();
        self.board.add(ip, &points, now)
    }

    /// The decayed score of `ip` (for rate-limit tightening).
    pub fn score(&self, ip: IpAddr, now: Millis) -> u32 {
        self.board.score(ip, now)
    }

    /// Applies new thresholds (policy reload).
    pub fn set_config(&mut self, config: IntrusionConfig) {
        self.board.set_ladder(config.ladder());
    }

    /// Forgets `ip` (manual unblock).
    pub fn reset(&mut self, ip: IpAddr) {
        self.board.reset(ip);
    }

    /// Drops decayed entries.
    pub fn sweep(&mut self, now: Millis) {
        self.board.sweep(now);
    }

    /// Tracked IPs.
    pub fn len(&self) -> usize {
        self.board.len()
    }

    /// Whether no IP is tracked.
    pub fn is_empty(&self) -> bool {
        self.board.is_empty()
    }
}

mod signatures;

#[cfg(test)]
mod tests;
