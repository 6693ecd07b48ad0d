//! Enforces the layering rules of docs/ARCHITECTURE.md from `cargo metadata`:
//! `flm-core` depends on no I/O driver and nothing of ours; adapters depend on
//! `flm-core` only; only composition roots depend on adapters.
#![allow(clippy::expect_used)] // test code: a failed expectation is the failure

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

fn workspace_deps() -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut map = BTreeMap::new();
    for p in v["packages"].as_array().expect("packages") {
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or_default().to_owned(),
                    d["kind"].as_str().map(str::to_owned),
                )
            })
            .collect();
        map.insert(p["name"].as_str().unwrap_or_default().to_owned(), deps);
    }
    map
}

fn normal(deps: &[(String, Option<String>)]) -> Vec<&str> {
    deps.iter()
        .filter(|(_, kind)| kind.is_none())
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn core_is_pure() {
    let all = workspace_deps();
    let core = normal(&all["flm-core"]);
    for banned in [
        "sqlx", "reqwest", "axum", "hyper", "tokio", "rusqlite", "tower", "rustls",
    ] {
        assert!(
            !core.contains(&banned),
            "flm-core must not depend on {banned}"
        );
    }
    assert!(
        core.iter().all(|d| !d.starts_with("flm-")),
        "flm-core depends on nothing of ours: {core:?}"
    );
}

#[test]
fn adapters_depend_on_core_only() {
    let all = workspace_deps();
    for adapter in ["flm-store", "flm-engines"] {
        let ours: Vec<&str> = normal(&all[adapter])
            .into_iter()
            .filter(|d| d.starts_with("flm-"))
            .collect();
        assert_eq!(ours, ["flm-core"], "{adapter} may depend on flm-core only");
    }
    let testkit: Vec<&str> = normal(&all["flm-testkit"])
        .into_iter()
        .filter(|d| d.starts_with("flm-"))
        .collect();
    assert!(
        testkit.is_empty(),
        "flm-testkit emulates engines without our code: {testkit:?}"
    );
}

#[test]
fn libraries_depend_only_on_what_they_need() {
    let all = workspace_deps();
    let ours = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = normal(&all[name])
            .into_iter()
            .filter(|d| d.starts_with("flm-"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    // The proxy gets its engines and stores as `Arc<dyn Trait>` from a composition
    // root; besides the core it may use only the I/O-free or certificate libraries.
    for dep in ours("flm-proxy") {
        assert!(
            ["flm-core", "flm-tls", "flm-acme", "flm-guard"].contains(&dep.as_str()),
            "flm-proxy must not depend on {dep}"
        );
    }
    // Pure security logic: no I/O crates at all, nothing of ours.
    assert!(ours("flm-guard").is_empty(), "flm-guard");
    let guard = normal(&all["flm-guard"]);
    for banned in ["tokio", "sqlx", "reqwest", "axum", "hyper"] {
        assert!(
            !guard.contains(&banned),
            "flm-guard must not depend on {banned}"
        );
    }
    assert!(ours("flm-tls").is_empty(), "flm-tls");
    assert_eq!(ours("flm-acme"), ["flm-tls"], "flm-acme");
}

#[test]
fn only_composition_roots_use_adapters() {
    let all = workspace_deps();
    let roots = ["flm-cli"];
    for (name, deps) in &all {
        if roots.contains(&name.as_str()) {
            continue;
        }
        for adapter in ["flm-store", "flm-engines"] {
            assert!(
                !normal(deps).contains(&adapter),
                "{name} must not depend on {adapter}: only composition roots ({roots:?}) build adapters"
            );
        }
    }
}
