//! Decoding and normalisation of request text before signature matching.
//!
//! Attackers hide payloads behind encodings that a naive `contains("../")` misses:
//! percent-encoding (`%2e%2e%2f`), double encoding (`%252e`), IIS `%u002e`, overlong
//! UTF-8 (`%c0%af` for `/`), backslashes and repeated slashes. Everything here is
//! decoded up to [`MAX_DECODE_ROUNDS`] times, overlong UTF-8 sequences are folded to the
//! ASCII they encode, `\` becomes `/`, slash runs collapse and ASCII is lower-cased.
//! Decoding works on bytes and never fails: invalid escapes stay as they are, invalid
//! UTF-8 becomes U+FFFD. Input is cut at [`MAX_SCAN_BYTES`] so one request costs at most
//! a few passes over 16 KiB (the proxy should refuse longer URIs with 414 anyway).

/// Decoding rounds at most: enough for double and triple encoding; deeper nesting is
/// itself reported as double encoding.
pub const MAX_DECODE_ROUNDS: u8 = 3;

/// Bytes of one input that are examined.
pub const MAX_SCAN_BYTES: usize = 16 * 1024;

/// The result of decoding one piece of request text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    /// Decoded, lower-cased (ASCII only) text; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// Decoding rounds that changed something.
    pub rounds: u8,
    /// A second (or later) round decoded a character that matters to an attack
    /// (`. / \ % < > ' " ; | & $`, controls): `%252e`-style double encoding.
    pub double_encoded: bool,
    /// An overlong UTF-8 sequence (`%c0%af`) was folded to ASCII.
    pub overlong: bool,
    /// A NUL byte appeared after decoding.
    pub nul: bool,
    /// A CR or LF appeared after decoding.
    pub crlf: bool,
    /// The input was longer than [`MAX_SCAN_BYTES`] and was cut.
    pub truncated: bool,
}

fn hex_val(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_dangerous(b: u8) -> bool {
    matches!(
        b,
        b'.' | b'/' | b'\\' | b'%' | b'<' | b'>' | b'\'' | b'"' | b';' | b'|' | b'&' | b'$' | b'`'
    ) || !(0x20..0x80).contains(&b)
}

/// One round of percent-decoding. `%XX` and IIS-style `%uXXXX` are decoded; a `+` becomes
/// a space when `plus_as_space` (form-encoded query strings). Returns whether anything
/// changed and whether a decoded byte is "dangerous" (see [`Decoded::double_encoded`]).
pub fn percent_decode_round(input: &[u8], plus_as_space: bool, out: &mut Vec<u8>) -> (bool, bool) {
    out.clear();
    out.reserve(input.len());
    let mut changed = false;
    let mut dangerous = false;
    let mut i = 0usize;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (hex_val(input.get(i + 1)), hex_val(input.get(i + 2))) {
                let v = (h << 4) | l;
                dangerous |= is_dangerous(v);
                out.push(v);
                changed = true;
                i += 3;
                continue;
            }
            if matches!(input.get(i + 1), Some(b'u' | b'U')) {
                let digits = [
                    hex_val(input.get(i + 2)),
                    hex_val(input.get(i + 3)),
                    hex_val(input.get(i + 4)),
                    hex_val(input.get(i + 5)),
                ];
                if let [Some(a), Some(b2), Some(c), Some(d)] = digits {
                    let cp = (u32::from(a) << 12)
                        | (u32::from(b2) << 8)
                        | (u32::from(c) << 4)
                        | u32::from(d);
                    let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                    let mut buf = [0u8; 4];
                    let enc = ch.encode_utf8(&mut buf).as_bytes();
                    if let [single] = enc {
                        dangerous |= is_dangerous(*single);
                    }
                    out.extend_from_slice(enc);
                    changed = true;
                    i += 6;
                    continue;
                }
            }
            out.push(b);
        } else if b == b'+' && plus_as_space {
            out.push(b' ');
            changed = true;
        } else {
            out.push(b);
        }
        i += 1;
    }
    (changed, dangerous)
}

