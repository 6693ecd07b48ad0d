//! The seed corpus of the `api_key` fuzz target (`fuzz/seeds/api_key`), plus
//! mutations of each seed, run as an ordinary test: `KeyTable::verify` never panics,
//! accepts only the exact key, and `key_id_of` only returns ids of the documented
//! shape. The same invariants as `fuzz/fuzz_targets/api_key.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flm_core::keys::{key_id_of, AuthFailure, KeyTable};

const ID: &str = "key_0123456789abcdef";
const PLAIN: &str = "flm_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz012345";

fn check(table: &KeyTable, data: &[u8]) {
    match table.verify(Some(data)) {
        Ok(id) => {
            assert_eq!(id, ID);
            let token = data
                .strip_prefix(b"Bearer ")
                .or_else(|| data.strip_prefix(b"bearer "))
                .expect("accepted without the Bearer scheme");
            assert_eq!(std::str::from_utf8(token).unwrap().trim(), PLAIN);
        }
        Err(e) => assert_ne!(e, AuthFailure::MissingAuthorizationHeader),
    }
    let text = String::from_utf8_lossy(data);
    if let Some(id) = key_id_of(&text) {
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    let header = format!("Bearer {text}");
    if table.verify(Some(header.as_bytes())).is_ok() {
        assert_eq!(text.trim(), PLAIN);
    }
}

#[test]
fn api_key_seeds_and_their_mutations() {
    let mut table = KeyTable::default();
    table.insert(ID, PLAIN).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/api_key");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        seeds += 1;
        check(&table, &data);
        // Every single-byte flip, truncation and duplication of the seed.
        for i in 0..data.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut m = data.clone();
                m[i] ^= flip;
                check(&table, &m);
            }
            check(&table, &data[..i]);
            let mut dup = data.clone();
            dup.insert(i, data[i]);
            check(&table, &dup);
        }
    }
    assert!(seeds >= 5, "seed files missing from {dir}");
    // The valid key verifies; one changed character does not.
    assert_eq!(
        table.verify(Some(format!("Bearer {PLAIN}").as_bytes())),
        Ok(ID)
    );
    let mut wrong = PLAIN.to_owned();
    wrong.pop();
    wrong.push('6');
    assert!(table
        .verify(Some(format!("Bearer {wrong}").as_bytes()))
        .is_err());
}
