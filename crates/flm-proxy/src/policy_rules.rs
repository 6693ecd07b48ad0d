//! [`PolicyRules`] of the guard: what the proxy enforces is what the security service
//! saves.

use flm_core::services::PolicyRules;
use flm_core::FieldProblem;
use flm_guard::policy::SecurityPolicy;

/// Policy and address validation by `flm-guard`.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardPolicyRules;

impl PolicyRules for GuardPolicyRules {
    fn validate(&self, policy_json: &str) -> Result<String, Vec<FieldProblem>> {
        SecurityPolicy::from_json_str(policy_json)
            .map(|p| p.to_json_string())
            .map_err(|errs| {
                errs.errors()
                    .iter()
                    .map(|e| FieldProblem {
                        field: e.field.clone(),
                        message: e.message.clone(),
                    })
                    .collect()
            })
    }

    fn canonical_address(&self, raw: &str) -> Result<String, String> {
        let raw = raw.trim();
        if raw.contains('/') {
            return raw
                .parse::<flm_guard::IpNet>()
                .map(|net| net.to_string())
                .map_err(|e| e.to_string());
        }
        flm_guard::net::parse_ip(raw)
            .map(|ip| flm_guard::net::canonical(ip).to_string())
            .ok_or_else(|| "not an IP address".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_are_canonical() {
        let c = |s: &str| GuardPolicyRules.canonical_address(s).ok();
        assert_eq!(c(" 203.0.113.7 ").as_deref(), Some("203.0.113.7"));
        assert_eq!(c("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(c("10.0.0.1/32").as_deref(), Some("10.0.0.1"));
        // Ranges are stored by the proxy (IPv6 aggregates) and can be added by hand.
        assert_eq!(c("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(c("2001:DB8:1:0::/48").as_deref(), Some("2001:db8:1::/48"));
        assert!(c("999.1.1.1").is_none());
        assert!(c("10.0.0.1/99").is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errs = GuardPolicyRules
            .validate(r#"{"rate_limit":{"rpm":-1},"ip_whitelist":["10.0.0.1","x","10.0.0.0/99"]}"#)
            .err()
            .unwrap_or_default();
        let paths: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(paths.contains(&"ip_whitelist[1]"), "{paths:?}");
        assert!(paths.contains(&"ip_whitelist[2]"), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.starts_with("rate_limit")),
            "{paths:?}"
        );
    }
}
