//! Server-side request forgery guard for the addresses the proxy fetches on a
//! client's behalf (remote `image_url` parts): which addresses are public, and which
//! need the policy's explicit permission (`media_fetch.allow_private`,
//! `media_fetch.allowed_cidrs`).
//!
//! Pure logic, no I/O: the caller resolves a name itself, checks *every* resolved
//! address here, and connects only to a checked address (no second lookup, so DNS
//! rebinding cannot swap a public answer for a private one). IPv4-mapped
//! (`::ffff:a.b.c.d`), IPv4-compatible, NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`)
//! forms are judged by the IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::net::IpNet;

/// What kind of address an IP is, for the fetch guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Globally routable unicast: fetched without permission.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and the deprecated IPv6 site-local `fec0::/10`.
    Private,
    /// Carrier-grade NAT, `100.64.0.0/10` (RFC 6598).
    SharedCgnat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Unique-local IPv6, `fc00::/7`.
    UniqueLocal,
    /// Cloud instance-metadata endpoints (`169.254.169.254`, `fd00:ec2::254`, …): never
    /// allowed by `allow_private`, only by listing the exact address.
    Metadata,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `0.0.0.0/8`, `::` (on Linux `0.0.0.0` reaches the local machine).
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment, reserved and tunnelling ranges
    /// that have no business serving images.
    Reserved,
}

impl AddrClass {
    /// A short word for logs and messages (`loopback`, `private`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::SharedCgnat => "shared (CGNAT)",
            AddrClass::LinkLocal => "link-local",
            AddrClass::UniqueLocal => "unique-local",
            AddrClass::Metadata => "cloud metadata",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Reserved => "reserved",
        }
    }

    /// Whether `allow_private: true` opens this class (local networks, not metadata,
    /// multicast, broadcast or unspecified addresses).
    pub fn is_private_network(self) -> bool {
        matches!(
            self,
            AddrClass::Loopback
                | AddrClass::Private
                | AddrClass::SharedCgnat
                | AddrClass::LinkLocal
                | AddrClass::UniqueLocal
        )
    }
}

/// Known cloud metadata addresses (AWS/GCP/Azure/OpenStack, AWS ECS, Alibaba, Azure
/// wire server, AWS IPv6).
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)];

/// Whether `net` contains a known cloud metadata address.
pub fn covers_metadata(net: &IpNet) -> bool {
    METADATA_V4.iter().any(|a| net.contains(IpAddr::V4(*a)))
        || METADATA_V6.iter().any(|a| net.contains(IpAddr::V6(*a)))
}

/// Classifies an address.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    ip & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    if METADATA_V4.contains(&ip) {
        return AddrClass::Metadata;
    }
    let n = u32::from(ip);
    if in_v4(n, [0, 0, 0, 0], 8) {
        AddrClass::Unspecified
    } else if in_v4(n, [127, 0, 0, 0], 8) {
        AddrClass::Loopback
    } else if in_v4(n, [10, 0, 0, 0], 8)
        || in_v4(n, [172, 16, 0, 0], 12)
        || in_v4(n, [192, 168, 0, 0], 16)
    {
        AddrClass::Private
    } else if in_v4(n, [100, 64, 0, 0], 10) {
        AddrClass::SharedCgnat
    } else if in_v4(n, [169, 254, 0, 0], 16) {
        AddrClass::LinkLocal
    } else if n == u32::MAX {
        AddrClass::Broadcast
    } else if in_v4(n, [224, 0, 0, 0], 4) {
        AddrClass::Multicast
    } else if in_v4(n, [240, 0, 0, 0], 4)
        || in_v4(n, [192, 0, 0, 0], 24)
        || in_v4(n, [192, 0, 2, 0], 24)
        || in_v4(n, [198, 51, 100, 0], 24)
        || in_v4(n, [203, 0, 113, 0], 24)
        || in_v4(n, [198, 18, 0, 0], 15)
        || in_v4(n, [192, 88, 99, 0], 24)
    {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

fn in_v6(ip: u128, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    ip & mask == u128::from(net) & mask
}

/// The IPv4 address carried in the low 32 bits.
fn low_v4(n: u128) -> Ipv4Addr {
    Ipv4Addr::from((n & 0xffff_ffff) as u32)
}

/// An embedded IPv4 address keeps its own class; a public one stays public.
fn embedded(v4: Ipv4Addr) -> AddrClass {
    classify_v4(v4)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if METADATA_V6.contains(&ip) {
        return AddrClass::Metadata;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded(v4);
    }
    let n = u128::from(ip);
    if n == 0 {
        return AddrClass::Unspecified;
    }
    if n == 1 {
        return AddrClass::Loopback;
    }
    // IPv4-compatible `::a.b.c.d` (deprecated): judged by the IPv4 address, and never public.
    if in_v6(n, Ipv6Addr::UNSPECIFIED, 96) {
        return match embedded(low_v4(n)) {
            AddrClass::Public => AddrClass::Reserved,
            c => c,
        };
    }
    // NAT64 well-known prefix: the gateway connects to the embedded IPv4 address.
    if in_v6(n, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return embedded(low_v4(n));
    }
    // 6to4: the IPv4 address sits in bits 16..48.
    if in_v6(n, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let v4 = Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32);
        return embedded(v4);
    }
    if in_v6(n, Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8) {
        AddrClass::Multicast
    } else if in_v6(n, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
        AddrClass::LinkLocal
    } else if in_v6(n, Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10) {
        AddrClass::Private
    } else if in_v6(n, Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7) {
        AddrClass::UniqueLocal
    } else if in_v6(n, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32)
        // Teredo hides the real endpoint; ORCHID, local-use NAT64 and discard-only too.
        || in_v6(n, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32)
        || in_v6(n, Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28)
        || in_v6(n, Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28)
        || in_v6(n, Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48)
        || in_v6(n, Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64)
    {
        AddrClass::Reserved
    } else if in_v6(n, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        AddrClass::Public
    } else {
        AddrClass::Reserved
    }
}

