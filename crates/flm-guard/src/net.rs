//! Addresses: CIDR networks, the client address behind trusted proxies, the IP allow
//! list and rate-limit subjects (spec 40-security §3.2, §5).
//!
//! No external crate: an [`IpNet`] is an address plus a prefix length, and membership is
//! a masked comparison on the integer form of the address. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4 peers) are folded to
//! IPv4 everywhere, so `127.0.0.1/8` matches a peer seen as `::ffff:127.0.0.1`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a string is not an address or a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{0}` is not a valid IPv4/IPv6 address")]
    InvalidAddress(String),
    /// The prefix length is not a number or is too long for the family.
    #[error("`{0}` has an invalid prefix length (IPv4: 0-32, IPv6: 0-128)")]
    InvalidPrefix(String),
}

/// An IPv4 or IPv6 network in CIDR form. A single address is a network with a full
/// prefix (`/32` or `/128`).
///
/// Invariant: the host bits of `addr` are zero (construction masks them), so two
/// networks that contain the same addresses compare equal and display the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

// === impl IpNet ===

impl IpNet {
    /// Builds a network; host bits of `addr` are cleared. IPv4-mapped IPv6 addresses with
    /// a prefix ≥ 96 are folded to IPv4 (`::ffff:10.0.0.0/104` becomes `10.0.0.0/8`).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, NetError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        let max = max_prefix(addr);
        if prefix > max {
            return Err(NetError::InvalidPrefix(format!("{addr}/{prefix}")));
        }
        Ok(Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The single-address network of `ip` (`/32` or `/128`).
    pub fn host(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        Self {
            addr: ip,
            prefix: max_prefix(ip),
        }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether this network is a single address.
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }

    /// Whether `ip` lies inside this network. Families never match each other, except
    /// that IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask_v4(self.prefix);
                (u32::from(net) & m) == (u32::from(ip) & m)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask_v6(self.prefix);
                (u128::from(net) & m) == (u128::from(ip) & m)
            }
            _ => false,
        }
    }
}

impl From<IpAddr> for IpNet {
    fn from(ip: IpAddr) -> Self {
        Self::host(ip)
    }
}

impl FromStr for IpNet {
    type Err = NetError;

    /// Accepts `addr` or `addr/prefix`, with surrounding whitespace trimmed. The prefix
    /// must be plain decimal digits (no sign, at most three digits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.split_once('/') {
            None => {
                let ip = parse_ip(s).ok_or_else(|| NetError::InvalidAddress(s.to_owned()))?;
                Ok(Self::host(ip))
            }
            Some((a, p)) => {
                // Not canonicalised here: `new` folds mapped addresses with the prefix.
                let ip = a
                    .parse::<IpAddr>()
                    .map_err(|_| NetError::InvalidAddress(s.to_owned()))?;
                let prefix =
                    parse_prefix(p).ok_or_else(|| NetError::InvalidPrefix(s.to_owned()))?;
                Self::new(ip, prefix)
            }
        }
    }
}

impl fmt::Display for IpNet {
    /// A single address prints without a prefix; networks print as `addr/prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
    }
}

fn parse_prefix(p: &str) -> Option<u8> {
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Folds IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) to IPv4; other addresses are
/// returned unchanged. Every address this module stores or compares goes through it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// Parses a bare IPv4/IPv6 address (surrounding whitespace trimmed), canonicalised.
/// Zone ids (`fe80::1%eth0`), brackets and ports are rejected; see
/// [`parse_forwarded_addr`] for header values that may carry them.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse::<IpAddr>().ok().map(canonical)
}

/// Parses one address as proxies write it in `X-Forwarded-For` / `X-Real-IP`: a bare
/// address, `v4:port`, `[v6]` or `[v6]:port`. Anything else is `None`.
pub fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Some(ip) = parse_ip(s) {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return if port_ok {
            inner
                .parse::<Ipv6Addr>()
                .ok()
                .map(|v6| canonical(IpAddr::V6(v6)))
        } else {
            None
        };
    }
    // `v4:port`; a bare IPv6 address was handled above, so exactly one colon is IPv4.
    let (host, port) = s.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `ip` is inside any of `nets`.
pub fn matches_any(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(ip))
}

