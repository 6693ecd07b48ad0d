//! `SecurityPolicy::from_json_slice`: never panics; a valid policy's normal form
//! (`to_json_string`) parses back to the same policy and is stable; errors are never
//! empty.
#![no_main]

use flm_guard::SecurityPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match SecurityPolicy::from_json_slice(data) {
        Ok(p) => {
            let text = p.to_json_string();
            let back = SecurityPolicy::from_json_str(&text).expect("normal form must parse");
            assert_eq!(back, p);
            assert_eq!(back.to_json_string(), text, "normal form is stable");
            let _ = p.effective(true);
            let _ = p.effective(false);
        }
        Err(e) => {
            assert!(!e.errors().is_empty());
            let _ = e.to_string();
        }
    }
});
