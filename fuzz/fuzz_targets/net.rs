//! `flm_guard::net`: CIDR parsing round-trips, forwarded-address parsing and the
//! trusted-proxy walk of `client_ip` only ever return the peer or an address that is
//! in the headers.
#![no_main]

use std::net::IpAddr;

use flm_guard::net::{client_ip, parse_forwarded_addr, AllowList, IpNet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // CIDR: Display parses back to the same network, which contains its address.
    if let Ok(net) = text.parse::<IpNet>() {
        let shown = net.to_string();
        let again: IpNet = shown.parse().expect("Display output must parse");
        assert_eq!(again, net, "{shown}");
        assert!(net.contains(net.addr()));
        assert!(net.prefix_len() <= if net.addr().is_ipv4() { 32 } else { 128 });
        let list = AllowList::new(vec![net]);
        assert!(list.allows(net.addr()));
    }
    for line in text.lines().take(64) {
        let _ = line.parse::<IpNet>();
        let _ = parse_forwarded_addr(line);
    }

    // XFF walk: first line X-Forwarded-For, second line X-Real-IP.
    let (xff, real) = text.split_once('\n').unwrap_or((&text, ""));
    let trusted: Vec<IpNet> = ["10.0.0.0/8", "::1", "fd00::/8", "127.0.0.1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let got = client_ip(peer, Some(xff), Some(real), &trusted);
    let from_header = xff
        .split(',')
        .filter_map(parse_forwarded_addr)
        .any(|ip| ip == got)
        || parse_forwarded_addr(real) == Some(got);
    assert!(got == peer || from_header, "{got} came from nowhere");
    let _ = client_ip(peer, Some(xff), None, &trusted);
    let _ = client_ip(peer, None, Some(real), &trusted);
    // An untrusted peer is never overridden, and nothing is trusted without a list.
    let outsider: IpAddr = "203.0.113.1".parse().unwrap();
    assert_eq!(
        client_ip(outsider, Some(xff), Some(real), &trusted),
        outsider
    );
    assert_eq!(client_ip(peer, Some(xff), Some(real), &[]), peer);
});
