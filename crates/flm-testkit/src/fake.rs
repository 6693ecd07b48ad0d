//! Deterministic fake content: replies, token counts, embeddings, ids and timestamps.

use chrono::{SecondsFormat, TimeZone, Utc};

use crate::EMBEDDING_DIMS;

/// Words of the last user message echoed in a reply.
const ECHO_WORDS: usize = 8;

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// splitmix64 step, to expand one hash into several pseudo-random values.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A unit-length vector of [`EMBEDDING_DIMS`] values derived from `text` only.
pub(crate) fn embedding(text: &str) -> Vec<f64> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..EMBEDDING_DIMS)
        .map(|_| {
            // Top 53 bits → [0, 1) → [-1, 1).
            let unit = (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            unit * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        return raw;
    }
    raw.iter()
        .map(|x| ((x / norm) * 1e6).round() / 1e6)
        .collect()
}

/// Rough token count: whitespace-separated words.
pub(crate) fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The reply pieces, one per streamed chunk: `Hello from <kind> <model>: you said <echo>.`
/// Every piece after the first starts with a space, so concatenating them gives the text.
pub(crate) fn reply_pieces(kind: &str, model: &str, last_user: &str) -> Vec<String> {
    let echo: Vec<&str> = last_user.split_whitespace().take(ECHO_WORDS).collect();
    let echo = if echo.is_empty() {
        "nothing".to_owned()
    } else {
        echo.join(" ")
    };
    let text = format!("Hello from {kind} {model}: you said {echo}.");
    text.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// Lower-case hex id of `len` characters derived from `seed`.
pub(crate) fn hex_id(seed: &str, len: usize) -> String {
    let mut state = fnv1a(seed.as_bytes());
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        out.push_str(&format!("{:016x}", splitmix(&mut state)));
    }
    out.truncate(len);
    out
}

/// Lower-case alphanumeric id of `len` characters derived from `seed` (LM Studio style).
pub(crate) fn alnum_id(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = fnv1a(seed.as_bytes());
    (0..len)
        .map(|_| {
            let i = (splitmix(&mut state) % ALPHABET.len() as u64) as usize;
            char::from(ALPHABET[i])
        })
        .collect()
}

/// Current time, RFC 3339 with nanoseconds (Ollama's `created_at`).
pub(crate) fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `unix` seconds as RFC 3339 (Ollama's `modified_at`).
pub(crate) fn rfc3339(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello world");
        assert_eq!(a, embedding("hello world"));
        assert_ne!(a, embedding("hello world!"));
        assert_eq!(a.len(), EMBEDDING_DIMS);
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn reply_echoes_the_user_in_several_pieces() {
        let pieces = reply_pieces("vllm", "m", "what is the  weather");
        assert_eq!(
            pieces.concat(),
            "Hello from vllm m: you said what is the weather."
        );
        assert!(pieces.len() >= 5);
        assert_eq!(
            reply_pieces("ollama", "m", "").concat(),
            "Hello from ollama m: you said nothing."
        );
    }
}
