//! `flm_guard::normalize`: percent/overlong/full-width decoding and path
//! normalisation never panic, stay bounded, and agree with the plain-path fast path.
#![no_main]

use flm_guard::intrusion::is_honeypot_path;
use flm_guard::normalize::{
    canonical_path, decode, is_plain_path, normalize_path, MAX_DECODE_ROUNDS, MAX_SCAN_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for plus in [false, true] {
        let d = decode(data, plus);
        assert!(d.rounds <= MAX_DECODE_ROUNDS);
        assert_eq!(d.truncated, data.len() > MAX_SCAN_BYTES);
        // Decoding only shrinks bytes; U+FFFD replacement at most triples them.
        assert!(d.text.len() <= MAX_SCAN_BYTES * 3, "{}", d.text.len());
        assert!(!d.text.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(d.nul, d.text.contains('\0'));
        // Decoding is deterministic.
        assert_eq!(decode(data, plus), d);
    }

    let raw = String::from_utf8_lossy(data);
    let n = normalize_path(&raw);
    let c = &n.canonical;
    assert!(c.starts_with('/'));
    assert!(c == "/" || !c.ends_with('/'), "{c:?}");
    assert!(!c.contains("//"), "{c:?}");
    assert!(
        c == "/" || !c.split('/').skip(1).any(|s| s.is_empty() || s == "."),
        "{c:?}"
    );
    assert!(!n.decoded.text.contains('\\'));
    assert!(!n.decoded.text.contains("//"));
    // The canonical form is a fixed point.
    assert_eq!(&canonical_path(c), c);
    // The plain-path fast path and the full path agree on honeypots (for origin-form
    // request targets, which always start with `/`).
    if raw.starts_with('/') && is_plain_path(c) {
        assert_eq!(
            is_honeypot_path(&raw),
            is_honeypot_path(c),
            "raw {raw:?} canonical {c:?}"
        );
    }
});
