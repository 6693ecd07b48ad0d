//! `flm_core::keys`: `KeyTable::verify` on any `Authorization` value never panics and
//! only accepts the exact key; `key_id_of` only returns ids of the documented shape.
#![no_main]

use flm_core::keys::{key_id_of, AuthFailure, KeyTable};
use libfuzzer_sys::fuzz_target;

const ID: &str = "key_0123456789abcdef";
const PLAIN: &str = "flm_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz012345";

fuzz_target!(|data: &[u8]| {
    let mut table = KeyTable::default();
    table.insert(ID, PLAIN).expect("valid key shape");
    match table.verify(Some(data)) {
        Ok(id) => {
            assert_eq!(id, ID);
            let token = data
                .strip_prefix(b"Bearer ")
                .or_else(|| data.strip_prefix(b"bearer "))
                .expect("accepted without the Bearer scheme");
            let token = std::str::from_utf8(token)
                .expect("accepted non-UTF-8")
                .trim();
            assert_eq!(token, PLAIN, "accepted a different key");
        }
        Err(e) => {
            assert_ne!(e, AuthFailure::MissingAuthorizationHeader);
            let _ = e.reason();
        }
    }
    assert_eq!(
        table.verify(None),
        Err(AuthFailure::MissingAuthorizationHeader)
    );

    let text = String::from_utf8_lossy(data);
    if let Some(id) = key_id_of(&text) {
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(text.contains(id));
    }
    // An Authorization header built from the fuzz input never verifies unless it is
    // the key itself.
    let header = format!("Bearer {text}");
    if table.verify(Some(header.as_bytes())).is_ok() {
        assert_eq!(text.trim(), PLAIN);
    }
});