/// How many `X-Forwarded-For` hops are examined at most. The walk only continues past
/// an entry that is itself a trusted proxy, so a real chain is a handful of hops; the
/// cap bounds the work on a hostile header from inside a trusted range.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The client address of a request (spec 40-security §5, with one deliberate change).
///
/// - The headers are believed **only** when the TCP `peer` is inside `trusted`
///   (`trusted_proxy_ips`). With an empty list, or an untrusted peer, the peer is the
///   client, whatever the headers say.
/// - `X-Forwarded-For` is read **from the right**: trusted hops are skipped and the
///   first untrusted address is the client. The spec says "the first address"; we do
///   not do that because every proxy *appends* the address it received the connection
///   from, so only the right-hand part of the list was written by machines we trust.
///   The left-most entry is whatever the client chose to send: with "first address" an
///   attacker behind the proxy sends `X-Forwarded-For: 1.2.3.4` and is rate-limited,
///   scored and blocked as `1.2.3.4` — evading its own ban and getting an innocent
///   address banned instead. The right-most untrusted entry is the address the
///   outermost trusted proxy actually saw; the client cannot forge it.
/// - An unparsable entry ends the walk (everything to its left is unverifiable); the
///   left-most trusted hop seen so far is then the best verified address, else the peer.
/// - `X-Real-IP` is read **only when no `X-Forwarded-For` line is present at all** (the
///   documented order: `X-Forwarded-For`, else `X-Real-IP`, else the peer), and only
///   when it is one address. A present but empty or unparsable `X-Forwarded-For` never
///   falls back to it: a client behind a proxy that appends to `X-Forwarded-For` but
///   passes `X-Real-IP` through could otherwise garble the former to choose its address
///   with the latter.
/// - Several `X-Forwarded-For` header lines must be joined with `,` by the caller (as
///   HTTP list semantics require) before calling.
pub fn client_ip(
    peer: IpAddr,
    xff: Option<&str>,
    x_real_ip: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !matches_any(peer, trusted) {
        return peer;
    }
    if let Some(xff) = xff {
        let mut last_trusted: Option<IpAddr> = None;
        for entry in xff.rsplit(',').take(MAX_FORWARDED_HOPS) {
            if entry.trim().is_empty() {
                continue;
            }
            match parse_forwarded_addr(entry) {
                Some(ip) if matches_any(ip, trusted) => last_trusted = Some(ip),
                Some(ip) => return ip,
                None => break,
            }
        }
        return last_trusted.unwrap_or(peer);
    }
    x_real_ip.and_then(parse_forwarded_addr).unwrap_or(peer)
}

/// The IP allow list (`ip_whitelist`). Empty means filtering is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

// === impl AllowList ===

impl AllowList {
    /// Builds the list; an empty list allows everyone.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` may connect: always when the list is empty, else when it matches an
    /// entry exactly or falls inside a CIDR. Linear scan: allow lists are short.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.nets.is_empty() || matches_any(ip, &self.nets)
    }

    /// The entries.
    pub fn entries(&self) -> &[IpNet] {
        &self.nets
    }
}