/// Folds overlong UTF-8 encodings of ASCII (`C0 AF` = `/`, `E0 80 AE` = `.`) to the
/// ASCII byte. Returns whether one was found.
fn fold_overlong(bytes: &mut Vec<u8>) -> bool {
    let needs = bytes
        .iter()
        .any(|&b| b == 0xC0 || b == 0xC1 || b == 0xE0 || b == 0xF0);
    if !needs {
        return false;
    }
    let cont = |b: Option<&u8>| {
        b.filter(|b| (0x80..=0xBF).contains(*b))
            .map(|b| u32::from(*b & 0x3F))
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut found = false;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        // Two bytes: C0/C1 + continuation → code point < 0x80.
        if b == 0xC0 || b == 0xC1 {
            if let Some(c1) = cont(bytes.get(i + 1)) {
                let cp = ((u32::from(b) & 0x1F) << 6) | c1;
                out.push(u8::try_from(cp).unwrap_or(b'?'));
                found = true;
                i += 2;
                continue;
            }
        }
        // Three bytes: E0 + 80..9F + continuation → code point < 0x800.
        if b == 0xE0 {
            if let (Some(c1), Some(c2)) = (cont(bytes.get(i + 1)), cont(bytes.get(i + 2))) {
                let cp = (c1 << 6) | c2;
                if cp < 0x80 {
                    out.push(u8::try_from(cp).unwrap_or(b'?'));
                    found = true;
                    i += 3;
                    continue;
                }
            }
        }
        // Four bytes: F0 + 80..8F + 2 continuations → code point < 0x10000.
        if b == 0xF0 {
            if let (Some(c1), Some(c2), Some(c3)) = (
                cont(bytes.get(i + 1)),
                cont(bytes.get(i + 2)),
                cont(bytes.get(i + 3)),
            ) {
                let cp = (c1 << 12) | (c2 << 6) | c3;
                if cp < 0x80 {
                    out.push(u8::try_from(cp).unwrap_or(b'?'));
                    found = true;
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    *bytes = out;
    found
}

/// Folds full-width forms of printable ASCII (U+FF01–U+FF5E, `．．／`, `＜ｓｃｒｉｐｔ＞`)
/// to ASCII: NFKC-normalising back ends (and IIS "best fit" mappings) treat them as the
/// ASCII they look like. Returns whether one was found. Costs one scan for `EF` when
/// there is none.
fn fold_fullwidth(bytes: &mut Vec<u8>) -> bool {
    if !bytes.contains(&0xEF) {
        return false;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut found = false;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == 0xEF {
            let ascii = match (bytes.get(i + 1), bytes.get(i + 2)) {
                // U+FF01..U+FF3F
                (Some(0xBC), Some(&c @ 0x81..=0xBF)) => Some(c - 0x60),
                // U+FF40..U+FF5E
                (Some(0xBD), Some(&c @ 0x80..=0x9E)) => Some(c - 0x20),
                _ => None,
            };
            if let Some(a) = ascii {
                out.push(a);
                found = true;
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    *bytes = out;
    found
}

fn cut(input: &[u8]) -> (&[u8], bool) {
    match input.get(..MAX_SCAN_BYTES) {
        Some(head) if input.len() > MAX_SCAN_BYTES => (head, true),
        _ => (input, false),
    }
}

/// Decodes `input` up to [`MAX_DECODE_ROUNDS`] times (`+` is a space in the first round
/// when `plus_as_space`), folds overlong UTF-8 and lower-cases ASCII.
pub fn decode(input: &[u8], plus_as_space: bool) -> Decoded {
    let (input, truncated) = cut(input);
    let mut cur = input.to_vec();
    let mut next = Vec::new();
    let mut rounds = 0u8;
    let mut double_encoded = false;
    for round in 0..MAX_DECODE_ROUNDS {
        let plus_pending = round == 0 && plus_as_space && cur.contains(&b'+');
        if !plus_pending && !cur.contains(&b'%') {
            break;
        }
        let (changed, dangerous) =
            percent_decode_round(&cur, plus_as_space && round == 0, &mut next);
        if !changed {
            break;
        }
        rounds += 1;
        if round >= 1 && dangerous {
            double_encoded = true;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    // Still encoded after the last round: at least quadruple encoding.
    if rounds == MAX_DECODE_ROUNDS {
        let (changed, dangerous) = percent_decode_round(&cur, false, &mut next);
        double_encoded |= changed && dangerous;
    }
    let overlong = fold_overlong(&mut cur);
    fold_fullwidth(&mut cur);
    let nul = cur.contains(&0);
    let crlf = cur.iter().any(|&b| b == b'\r' || b == b'\n');
    cur.make_ascii_lowercase();
    let text = match String::from_utf8(cur) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Decoded {
        text,
        rounds,
        double_encoded,
        overlong,
        nul,
        crlf,
        truncated,
    }
}

/// A request path after decoding and normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizedPath {
    /// Decoding details; `decoded.text` has `\` turned into `/` and slash runs
    /// collapsed, but `.` and `..` segments kept (they are what traversal detection
    /// looks for).
    pub decoded: Decoded,
    /// The canonical form used for route-like matching (honeypots): empty and `.`
    /// segments dropped, `;params` stripped from each segment, always starting with `/`,
    /// no trailing slash (except the root).
    pub canonical: String,
}

/// Decodes and normalises a raw request path (without the query string).
pub fn normalize_path(raw: &str) -> NormalizedPath {
    let mut decoded = decode(raw.as_bytes(), false);
    let mut text = String::with_capacity(decoded.text.len() + 1);
    let mut prev_slash = false;
    for ch in decoded.text.chars() {
        let ch = if ch == '\\' { '/' } else { ch };
        if ch == '/' {
            if prev_slash {
                continue;
            }
            prev_slash = true;
        } else {
            prev_slash = false;
        }
        text.push(ch);
    }
    decoded.text = text;
    let canonical = canonical_path(&decoded.text);
    NormalizedPath { decoded, canonical }
}

/// The canonical form of an already decoded, lower-cased path; see
/// [`NormalizedPath::canonical`].
pub fn canonical_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for seg in path.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        if seg.is_empty() || seg == "." {
            continue;
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether `path` needs the slow path of [`normalize_path`]: anything but plain
/// `[A-Za-z0-9/_.:~-]` without `..` or `//`. Clean paths (every real API route) can be
/// matched as they are, lower-cased.
pub fn is_plain_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'.' | b'-' | b':' | b'~'))
        && !path.contains("..")
        && !path.contains("//")
        && !path.contains("/./")
        && !path.ends_with("/.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_iis_forms() {
        let cases: [(&str, bool, &str, u8); 8] = [
            ("/a%2Fb", false, "/a/b", 1),
            ("a+b%20c", true, "a b c", 1),
            ("a+b", false, "a+b", 0),
            ("%252e%252e%252f", false, "../", 2),
            ("%25252e", false, ".", 3),
            ("%u002e%u002E/", false, "../", 1),
            ("%%%", false, "%%%", 0),
            ("%zz%4", false, "%zz%4", 0),
        ];
        for (input, plus, text, rounds) in cases {
            let d = decode(input.as_bytes(), plus);
            assert_eq!(d.text, text, "{input}");
            assert_eq!(d.rounds, rounds, "{input}");
        }
    }

    #[test]
    fn flags_double_encoding_only_for_meaningful_characters() {
        assert!(decode(b"%252e%252e", false).double_encoded);
        assert!(
            decode(b"%25%32%65", false).double_encoded,
            "%25 %32 %65 → %2e → ."
        );
        // A literal percent followed by hex letters: decodes twice but harmlessly.
        assert!(!decode(b"100%2541", false).double_encoded);
        assert!(!decode(b"%2e%2e", false).double_encoded);
        // Four levels deep is still reported.
        assert!(decode(b"%2525252e", false).double_encoded);
    }

    #[test]
    fn folds_fullwidth_ascii() {
        let d = decode(
            "．．／ｅｔｃ／ｐａｓｓｗｄ＜ＳＣＲＩＰＴ＞～".as_bytes(),
            false,
        );
        assert_eq!(d.text, "../etc/passwd<script>~");
        let d = decode(b"%ef%bc%8e%ef%bc%8e%ef%bc%8f", false);
        assert_eq!(d.text, "../");
        // Other characters of the block and truncated sequences stay.
        assert_eq!(decode("ｱ日本".as_bytes(), false).text, "ｱ日本");
        assert_eq!(decode(&[0xEF, 0xBC], false).text, "\u{fffd}");
    }

    #[test]
    fn folds_overlong_utf8() {
        let d = decode(b"..%c0%af..%c0%afetc", false);
        assert!(d.overlong);
        assert_eq!(d.text, "../../etc");
        let d = decode(b"%e0%80%ae%e0%80%ae/", false);
        assert!(d.overlong);
        assert_eq!(d.text, "../");
        let d = decode(b"%c1%9c", false);
        assert_eq!(d.text, "\\");
        // A real two-byte character is left alone.
        let d = decode("caf%C3%A9".as_bytes(), false);
        assert!(!d.overlong);
        assert_eq!(d.text, "café");
    }

    #[test]
    fn flags_nul_and_crlf_and_invalid_utf8() {
        let d = decode(b"a%00b", false);
        assert!(d.nul);
        let d = decode(b"a%0d%0aSet-Cookie:x", false);
        assert!(d.crlf);
        assert_eq!(d.text, "a\r\nset-cookie:x");
        let d = decode(b"\xff\xfe%ff", false);
        assert_eq!(d.text, "\u{fffd}\u{fffd}\u{fffd}");
    }

    #[test]
    fn truncates_long_input() {
        let long = "a".repeat(MAX_SCAN_BYTES + 10);
        let d = decode(long.as_bytes(), false);
        assert!(d.truncated);
        assert_eq!(d.text.len(), MAX_SCAN_BYTES);
    }

    #[test]
    fn normalises_paths() {
        let cases = [
            (
                "/v1/chat/completions",
                "/v1/chat/completions",
                "/v1/chat/completions",
            ),
            ("//ADMIN//", "/admin/", "/admin"),
            ("/./admin/.", "/./admin/.", "/admin"),
            ("\\admin\\x", "/admin/x", "/admin/x"),
            ("/admin;jsessionid=1", "/admin;jsessionid=1", "/admin"),
            (
                "/%2e%2e/%2e%2e/etc/passwd",
                "/../../etc/passwd",
                "/../../etc/passwd",
            ),
            ("", "", "/"),
            ("/", "/", "/"),
        ];
        for (raw, text, canonical) in cases {
            let n = normalize_path(raw);
            assert_eq!(n.decoded.text, text, "{raw}");
            assert_eq!(n.canonical, canonical, "{raw}");
        }
    }

    #[test]
    fn plain_paths() {
        assert!(is_plain_path("/v1/chat/completions"));
        assert!(is_plain_path("/v1/models/flm:ollama"));
        assert!(!is_plain_path("/v1/../x"));
        assert!(!is_plain_path("//x"));
        assert!(!is_plain_path("/a%2e"));
        assert!(!is_plain_path("/a/./b"));
        assert!(!is_plain_path("/a\\b"));
    }
}
