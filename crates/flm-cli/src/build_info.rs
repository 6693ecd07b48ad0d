//! What `flm --version` and `flm-proxy --version` print: the version, the commit and the
//! build date, set by `build.rs`.

/// The commit the binary was built from (12 hex digits), or `unknown` when it was built
/// outside a git checkout without `FLM_BUILD_COMMIT`.
pub const COMMIT: &str = env!("FLM_BUILD_COMMIT");

/// The build date, `YYYY-MM-DD` (UTC).
pub const BUILD_DATE: &str = env!("FLM_BUILD_DATE");

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-06)`, or `0.1.0 (commit unknown: not
/// built from a git checkout, built 2026-12-06)`: the text after the program name in
/// `--version`.
pub const VERSION: &str = env!("FLM_VERSION_LINE");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_commit_and_the_date() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains(COMMIT));
        assert!(COMMIT == "unknown" || COMMIT.chars().all(|c| c.is_ascii_hexdigit()));
        let d: Vec<&str> = BUILD_DATE.split('-').collect();
        assert_eq!(d.len(), 3, "{BUILD_DATE}");
        assert!(d.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())));
    }
}