/// Whether the proxy may connect to `ip` under a policy: addresses inside
/// `allowed_cidrs` always; public addresses always; loopback, private, CGNAT,
/// link-local and unique-local ones only with `allow_private`; everything else
/// (metadata, multicast, broadcast, unspecified, reserved) only when listed. The error
/// is the class that was refused.
pub fn check(ip: IpAddr, allow_private: bool, allowed_cidrs: &[IpNet]) -> Result<(), AddrClass> {
    if allowed_cidrs.iter().any(|n| n.contains(ip)) {
        return Ok(());
    }
    match classify(ip) {
        AddrClass::Public => Ok(()),
        c if allow_private && c.is_private_network() => Ok(()),
        c => Err(c),
    }
}

/// Whether a host *name* (not an IP literal) is local by its spelling alone:
/// `localhost`, `*.localhost`, single-label names (resolved through search domains),
/// and the local-only suffixes `.local`, `.internal`, `.home.arpa`, `.lan`,
/// `.intranet`. Used where the name is resolved by someone else (a SOCKS5 egress)
/// and its addresses cannot be checked; a trailing dot is ignored.
pub fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() || !h.contains('.') {
        return true;
    }
    [
        "localhost",
        ".localhost",
        ".local",
        ".internal",
        ".home.arpa",
        ".lan",
        ".intranet",
    ]
    .iter()
    .any(|s| {
        if let Some(suffix) = s.strip_prefix('.') {
            h.ends_with(s) || h == suffix
        } else {
            h == *s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        for (ip, want) in [
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("2606:4700:4700::1111", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::SharedCgnat),
            ("100.127.255.254", AddrClass::SharedCgnat),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("fd12:3456::1", AddrClass::UniqueLocal),
            ("fc00::1", AddrClass::UniqueLocal),
            ("169.254.169.254", AddrClass::Metadata),
            ("fd00:ec2::254", AddrClass::Metadata),
            ("100.100.100.200", AddrClass::Metadata),
            ("224.0.0.1", AddrClass::Multicast),
            ("ff02::1", AddrClass::Multicast),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Unspecified),
            ("::", AddrClass::Unspecified),
            ("255.255.255.255", AddrClass::Broadcast),
            ("240.0.0.1", AddrClass::Reserved),
            ("192.0.2.1", AddrClass::Reserved),
            ("2001:db8::1", AddrClass::Reserved),
            ("2001::1", AddrClass::Reserved),
            // IPv4 hidden in IPv6 keeps its class.
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("::ffff:169.254.169.254", AddrClass::Metadata),
            ("::ffff:8.8.8.8", AddrClass::Public),
            ("::127.0.0.1", AddrClass::Loopback),
            ("::8.8.8.8", AddrClass::Reserved),
            ("64:ff9b::7f00:1", AddrClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddrClass::Metadata),
            ("64:ff9b::808:808", AddrClass::Public),
            ("2002:7f00:1::", AddrClass::Loopback),
            ("2002:c0a8:101::1", AddrClass::Private),
        ] {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn policy_check() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let md: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(check(lo, false, &[]), Err(AddrClass::Loopback));
        assert_eq!(check(lo, true, &[]), Ok(()));
        // allow_private never opens metadata; listing it does.
        assert_eq!(check(md, true, &[]), Err(AddrClass::Metadata));
        let listed: IpNet = "169.254.169.254".parse().unwrap();
        assert!(covers_metadata(&listed));
        assert!(covers_metadata(&"169.254.0.0/16".parse().unwrap()));
        assert!(!covers_metadata(&"10.0.0.0/8".parse().unwrap()));
        assert_eq!(check(md, false, &[listed]), Ok(()));
        // An exact allowance does not open its neighbours.
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert_eq!(check(lo, false, &[one]), Ok(()));
        assert_eq!(
            check("127.0.0.2".parse().unwrap(), false, &[one]),
            Err(AddrClass::Loopback)
        );
        // A mapped form of an allowed address is the same address.
        assert_eq!(
            check("::ffff:127.0.0.1".parse().unwrap(), false, &[one]),
            Ok(())
        );
        assert_eq!(check("8.8.8.8".parse().unwrap(), false, &[]), Ok(()));
        assert_eq!(
            check("ff02::1".parse().unwrap(), true, &[]),
            Err(AddrClass::Multicast)
        );
    }

    #[test]
    fn local_names() {
        for n in [
            "localhost",
            "LOCALHOST.",
            "a.localhost",
            "printer.local",
            "metadata.google.internal",
            "router.home.arpa",
            "intranet",
            "db",
            "",
        ] {
            assert!(is_local_name(n), "{n}");
        }
        for n in [
            "example.com",
            "images.example.org.",
            "localhost.example.com",
        ] {
            assert!(!is_local_name(n), "{n}");
        }
    }
}
