//! Subject alternative names: what a certificate is valid for.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Result, TlsError};

/// One subject alternative name: a DNS name or an IP address.
///
/// DNS names are kept in lower case (DNS is case-insensitive, and comparing the SANs of
/// a stored certificate with the requested ones must not rotate on `LOCALHOST` vs
/// `localhost`). IPv4-mapped IPv6 addresses are stored as IPv4.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// A DNS name such as `localhost` or `flm.example.com`.
    Dns(String),
    /// An IP address such as `127.0.0.1` or `::1`.
    Ip(IpAddr),
}

impl San {
    /// A DNS-name SAN, validated and lower-cased.
    pub fn dns(name: &str) -> Result<San> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let bad = |reason: &str| TlsError::InvalidSan {
            value: name.clone(),
            reason: reason.to_owned(),
        };
        if name.is_empty() || name.len() > 253 {
            return Err(bad("a DNS name must have 1 to 253 characters"));
        }
        for (i, label) in name.split('.').enumerate() {
            let wildcard = i == 0 && label == "*";
            let ok = wildcard
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            if !ok {
                return Err(bad(
                    "labels must be 1-63 letters, digits or `-` (a leading `*.` is allowed)",
                ));
            }
        }
        Ok(San::Dns(name))
    }

    /// An IP-address SAN.
    pub fn ip(ip: IpAddr) -> San {
        San::Ip(ip.to_canonical())
    }

    /// Parses `s` as an IP address if it is one, otherwise as a DNS name.
    /// Brackets around IPv6 addresses (`[::1]`) are accepted.
    pub fn parse(s: &str) -> Result<San> {
        let t = s.trim();
        let unbracketed = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        match IpAddr::from_str(unbracketed) {
            Ok(ip) => Ok(San::ip(ip)),
            Err(_) => San::dns(t),
        }
    }

    /// The names every FLM server certificate carries: `localhost`, `127.0.0.1`, `::1`.
    pub fn loopback() -> Vec<San> {
        vec![
            San::Dns("localhost".to_owned()),
            San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType> {
        Ok(match self {
            San::Dns(d) => rcgen::SanType::DnsName(d.clone().try_into()?),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for San {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<San> {
        San::parse(s)
    }
}

impl From<IpAddr> for San {
    fn from(ip: IpAddr) -> San {
        San::ip(ip)
    }
}

/// The SAN set of a server certificate: the loopback names plus `extra`, sorted and
/// without duplicates.
///
/// Unspecified addresses (`0.0.0.0`, `::`) are dropped: a bind address of `0.0.0.0`
/// means "every interface", which no client ever connects to by that name. Pass the
/// machine's actual LAN addresses instead (the proxy already computes them for its
/// `local_network` endpoint).
pub fn server_sans(extra: &[San]) -> Vec<San> {
    let mut set: BTreeSet<San> = San::loopback().into_iter().collect();
    for s in extra {
        let s = match s {
            San::Ip(ip) if ip.is_unspecified() => continue,
            San::Ip(ip) => San::ip(*ip),
            San::Dns(_) => s.clone(),
        };
        set.insert(s);
    }
    set.into_iter().collect()
}

/// Whether `have` (the SANs of an existing certificate) covers every name in `want`.
pub(crate) fn covers(have: &[San], want: &[San]) -> bool {
    want.iter().all(|w| have.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ip_and_dns() {
        assert_eq!(
            San::parse("127.0.0.1").unwrap(),
            San::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            San::parse("[::1]").unwrap(),
            San::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            San::parse("::ffff:192.168.1.5").unwrap(),
            San::Ip("192.168.1.5".parse().unwrap())
        );
        assert_eq!(
            San::parse("Flm.Example.COM.").unwrap(),
            San::Dns("flm.example.com".into())
        );
        assert_eq!(
            San::parse("*.example.com").unwrap(),
            San::Dns("*.example.com".into())
        );
        for bad in ["", "a b", "-x.com", "x..com", "ex*ample.com", "é.com"] {
            assert!(
                matches!(San::parse(bad), Err(TlsError::InvalidSan { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_sans_adds_loopback_dedups_and_drops_unspecified() {
        let extra = [
            San::parse("0.0.0.0").unwrap(),
            San::parse("::").unwrap(),
            San::parse("192.168.1.20").unwrap(),
            San::parse("localhost").unwrap(),
        ];
        let s = server_sans(&extra);
        assert_eq!(
            s.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["localhost", "127.0.0.1", "192.168.1.20", "::1"]
        );
        assert!(covers(&s, &San::loopback()));
        assert!(!covers(&San::loopback(), &s));
    }
}
