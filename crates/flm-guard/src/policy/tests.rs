use super::*;

fn parse(s: &str) -> Result<SecurityPolicy, PolicyErrors> {
    SecurityPolicy::from_json_str(s)
}

fn fields(s: &str) -> Vec<String> {
    match parse(s) {
        Ok(_) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn seeded_and_spec_example_policies_parse() {
    let seeded =
        parse(r#"{"ip_whitelist":[],"cors":{"allowed_origins":[]},"rate_limit":{}}"#).unwrap();
    assert_eq!(seeded, SecurityPolicy::default());
    assert!(parse("{}").is_ok());
    let spec = parse(
        r#"{
        "ip_whitelist": ["127.0.0.1", "192.168.0.0/16"],
        "cors": { "allowed_origins": ["https://example.com"] },
        "rate_limit": { "rpm": 60, "burst": 10 },
        "ip_rate_limit": { "enabled": true, "rpm": 1000 },
        "ip_blocklist": { "enabled": true, "max_failures": 5, "block_duration_minutes": 30, "permanent_block_threshold": 20 },
        "intrusion_detection": { "enabled": true, "score_threshold": 100, "warning_threshold": 50 },
        "anomaly_detection": { "enabled": true, "request_rate_threshold": 100, "auto_block": true },
        "resource_protection": { "enabled": true, "cpu_threshold": 90, "memory_threshold": 90 }
    }"#,
    )
    .unwrap();
    assert_eq!(spec.ip_whitelist.len(), 2);
    assert_eq!(spec.rate_limit, Some(KeyRateLimit { rpm: 60, burst: 10 }));
    assert_eq!(spec.ip_rate_limit.enabled, Some(true));
    assert_eq!(spec.ip_rate_limit.burst, 1000);
}

#[test]
fn field_errors_table() {
    let cases: &[(&str, &[&str])] = &[
        (r#"[]"#, &["$"]),
        (r#"not json"#, &["$"]),
        (r#"{"ip_whitelist":"10.0.0.1"}"#, &["ip_whitelist"]),
        (
            r#"{"ip_whitelist":["10.0.0.1","bad",""," ",7,"10.0.0.0/33"]}"#,
            &[
                "ip_whitelist[1]",
                "ip_whitelist[2]",
                "ip_whitelist[3]",
                "ip_whitelist[4]",
                "ip_whitelist[5]",
            ],
        ),
        (r#"{"cors":[]}"#, &["cors"]),
        (
            r#"{"cors":{"allowed_origins":["ftp//x", "https://a", "https://example.com/path", "https://exa mple.com", "http://-x.com"]}}"#,
            &[
                "cors.allowed_origins[0]",
                "cors.allowed_origins[1]",
                "cors.allowed_origins[2]",
                "cors.allowed_origins[3]",
                "cors.allowed_origins[4]",
            ],
        ),
        (
            r#"{"cors":{"allowed_methods":["GET","NOT A METHOD"],"allowed_headers":[1]}}"#,
            &["cors.allowed_methods[1]", "cors.allowed_headers[0]"],
        ),
        (r#"{"rate_limit":{"burst":5}}"#, &["rate_limit.rpm"]),
        (
            r#"{"rate_limit":{"rpm":60,"window":1}}"#,
            &["rate_limit.window"],
        ),
        (r#"{"rate_limit":{"rpm":-1}}"#, &["rate_limit.rpm"]),
        (r#"{"rate_limit":{"rpm":1.5}}"#, &["rate_limit.rpm"]),
        (r#"{"rate_limit":{"rpm":"60"}}"#, &["rate_limit.rpm"]),
        (
            r#"{"rate_limit":{"rpm":99999999999999999999}}"#,
            &["rate_limit.rpm"],
        ),
        (
            r#"{"rate_limit":{"rpm":18446744073709551615}}"#,
            &["rate_limit.rpm"],
        ),
        (r#"{"rate_limit":[]}"#, &["rate_limit"]),
        (
            r#"{"ip_rate_limit":{"enabled":"yes","rpm":-5}}"#,
            &["ip_rate_limit.enabled", "ip_rate_limit.rpm"],
        ),
        (
            r#"{"ip_blocklist":{"max_failure":3}}"#,
            &["ip_blocklist.max_failure"],
        ),
        (
            r#"{"ip_blocklist":{"max_failures":0,"block_duration_minutes":0}}"#,
            &[
                "ip_blocklist.max_failures",
                "ip_blocklist.block_duration_minutes",
            ],
        ),
        (
            r#"{"ip_blocklist":{"max_failures":10,"permanent_block_threshold":5}}"#,
            &["ip_blocklist.permanent_block_threshold"],
        ),
        (
            r#"{"intrusion_detection":{"score_threshold":50,"warning_threshold":50}}"#,
            &["intrusion_detection.warning_threshold"],
        ),
        (
            r#"{"anomaly_detection":{"request_rate_threshold":0,"auto_block":1}}"#,
            &[
                "anomaly_detection.request_rate_threshold",
                "anomaly_detection.auto_block",
            ],
        ),
        (
            r#"{"resource_protection":{"cpu_threshold":0,"memory_threshold":101}}"#,
            &[
                "resource_protection.cpu_threshold",
                "resource_protection.memory_threshold",
            ],
        ),
        (r#"{"acme_domain":"localhost"}"#, &["acme_domain"]),
        (r#"{"acme_domain":"https://example.com"}"#, &["acme_domain"]),
        (r#"{"acme_domain":"*.example.com"}"#, &["acme_domain"]),
        (r#"{"acme_domain":5}"#, &["acme_domain"]),
        (
            r#"{"trusted_proxy_ips":["10.0.0.1","proxy.local"]}"#,
            &["trusted_proxy_ips[1]"],
        ),
    ];
    for (doc, want) in cases {
        assert_eq!(fields(doc), want.to_vec(), "{doc}");
    }
}

#[test]
fn collects_all_errors_at_once() {
    let e = parse(r#"{"ip_whitelist":["x"],"rate_limit":{"rpm":-1,"extra":1},"resource_protection":{"cpu_threshold":200}}"#)
        .unwrap_err();
    assert_eq!(e.errors().len(), 4);
    let text = e.to_string();
    assert!(text.starts_with("invalid security policy: "), "{text}");
    assert!(
        text.contains("`rate_limit.rpm`: must be at least 0"),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json[0]["field"], "ip_whitelist[0]");
    assert_eq!(json[1]["field"], "rate_limit.extra");
}

#[test]
fn valid_values_and_defaults() {
    let p = parse(
        r#"{
        "ip_whitelist": ["10.1.2.3/8", "::1", "10.0.0.0/8", null],
        "cors": {"allowed_origins": ["*", "EXAMPLE.com", "https://Example.com/", "http://localhost:5173", "tauri://localhost",
                 "http://127.0.0.1:8780", "http://[::1]:3000", "app.example.co.jp:8443"],
                 "allowed_methods": ["get", "post"], "allowed_headers": ["Authorization", "*"], "max_age": 600},
        "rate_limit": {"rpm": 120},
        "ip_rate_limit": {"rpm": 100, "burst": 500},
        "acme_domain": "API.Example.com",
        "trusted_proxy_ips": ["172.16.0.0/12"],
        "future_feature": {"x": 1}
    }"#,
    );
    // `null` inside a list is an error, everything else is valid.
    let e = p.unwrap_err();
    assert_eq!(e.errors().len(), 1);
    assert_eq!(e.errors()[0].field, "ip_whitelist[3]");

    let p = parse(
        r#"{
        "ip_whitelist": ["10.1.2.3/8", "::1", "10.0.0.0/8"],
        "cors": {"allowed_origins": ["*", "EXAMPLE.com", "https://Example.com/", "http://localhost:5173", "tauri://localhost",
                 "http://127.0.0.1:8780", "http://[::1]:3000", "app.example.co.jp:8443"],
                 "allowed_methods": ["get", "post"], "allowed_headers": ["Authorization", "*"], "max_age": 600},
        "rate_limit": {"rpm": 120},
        "ip_rate_limit": {"rpm": 100, "burst": 500},
        "acme_domain": "API.Example.com",
        "trusted_proxy_ips": ["172.16.0.0/12"],
        "future_feature": {"x": 1}
    }"#,
    )
    .unwrap();
    let wl: Vec<String> = p.ip_whitelist.iter().map(ToString::to_string).collect();
    assert_eq!(wl, vec!["10.0.0.0/8", "::1"], "canonical and deduplicated");
    assert_eq!(
        p.cors.allowed_origins,
        vec![
            "*",
            "example.com",
            "https://example.com",
            "http://localhost:5173",
            "tauri://localhost",
            "http://127.0.0.1:8780",
            "http://[::1]:3000",
            "app.example.co.jp:8443"
        ]
    );
    assert_eq!(
        p.cors.allowed_methods,
        Some(vec!["GET".to_owned(), "POST".to_owned()])
    );
    assert_eq!(p.cors.extra.get("max_age"), Some(&serde_json::json!(600)));
    assert_eq!(
        p.rate_limit,
        Some(KeyRateLimit {
            rpm: 120,
            burst: 120
        }),
        "burst defaults to rpm"
    );
    assert_eq!(p.ip_rate_limit.burst, 100, "burst clamped to rpm");
    assert_eq!(p.acme_domain.as_deref(), Some("api.example.com"));
    assert!(p.extra.contains_key("future_feature"));
    assert_eq!(p.ip_blocklist, BlocklistPolicy::default());
}

#[test]
fn rpm_zero_disables_key_limit() {
    assert_eq!(
        parse(r#"{"rate_limit":{"rpm":0}}"#).unwrap().rate_limit,
        None
    );
    assert_eq!(parse(r#"{"rate_limit":null}"#).unwrap().rate_limit, None);
}

#[test]
fn normalised_round_trip() {
    let docs = [
        "{}",
        r#"{"ip_whitelist":["192.168.1.1/24"],"rate_limit":{"rpm":60},"ip_blocklist":{"enabled":false},"x":[1,2]}"#,
        r#"{"cors":{"allowed_origins":["https://A.example.com/"],"allowed_methods":["get"],"foo":true},"acme_domain":"a.example.com","trusted_proxy_ips":["::1"],"anomaly_detection":{"auto_block":false}}"#,
    ];
    for doc in docs {
        let p = parse(doc).unwrap();
        let text = p.to_json_string();
        let back = parse(&text).unwrap();
        assert_eq!(back, p, "{doc} -> {text}");
        assert_eq!(back.to_json_string(), text, "normal form is stable");
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
    }
    let v = parse(r#"{"ip_blocklist":{"enabled":false}}"#)
        .unwrap()
        .to_value();
    assert_eq!(v["ip_blocklist"]["enabled"], false);
    assert_eq!(v["ip_blocklist"]["max_failures"], 5);
    assert!(
        v["intrusion_detection"].get("enabled").is_none(),
        "implicit enabled stays implicit"
    );
    assert_eq!(v["rate_limit"], serde_json::json!({}));
    assert_eq!(v["ip_rate_limit"]["rpm"], 1000);
}

#[test]
fn exposure_profiles() {
    let p = parse(r#"{"rate_limit":{"rpm":60,"burst":10},"ip_whitelist":["10.0.0.0/8"]}"#).unwrap();
    let local = p.effective(false);
    assert_eq!(local.key_rate_limit, Some(Limit::new(60, 10)));
    assert_eq!(local.allow_list.entries().len(), 1);
    assert!(local.ip_rate_limit.is_none());
    assert!(local.blocklist.is_none() && local.intrusion.is_none());
    assert!(local.anomaly.is_none() && local.resources.is_none());

    let exposed = p.effective(true);
    assert_eq!(exposed.key_rate_limit, Some(Limit::new(60, 10)));
    assert_eq!(exposed.ip_rate_limit, Some(Limit::new(1000, 1000)));
    assert_eq!(exposed.blocklist, Some(BlocklistConfig::default()));
    assert_eq!(exposed.intrusion, Some(IntrusionConfig::default()));
    assert_eq!(exposed.anomaly.map(|a| a.request_rate_threshold), Some(100));
    assert_eq!(exposed.resources.map(|r| r.cpu_pct), Some(90.0));

    // Explicit switches win in both directions.
    let p = parse(r#"{"intrusion_detection":{"enabled":true},"ip_blocklist":{"enabled":false},"ip_rate_limit":{"rpm":0}}"#).unwrap();
    assert!(p.effective(false).intrusion.is_some());
    assert!(p.effective(true).blocklist.is_none());
    assert!(p.effective(true).ip_rate_limit.is_none(), "rpm 0 disables");
    let p = parse(r#"{"anomaly_detection":{"auto_block":false},"intrusion_detection":{"score_threshold":300,"warning_threshold":100}}"#).unwrap();
    let a = p.effective(true).anomaly.unwrap();
    assert!(!a.auto_block);
    assert_eq!((a.warning_threshold, a.block_threshold), (100, 300));
    let bl = parse(r#"{"ip_blocklist":{"max_failures":3,"block_duration_minutes":10,"permanent_block_threshold":0}}"#)
        .unwrap()
        .effective(true)
        .blocklist
        .unwrap();
    assert_eq!(bl.max_failures, 3);
    assert_eq!(bl.long_block_failures, 6);
    assert_eq!(bl.block_duration_ms, 10 * 60_000);
    assert_eq!(bl.permanent_threshold, 0);
}

#[test]
fn domains() {
    for d in [
        "example.com",
        "a.b.c.example.co.uk",
        "xn--bcher-kva.example",
        "a-b.example.com",
        "1.example.com",
    ] {
        assert!(is_valid_domain(d), "{d}");
    }
    let long_label = format!("{}.com", "a".repeat(64));
    let too_long = format!("{}.com", ["a"; 130].join("."));
    for d in [
        "",
        "localhost",
        "-a.com",
        "a-.com",
        "a..com",
        ".com",
        "a.com.",
        "1.2.3.4",
        "a_b.com",
        &long_label,
        &too_long,
    ] {
        assert!(!is_valid_domain(d), "{d}");
    }
}

#[test]
fn media_fetch_section() {
    let p = SecurityPolicy::from_json_str("{}").unwrap();
    assert_eq!(p.media_fetch, MediaFetchPolicy::default());
    assert!(p.to_value().get("media_fetch").is_none());
    let p = SecurityPolicy::from_json_str(
        r#"{"media_fetch":{"allow_private":true,"allowed_cidrs":["127.0.0.1","10.0.0.0/8"],"max_redirects":0}}"#,
    )
    .unwrap();
    assert!(p.media_fetch.allow_private);
    assert_eq!(p.media_fetch.allowed_cidrs.len(), 2);
    assert_eq!(p.media_fetch.max_redirects, 0);
    let again = SecurityPolicy::from_value(&p.to_value()).unwrap();
    assert_eq!(again, p);
    let e = SecurityPolicy::from_json_str(
        r#"{"media_fetch":{"allowed_cidrs":["nope"],"timeout_secs":0,"allow_privat":true}}"#,
    )
    .unwrap_err();
    let fields: Vec<&str> = e.0.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"media_fetch.allowed_cidrs[0]"),
        "{fields:?}"
    );
    assert!(fields.contains(&"media_fetch.timeout_secs"), "{fields:?}");
    assert!(fields.contains(&"media_fetch.allow_privat"), "{fields:?}");
}
