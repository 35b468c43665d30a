//! TLS through rustls against a private MariaDB (started for this test on
//! a free port, with a certificate for `localhost` from a test CA; the
//! shared server has no TLS and is never reconfigured): with that CA the
//! session is encrypted; without it, or under another name, the
//! certificate does not verify and callers fail fast and for good.
#![cfg(feature = "rustls")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidewater::Pool;
use tidewater_mysql::{MySqlManager, MySqlOptions};
use tidewater_testkit::TestCertificates;

mod common;

/// A throw-away MariaDB with TLS in a temporary folder. It runs under a
/// shell that stops it when its standard input closes, so it goes with the
/// test process even if that dies without dropping it.
struct PrivateServer {
    port: u16,
    ca_file: PathBuf,
    guardian: Child,
    _dir: tempfile::TempDir,
}

impl PrivateServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write_certificates(dir.path());
        let data = dir.path().join("data");
        let installed = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .args(["--skip-test-db", "--user=root"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(installed.status.success(), "{installed:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let server = format!(
            "mariadbd --no-defaults --user=root --skip-grant-tables --skip-log-bin \
             --innodb-buffer-pool-size=16M --bind-address=127.0.0.1 --port={port} \
             --datadir={} --socket={} --pid-file={} --ssl-ca={} --ssl-cert={} --ssl-key={} \
             >{} 2>&1",
            data.display(),
            at("socket"),
            at("pid"),
            ca_file.display(),
            at("server.crt"),
            at("server.key"),
            at("server.log"),
        );
        let guardian = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{server} & server=$!; read _; kill $server; wait $server"
            ))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Self {
            port,
            ca_file,
            guardian,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + common::POLL_DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the private MariaDB did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self, host: &str) -> String {
        format!("mysql://root@{host}:{}/mysql?require_ssl=true", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.guardian.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.guardian.wait();
    }
}

/// A CA, and a certificate for `localhost` that it signed; returns the CA
/// file's path.
fn write_certificates(dir: &Path) -> PathBuf {
    let certificates = TestCertificates::for_localhost();
    std::fs::write(dir.join("server.crt"), certificates.server_certificate).unwrap();
    std::fs::write(dir.join("server.key"), certificates.server_key).unwrap();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, certificates.ca).unwrap();
    ca_file
}

fn pool(url: String, ssl_root_cert: Option<PathBuf>) -> Pool<MySqlManager> {
    let options = MySqlOptions {
        url,
        ssl_root_cert,
        ..MySqlOptions::default()
    };
    common::pool_sized(options, 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_server_certificate() {
    let server = PrivateServer::start();

    let trusted = pool(server.url("localhost"), Some(server.ca_file.clone()));
    let mut conn = trusted.get().await.expect("verified TLS connects");
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    let cipher = cipher.unwrap().1;
    assert!(!cipher.is_empty(), "the session is encrypted");
    drop(conn);

    // Without the test CA the certificate does not verify.
    common::refused(&pool(server.url("localhost"), None), "UnknownIssuer").await;
    // The CA is trusted, but the certificate is for localhost, not 127.0.0.1.
    let other_name = pool(server.url("127.0.0.1"), Some(server.ca_file.clone()));
    common::refused(&other_name, "not valid for name").await;
}
