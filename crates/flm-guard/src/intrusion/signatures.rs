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
}

/// Path, query and JSON fields.
pub(super) const ALL: Families = Families {
    sqli: true,
    traversal: true,
    xss: true,
    cmdi: true,
    cmdi_full: true,
    ssrf: true,
};

/// Header values: no traversal or SSRF (URLs and paths are normal in `Referer`), and
/// only the strong command-injection forms (`;` is everywhere in headers).
pub(super) const HEADER: Families = Families {
    sqli: true,
    traversal: false,
    xss: true,
    cmdi: true,
    cmdi_full: false,
    ssrf: false,
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
        if let Some(d) = traversal(s, m).or_else(|| sensitive_file(s, m)) {
            hit(Pattern::PathTraversal, d);
        }
    }
    if fam.xss {
        if let Some(d) = xss(s, m) {
            hit(Pattern::Xss, d);
        }
    }
    if fam.cmdi {
        if let Some(d) = command_injection(s, m, fam.cmdi_full) {
            hit(Pattern::CommandInjection, d);
        }
    }
    if fam.ssrf {
        if let Some(d) = ssrf(s, m) {
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
fn anchors(s: &str, c: char) -> impl Iterator<Item = usize> + '_ {
    s.match_indices(c).map(|(i, _)| i)
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

fn traversal(s: &str, m: u32) -> Option<&'static str> {
    if m & C_DOT == 0 || !s.contains("..") {
        return None;
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

/// Well-known sensitive files, anchored on `/`, `\`, `.` and `_`.
pub(super) fn sensitive_file(s: &str, m: u32) -> Option<&'static str> {
    if m & (C_SLASH | C_BSLASH) != 0 {
        for sep in ['/', '\\'] {
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
    if m & C_DOT != 0 {
        for i in anchors(s, '.') {
            let rest = from(s, i);
            if rest.starts_with(".ini") && (ends_before(s, i, "win") || ends_before(s, i, "boot")) {
                return Some("win_ini");
            }
            if rest.starts_with(".htpasswd") {
                return Some("htpasswd");
            }
        }
    }
    if m & C_UNDERSCORE != 0 {
        for i in anchors(s, '_') {
            if from(s, i).starts_with("_rsa") && ends_before(s, i, "id") {
                return Some("ssh_key");
            }
        }
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
            if matches!(word_before(s, i, false), "javascript" | "vbscript") {
                return Some("script_url");
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

fn command_injection(s: &str, m: u32, full: bool) -> Option<&'static str> {
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
    for (i, c) in s.match_indices([';', '|', '\n', '\r', '&']) {
        let rest = match c {
            "&" if b.get(i + 1) == Some(&b'&') => s.get(i + 2..).unwrap_or(""),
            "&" => continue,
            _ => s.get(i + 1..).unwrap_or(""),
        };
        let rest = rest.strip_prefix('|').unwrap_or(rest);
        if separator_command(rest) {
            return Some("separator_command");
        }
    }
    None
}

// === SSRF / LFI ===

fn ssrf(s: &str, m: u32) -> Option<&'static str> {
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
            let detail = match word_before(s, i, false) {
                "file" if rest.starts_with(":/") => "file_scheme",
                "gopher" if rest.starts_with("://") => "gopher_scheme",
                "dict" if rest.starts_with("://") => "dict_scheme",
                "php" | "phar" | "expect" | "zip" if rest.starts_with("://") => "php_wrapper",
                "tftp" if rest.starts_with("://") => "tftp_scheme",
                "ldap" if rest.starts_with("://") => "ldap_scheme",
                "jar" => "jar_scheme",
                "netdoc" => "netdoc_scheme",
                _ => continue,
            };
            return Some(detail);
        }
    }
    if m & C_DOT != 0 {
        for i in anchors(s, '.') {
            let rest = from(s, i);
            if (rest.starts_with(".254.169.254") && ends_before(s, i, "169"))
                || (rest.starts_with(".google.internal") && ends_before(s, i, "metadata"))
            {
                return Some("cloud_metadata");
            }
        }
    }
    None
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
        ];
        for s in &inputs {
            let start = std::time::Instant::now();
            let _ = hits(s, ALL);
            assert!(start.elapsed().as_millis() < 2_000, "{}", &s[..10]);
        }
    }

    #[test]
    fn header_family_skips_paths_and_urls() {
        assert!(hits("https://example.com/a/../b?x=file:///etc/passwd", HEADER).is_empty());
        assert!(!hits("https://example.com/a/../b?x=file:///etc/passwd", ALL).is_empty());
    }
}
