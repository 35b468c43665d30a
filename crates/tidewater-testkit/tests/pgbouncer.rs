//! `PgBouncer` in front of a real PostgreSQL.

mod common;

use std::io;

use common::{connect, try_connect};
use tidewater_testkit::{PgBouncer, PgBouncerOptions, PgCluster, PoolMode};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The first column of the first row `sql` returns (simple protocol).
async fn first_value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap();
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or_default().to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql} returned no row"))
}

#[tokio::test]
async fn transaction_pooling_shares_one_server_connection() {
    let cluster = PgCluster::new().await.unwrap();
    let options = PgBouncerOptions {
        default_pool_size: 1,
        ..PgBouncerOptions::for_cluster(&cluster)
    };
    assert_eq!(options.pool_mode, PoolMode::Transaction);
    let bouncer = PgBouncer::start_with(options).await.unwrap();
    assert_ne!(bouncer.port(), cluster.port());

    let (first, _first_driver) = connect(&bouncer.url()).await;
    let (second, _second_driver) = connect(&bouncer.url()).await;
    assert_eq!(first_value(&first, "SELECT 40 + 2").await, "42");
    // With one server connection, both clients can only be served one
    // transaction at a time on it: in session mode the second would wait.
    let first_backend = first_value(&first, "SELECT pg_backend_pid()").await;
    let second_backend = first_value(&second, "SELECT pg_backend_pid()").await;
    assert_eq!(first_backend, second_backend);

    let (admin, _admin_driver) = connect(&bouncer.url_for("pgbouncer")).await;
    let config = admin.simple_query("SHOW CONFIG").await.unwrap();
    let pool_mode = config.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) if row.get(0) == Some("pool_mode") => row.get(1),
        _ => None,
    });
    assert_eq!(pool_mode, Some("transaction"));

    let wrong_password = bouncer.url().replace(":postgres@", ":wrong@");
    assert!(
        try_connect(&wrong_password).await.is_err(),
        "a wrong password is refused"
    );

    let (pid, log) = (bouncer.pid(), bouncer.log());
    assert!(log.contains("process up"), "{log}");
    drop(bouncer);
    assert!(!std::path::Path::new(&format!("/proc/{pid}/exe")).exists());
}

#[tokio::test]
async fn a_missing_program_names_the_package() {
    let options = PgBouncerOptions {
        program: "/nonexistent/pgbouncer".into(),
        ..PgBouncerOptions::new("127.0.0.1:5432".parse().unwrap(), "postgres", "postgres")
    };
    let error = PgBouncer::start_with(options).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    assert!(error.to_string().contains("`pgbouncer` package"), "{error}");
}
