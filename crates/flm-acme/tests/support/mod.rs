//! Real `pebble` + `pebble-challtestsrv` on loopback for the integration tests.
//!
//! Every test starts its own pair (ephemeral ports, own temp dir), so tests are
//! independent and may run in parallel. Children are killed on `Drop`.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a failed set-up step must fail the test loudly"
)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use flm_tls::CertBundle;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tempfile::TempDir;

/// Bound on pebble / challtestsrv start-up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds an executable, failing the test with install instructions when absent.
fn find_binary(name: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.push(PathBuf::from("/usr/local/bin"));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed, and the ACME tests need the real ACME test server. \
         Install the Debian/Ubuntu package `pebble` (it ships both `pebble` and \
         `pebble-challtestsrv`): `sudo apt-get install -y pebble`"
    );
}

/// A free TCP port on 127.0.0.1 (bound then released; the tiny reuse race is fine for
/// tests).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral TCP port")
        .port()
}

/// A port free for both UDP and TCP (DNS listens on both).
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A self-made CA and a `localhost`/`127.0.0.1` certificate for pebble's HTTPS.
fn pebble_tls(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "flm-acme test root for pebble HTTPS",
    );
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("self-sign ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &*ca)
        .expect("sign leaf");
    let cert = dir.join("pebble-https.crt");
    let key = dir.join("pebble-https.key");
    std::fs::write(&cert, leaf.pem()).expect("write pebble cert");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write pebble key");
    (cert, key, ca.pem().into_bytes())
}

/// A running pebble with its challtestsrv.
pub struct Pebble {
    /// ACME directory URL.
    pub directory_url: String,
    /// Pebble's management API (`/roots/0`).
    pub management_url: String,
    /// Trust root for pebble's own HTTPS (goes into `AcmeConfig::root_ca_pem`).
    pub https_root_pem: Vec<u8>,
    /// challtestsrv management API (`/set-txt`, `/clear-txt`).
    pub challtestsrv_url: String,
    /// Temp dir with the config and logs; also a handy place for test files.
    pub dir: TempDir,
    children: Vec<(&'static str, Child)>,
    pebble_cmd: Option<(PathBuf, PathBuf, u16)>,
}

impl Pebble {
    /// Starts challtestsrv (DNS answering every A query with 127.0.0.1) and pebble,
    /// validating HTTP-01 on `http01_port`.
    pub async fn start(http01_port: u16) -> Pebble {
        Self::start_with_blocklist(http01_port, &[]).await
    }

    /// [`Pebble::start`], with pebble refusing to issue for `blocked` domains.
    pub async fn start_with_blocklist(http01_port: u16, blocked: &[&str]) -> Pebble {
        let pebble_bin = find_binary("pebble");
        let cts_bin = find_binary("pebble-challtestsrv");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key, https_root_pem) = pebble_tls(dir.path());

        let dns_port = free_dns_port();
        let cts_mgmt = free_tcp_port();
        let listen = free_tcp_port();
        let mgmt = free_tcp_port();
        let tls_port = free_tcp_port();

        let mut env = Pebble {
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt}"),
            https_root_pem,
            challtestsrv_url: format!("http://127.0.0.1:{cts_mgmt}"),
            dir,
            children: Vec::new(),
            pebble_cmd: None,
        };

        let cts = Command::new(&cts_bin)
            .args(["-management", &format!("127.0.0.1:{cts_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log_file(env.dir.path(), "challtestsrv.log"))
            .stderr(log_file(env.dir.path(), "challtestsrv.err"))
            .spawn()
            .expect("spawn pebble-challtestsrv");
        env.children.push(("pebble-challtestsrv", cts));
        env.wait_tcp(cts_mgmt, "pebble-challtestsrv").await;

        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http01_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": blocked
            }
        });
        let config_path = env.dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble config");
        env.pebble_cmd = Some((pebble_bin, config_path, dns_port));
        env.spawn_pebble();
        env.wait_directory().await;
        env
    }

    fn spawn_pebble(&mut self) {
        let (bin, config_path, dns_port) = self.pebble_cmd.clone().expect("pebble command");
        let pebble = Command::new(&bin)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            // Deterministic: every order gets fresh authorizations.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log_file(self.dir.path(), "pebble.log"))
            .stderr(log_file(self.dir.path(), "pebble.err"))
            .spawn()
            .expect("spawn pebble");
        self.children.push(("pebble", pebble));
    }

    /// Restarts pebble on the same ports. Pebble keeps no state, so every account
    /// registered before is unknown afterwards (like a CA that lost or deactivated it).
    pub async fn restart_pebble(&mut self) {
        if let Some(pos) = self.children.iter().position(|(n, _)| *n == "pebble") {
            let (_, mut child) = self.children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn_pebble();
        self.wait_directory().await;
    }

    fn check_alive(&mut self) {
        let mut dead = None;
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                dead = Some((*name, status));
            }
        }
        if let Some((name, status)) = dead {
            panic!("{name} exited early with {status}; logs:\n{}", self.logs());
        }
    }

    fn logs_of(&self, name: &str) -> String {
        let base = if name == "pebble" {
            "pebble"
        } else {
            "challtestsrv"
        };
        let mut out = String::new();
        for ext in ["log", "err"] {
            let mut s = String::new();
            if let Ok(mut f) = std::fs::File::open(self.dir.path().join(format!("{base}.{ext}"))) {
                let _ = f.read_to_string(&mut s);
            }
            out.push_str(&s);
        }
        out
    }

    /// Both servers' logs, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "--- pebble ---\n{}\n--- challtestsrv ---\n{}",
            self.logs_of("pebble"),
            self.logs_of("challtestsrv")
        )
    }

    async fn wait_tcp(&mut self, port: u16, what: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive();
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on {port} within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_directory(&mut self) {
        let client = self.client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive();
            if let Ok(r) = client.get(&self.directory_url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not serve {} within {START_TIMEOUT:?}; logs:\n{}",
                self.directory_url,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client trusting pebble's HTTPS.
    pub fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
        for c in reqwest::Certificate::from_pem_bundle(&self.https_root_pem).expect("root pem") {
            b = b.add_root_certificate(c);
        }
        b.build().expect("client")
    }

    /// The root of pebble's issuance chain (management API `/roots/0`).
    pub async fn issuer_root_pem(&self) -> String {
        let url = format!("{}/roots/0", self.management_url);
        let rsp = self.client().get(&url).send().await.expect("GET /roots/0");
        assert!(rsp.status().is_success(), "GET {url}: {}", rsp.status());
        rsp.text().await.expect("root body")
    }

    /// Asserts that `bundle`'s chain validates up to pebble's issuing root for `name`.
    pub async fn assert_chain_valid_for(&self, bundle: &CertBundle, name: &str) {
        let root_pem = self.issuer_root_pem().await;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(c.expect("root pem")).expect("add root");
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let chain = bundle.chain_der().expect("chain");
        assert!(
            chain.len() >= 2,
            "chain has the leaf and pebble's intermediate"
        );
        let server_name = ServerName::try_from(name.to_owned()).expect("server name");
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("chain does not validate for `{name}`: {e}"));
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"))
}

/// Serves `router` on an ephemeral loopback port; returns the port. The server task
/// ends with the test's runtime.
pub async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http-01 listener");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    port
}

/// Writes an executable shell script.
#[cfg(unix)]
pub fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}
