//! TLS through rustls against a private cluster with a certificate from a
//! test CA: `sslmode=require` with that CA connects encrypted (and the
//! transaction-status tap works on the TLS stream); without it the
//! certificate does not verify and callers fail fast; a server without TLS
//! is refused rather than used in plain text.
#![cfg(feature = "rustls")]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_postgres::{PgManager, PgOptions, TransactionStatus};
use tidewater_testkit::{PgCluster, TestCertificates};

/// Writes a CA and a server certificate for `localhost` into the cluster's
/// data folder, turns TLS on, and returns the CA file's path.
async fn enable_tls(cluster: &PgCluster, scratch: &Path) -> PathBuf {
    let certificates = TestCertificates::for_localhost();
    let data = cluster.data_dir();
    let owner = std::fs::metadata(data).unwrap();
    for (name, pem, mode) in [
        ("server.crt", certificates.server_certificate, 0o644),
        ("server.key", certificates.server_key, 0o600),
    ] {
        let path = data.join(name);
        std::fs::write(&path, pem).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    }
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        cluster.execute(sql).await.unwrap();
    }
    // The reload is a signal: wait until new sessions see it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.execute("SHOW ssl").await.unwrap() != "on" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TLS did not turn on"
        );
    }
    let ca_file = scratch.join("ca.crt");
    std::fs::write(&ca_file, certificates.ca).unwrap();
    ca_file
}

fn pool(url: String, ssl_root_cert: Option<PathBuf>) -> Pool<PgManager> {
    let options = PgOptions {
        url,
        ssl_root_cert,
        ..PgOptions::default()
    };
    let config = PoolConfig {
        max_size: 2,
        acquire_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    Pool::new(PgManager::new(options).unwrap(), config).unwrap()
}

fn tls_url(cluster: &PgCluster) -> String {
    format!(
        "postgres://postgres:{}@localhost:{}/postgres?sslmode=require",
        PgCluster::PASSWORD,
        cluster.port()
    )
}

#[tokio::test]
async fn sslmode_require_connects_encrypted_with_a_verified_certificate() {
    let cluster = PgCluster::new().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let ca = enable_tls(&cluster, scratch.path()).await;
    let pool = pool(tls_url(&cluster), Some(ca));
    let conn = pool.get().await.unwrap();
    let encrypted: bool = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);
    conn.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        conn.transaction_status(),
        TransactionStatus::InTransaction,
        "the tap reads the TLS stream"
    );
    drop(conn);
    assert_eq!(
        pool.get().await.unwrap().transaction_status(),
        TransactionStatus::Idle
    );
}

#[tokio::test]
async fn an_unverifiable_certificate_fails_fast() {
    let cluster = PgCluster::new().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    enable_tls(&cluster, scratch.path()).await;
    let pool = pool(tls_url(&cluster), None); // the test CA is not trusted
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[tokio::test]
async fn a_server_without_tls_is_not_used_in_plain_text() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool(tls_url(&cluster), None);
    let error = pool.get().await.unwrap_err();
    assert!(
        matches!(error, Error::Connect(ref cause) if cause.class() == ErrorClass::Permanent),
        "{error}"
    );
    assert!(
        error.to_string().contains("does not support TLS"),
        "{error}"
    );
}