/// The rate-limit key for a client address: `ip:<v4>` for IPv4 and `ip:<prefix>::/64`
/// for IPv6. One IPv6 host normally owns a whole /64 and can rotate through 2^64
/// addresses, so limiting per address would let it bypass the limit at will; the /64 is
/// what one subscriber gets.
pub fn rate_subject(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & mask_v6(64));
            format!("ip:{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_and_displays_networks() {
        let cases = [
            ("127.0.0.1", Some("127.0.0.1")),
            (" 10.0.0.0/8 ", Some("10.0.0.0/8")),
            ("192.168.1.7/16", Some("192.168.0.0/16")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1")),
            ("fe80::1/10", Some("fe80::/10")),
            ("::/0", Some("::/0")),
            ("::ffff:10.1.2.3", Some("10.1.2.3")),
            ("::ffff:10.0.0.0/104", Some("10.0.0.0/8")),
            ("10.0.0.0/33", None),
            ("::/129", None),
            ("10.0.0.0/", None),
            ("10.0.0.0/+8", None),
            ("10.0.0.0/-1", None),
            ("10.0.0.0/0008", None),
            ("10.0.0.0/8/8", None),
            ("010.0.0.1", None),
            ("256.0.0.1", None),
            ("1.2.3", None),
            ("fe80::1%eth0", None),
            ("[::1]", None),
            ("", None),
            ("localhost", None),
        ];
        for (input, want) in cases {
            let got = input.parse::<IpNet>().ok().map(|n| n.to_string());
            assert_eq!(got.as_deref(), want, "input {input:?}");
        }
    }

    #[test]
    fn membership() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.0/8", "::ffff:127.0.0.5", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "::1", true),
            ("::/0", "1.2.3.4", false),
        ];
        for (net, addr, want) in cases {
            let n: IpNet = net.parse().unwrap();
            assert_eq!(n.contains(ip(addr)), want, "{addr} in {net}");
        }
    }

    #[test]
    fn forwarded_addr_forms() {
        let cases = [
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4:5678 ", Some("1.2.3.4")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:", None),
            ("[2001:db8::1]x", None),
            ("1.2.3.4:", None),
            ("1.2.3.4:99999999", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_forwarded_addr(input), want.map(ip), "input {input:?}");
        }
    }

    #[test]
    fn client_ip_table() {
        let trusted = nets(&["10.0.0.0/8", "::1"]);
        // (peer, xff, x-real-ip, trusted?, expected)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, bool, &'a str);
        let cases: [Case<'_>; 17] = [
            // No trusted proxies: headers ignored.
            (
                "203.0.113.5",
                Some("1.1.1.1"),
                Some("2.2.2.2"),
                false,
                "203.0.113.5",
            ),
            // Untrusted peer: headers ignored.
            (
                "203.0.113.5",
                Some("1.1.1.1"),
                Some("2.2.2.2"),
                true,
                "203.0.113.5",
            ),
            // Trusted peer, one hop.
            ("10.0.0.2", Some("198.51.100.7"), None, true, "198.51.100.7"),
            // Forged left-most entry is ignored: right-most untrusted wins.
            (
                "10.0.0.2",
                Some("1.2.3.4, 198.51.100.7"),
                None,
                true,
                "198.51.100.7",
            ),
            // Trusted hops are skipped from the right.
            (
                "10.0.0.2",
                Some("198.51.100.7, 10.0.0.9, 10.0.0.3"),
                None,
                true,
                "198.51.100.7",
            ),
            // Ports and brackets tolerated.
            (
                "10.0.0.2",
                Some("[2001:db8::7]:1234"),
                None,
                true,
                "2001:db8::7",
            ),
            // Invalid right-most entry: walk ends at the peer; X-Real-IP is not a
            // fallback for a garbled X-Forwarded-For.
            (
                "10.0.0.2",
                Some("198.51.100.7, garbage"),
                Some("198.51.100.8"),
                true,
                "10.0.0.2",
            ),
            // Invalid entry after a trusted hop: the trusted hop is the best we know.
            (
                "10.0.0.2",
                Some("evil, 10.0.0.9"),
                Some("198.51.100.8"),
                true,
                "10.0.0.9",
            ),
            // All trusted: left-most trusted.
            (
                "10.0.0.2",
                Some("10.0.0.7, 10.0.0.9"),
                None,
                true,
                "10.0.0.7",
            ),
            // Present but empty header: the peer, never X-Real-IP.
            (
                "10.0.0.2",
                Some(" , "),
                Some("198.51.100.8"),
                true,
                "10.0.0.2",
            ),
            // No X-Forwarded-For at all: X-Real-IP (the documented order).
            ("10.0.0.2", None, Some("198.51.100.8"), true, "198.51.100.8"),
            // X-Forwarded-For present: X-Real-IP ignored even when it differs.
            (
                "10.0.0.2",
                Some("198.51.100.7"),
                Some("192.0.2.66"),
                true,
                "198.51.100.7",
            ),
            // Several X-Real-IP lines (joined by the caller): ambiguous, the peer.
            (
                "10.0.0.2",
                None,
                Some("198.51.100.8,192.0.2.66"),
                true,
                "10.0.0.2",
            ),
            // Invalid X-Real-IP: peer.
            ("10.0.0.2", None, Some("not-an-ip"), true, "10.0.0.2"),
            // Mapped peer counts as trusted v4.
            (
                "::ffff:10.0.0.2",
                Some("198.51.100.7"),
                None,
                true,
                "198.51.100.7",
            ),
            // IPv6 loopback proxy.
            ("::1", None, Some("2001:db8::5"), true, "2001:db8::5"),
            // Mapped peer, untrusted list empty: canonicalised peer.
            ("::ffff:192.0.2.1", None, None, false, "192.0.2.1"),
        ];
        for (peer, xff, real, use_trusted, want) in cases {
            let t: &[IpNet] = if use_trusted { &trusted } else { &[] };
            assert_eq!(
                client_ip(ip(peer), xff, real, t),
                ip(want),
                "peer {peer} xff {xff:?} real {real:?}"
            );
        }
    }

    #[test]
    fn allow_list() {
        let empty = AllowList::default();
        assert!(empty.allows(ip("8.8.8.8")));
        let list = AllowList::new(nets(&["127.0.0.1", "192.168.0.0/16", "2001:db8::/48"]));
        assert!(list.allows(ip("127.0.0.1")));
        assert!(list.allows(ip("::ffff:192.168.3.4")));
        assert!(list.allows(ip("2001:db8:0:1::9")));
        assert!(!list.allows(ip("127.0.0.2")));
        assert!(!list.allows(ip("2001:db8:1::1")));
    }

    #[test]
    fn rate_subjects() {
        assert_eq!(rate_subject(ip("1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(rate_subject(ip("::ffff:1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(
            rate_subject(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "ip:2001:db8:1:2::/64"
        );
    }

    #[test]
    fn serde_round_trip() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(j, "\"10.0.0.0/8\"");
        let back: IpNet = serde_json::from_str(&j).unwrap();
        assert_eq!(back, n);
        assert!(serde_json::from_str::<IpNet>("\"10/8\"").is_err());
    }
}
