//! `PgCluster` against a real PostgreSQL: each test breaks a server of its
//! own.

mod common;

use std::io;

use common::{bounded, connect, pg_io_kind, select_one, sqlstate, stall, try_connect};
use tidewater_testkit::{PgCluster, Shutdown};
use tokio_postgres::error::SqlState;

async fn cluster() -> PgCluster {
    PgCluster::new().await.expect("a private PostgreSQL starts")
}

/// How many client sessions the server has, counting the `psql` that asks.
async fn client_sessions(cluster: &PgCluster) -> String {
    cluster
        .execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_roles_databases_and_refuses_wrong_passwords_then_cleans_up() {
    let cluster = cluster().await;
    let (client, _driver) = connect(&cluster.url()).await;
    let row = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(cluster.execute("SELECT 1, 'a'").await.unwrap(), "1|a");
    assert!(cluster.execute("SELECT * FROM missing").await.is_err());

    cluster
        .create_role("app", "s3cret:/@", Some(1))
        .await
        .unwrap();
    cluster.create_database("shop").await.unwrap();
    let app_url = cluster.url_for("app", "s3cret:/@", "shop");
    let (app, _app_driver) = connect(&app_url).await;
    let row = app
        .query_one("SELECT current_user, current_database()", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app".to_owned(), "shop".to_owned())
    );
    let over_limit = try_connect(&app_url).await.unwrap_err();
    assert_eq!(sqlstate(&over_limit), Some(&SqlState::TOO_MANY_CONNECTIONS));

    let wrong = try_connect(&cluster.url_for("postgres", "wrong", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&wrong), Some(&SqlState::INVALID_PASSWORD));

    let (data_dir, socket_dir, addr) = (
        cluster.data_dir().to_owned(),
        cluster.socket_dir().to_owned(),
        cluster.addr(),
    );
    assert!(data_dir.join("PG_VERSION").exists());
    drop(cluster);
    assert!(!socket_dir.exists(), "the folder is removed on drop");
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn restart_closes_connections_and_accepts_new_ones() {
    let cluster = cluster().await;
    for mode in [Shutdown::Fast, Shutdown::Immediate] {
        let (client, driver) = connect(&cluster.url()).await;
        select_one(&client).await.unwrap();
        let old_pid = cluster.postmaster_pid();
        cluster.restart(mode).await.unwrap();
        assert_ne!(
            cluster.postmaster_pid(),
            old_pid,
            "{mode:?}: a new postmaster"
        );
        assert!(
            select_one(&client).await.is_err(),
            "{mode:?}: old connection is gone"
        );
        // The old connection's driver task ends: `bounded` fails if it does
        // not (how it ends, an error or a clean close, depends on what the
        // server managed to send before it went).
        bounded("the old connection ends", driver)
            .await
            .unwrap()
            .ok();
        let (client, _driver) = connect(&cluster.url()).await;
        select_one(&client).await.unwrap();
    }
    assert!(
        cluster
            .log()
            .contains("received immediate shutdown request")
    );
}

#[tokio::test]
async fn kill_crashes_the_server_and_start_recovers_it() {
    let cluster = cluster().await;
    let (client, driver) = connect(&cluster.url()).await;
    client
        .batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();

    cluster.kill().await.unwrap();
    assert_eq!(cluster.postmaster_pid(), None);
    // The orphaned backend exits once it notices, closing the connection.
    bounded("the orphaned backend's connection ends", driver)
        .await
        .unwrap()
        .ok();
    assert!(select_one(&client).await.is_err());
    let down = try_connect(&cluster.url()).await.unwrap_err();
    assert_eq!(pg_io_kind(&down), Some(io::ErrorKind::ConnectionRefused));

    cluster.start().await.unwrap();
    assert!(cluster.log().contains("automatic recovery in progress"));
    let (client, _driver) = connect(&cluster.url()).await;
    let row = client.query_one("SELECT n FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);

    // A second crash right after the first works the same.
    cluster.kill().await.unwrap();
    cluster.start().await.unwrap();
    let (client, _driver) = connect(&cluster.url()).await;
    select_one(&client).await.unwrap();
}

#[tokio::test]
async fn pause_freezes_queries_and_connects_until_resume() {
    let cluster = cluster().await;
    let (client, _driver) = connect(&cluster.url()).await;
    select_one(&client).await.unwrap();

    cluster.pause().await.unwrap();
    let stalled = stall(client, &cluster.url(), "paused server").await;
    cluster.resume().await.unwrap();
    stalled.complete().await;
}

#[tokio::test]
async fn terminate_backends_ends_every_client_session() {
    let cluster = cluster().await;
    let (first, first_driver) = connect(&cluster.url()).await;
    let (second, _second_driver) = connect(&cluster.url()).await;
    assert_eq!(client_sessions(&cluster).await, "3");

    assert_eq!(cluster.terminate_backends().await.unwrap(), 2);
    assert_eq!(client_sessions(&cluster).await, "1", "only psql's own");
    let closed = bounded("the terminated connection ends", first_driver)
        .await
        .unwrap();
    if let Err(error) = closed {
        assert_eq!(sqlstate(&error), Some(&SqlState::ADMIN_SHUTDOWN));
    }
    assert!(select_one(&first).await.is_err());
    assert!(select_one(&second).await.is_err());
    let (client, _driver) = connect(&cluster.url()).await;
    select_one(&client).await.unwrap();
}

#[tokio::test]
async fn max_connections_refuses_the_connection_past_the_limit() {
    let cluster = cluster().await;
    assert!(
        cluster.set_max_connections(3).await.is_err(),
        "must stay above the reserved 3"
    );
    cluster.set_max_connections(5).await.unwrap();
    assert_eq!(cluster.execute("SHOW max_connections").await.unwrap(), "5");

    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(connect(&cluster.url()).await);
    }
    let refused = try_connect(&cluster.url()).await.unwrap_err();
    assert_eq!(sqlstate(&refused), Some(&SqlState::TOO_MANY_CONNECTIONS));

    open.pop();
    let (client, _driver) = bounded("a slot frees up", async {
        loop {
            match try_connect(&cluster.url()).await {
                Ok(connected) => break connected,
                // The closed session may take a moment to leave its slot.
                Err(error) if sqlstate(&error) == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await;
    select_one(&client).await.unwrap();
}
