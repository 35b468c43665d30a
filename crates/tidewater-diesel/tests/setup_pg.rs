//! Setup SQL, the setup callback and rotating credentials, on a private
//! PostgreSQL cluster shared by the tests of this binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{Error, ErrorClass, Manager, Pool, PoolConfig};
use tidewater_diesel::{DieselError, PgManager};
use tidewater_testkit::PgCluster;
use tokio::sync::OnceCell;

mod common;

static CLUSTER: OnceCell<PgCluster> = OnceCell::const_new();

async fn cluster() -> &'static PgCluster {
    CLUSTER
        .get_or_init(|| async { PgCluster::new().await.expect("a private cluster") })
        .await
}

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn text<C: AsyncConnection<Backend = diesel::pg::Pg>>(conn: &mut C, sql: &str) -> String {
    let row: Setting = diesel::sql_query(format!("SELECT ({sql})::text AS value"))
        .get_result(conn)
        .await
        .unwrap();
    row.value
}

fn superuser_url(cluster: &PgCluster) -> String {
    cluster.url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, "postgres")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sql_and_callback_run_on_every_new_connection() {
    let cluster = cluster().await;
    let manager = PgManager::new(superuser_url(cluster))
        .unwrap()
        .with_setup_sql([
            "SET search_path TO tidewater_setup, public",
            "SET work_mem = '7MB'",
        ])
        .with_setup(|conn| {
            Box::pin(async move {
                diesel::sql_query("SET application_name = 'from-setup'")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        });
    let pool = Pool::new(manager, config(2)).unwrap();
    // Two connections at once: both new.
    let mut first = pool.get().await.unwrap();
    let mut second = pool.get().await.unwrap();
    assert_ne!(first.id(), second.id());
    for conn in [&mut first, &mut second] {
        assert_eq!(
            text(&mut **conn, "current_setting('search_path')").await,
            "tidewater_setup, public"
        );
        assert_eq!(
            text(&mut **conn, "current_setting('work_mem')").await,
            "7MB"
        );
        assert_eq!(
            text(&mut **conn, "current_setting('application_name')").await,
            "from-setup"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_reset_keeps_the_setup_and_prepared_statements() {
    let cluster = cluster().await;
    let manager = PgManager::new(superuser_url(cluster))
        .unwrap()
        .with_session_reset(tidewater_diesel::SessionReset::Full)
        .with_setup_sql(["SET search_path TO tidewater_setup, public"]);
    let pool = Pool::new(manager, config(1)).unwrap();
    let mut conn = pool.get().await.unwrap();
    // A prepared statement in diesel-async's cache, and session state.
    assert_eq!(text(&mut *conn, "'x'").await, "x");
    conn.batch_execute("SET search_path TO elsewhere; SET work_mem = '9MB'")
        .await
        .unwrap();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        text(&mut *conn, "current_setting('work_mem')").await,
        "4MB",
        "reset"
    );
    assert_eq!(
        text(&mut *conn, "current_setting('search_path')").await,
        "tidewater_setup, public",
        "setup again"
    );
    assert_eq!(
        text(&mut *conn, "current_setting('TimeZone')").await,
        "UTC",
        "diesel's settings again"
    );
    assert_eq!(
        text(&mut *conn, "'x'").await,
        "x",
        "the cached statement still works"
    );
    assert_eq!(pool.stats().opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_setup_sql_is_a_permanent_connect_error_naming_the_cause() {
    let cluster = cluster().await;
    let manager = PgManager::new(superuser_url(cluster))
        .unwrap()
        .with_setup_sql(["SET no_such_setting TO 1"]);
    let error = manager.connect().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    assert!(error.to_string().contains("no_such_setting"), "{error}");
    let pool = Pool::new(manager, config(1)).unwrap();
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_typed_and_say_which() {
    let cluster = cluster().await;
    let bad_password =
        PgManager::new(cluster.url_for(PgCluster::SUPERUSER, "nope", "postgres")).unwrap();
    let error = bad_password.connect().await.unwrap_err();
    assert!(matches!(error, DieselError::Postgres(_)), "{error:?}");
    assert_eq!(error.sqlstate().as_deref(), Some("28P01"));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("bad password"), "{error}");
    assert!(!error.to_string().contains("nope"), "{error}");
    let unknown =
        PgManager::new(cluster.url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, "no_such_db"))
            .unwrap();
    let error = unknown.connect().await.unwrap_err();
    assert_eq!(error.sqlstate().as_deref(), Some("3D000"));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("unknown database"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_credentials_are_fetched_for_each_new_connection() {
    let cluster = cluster().await;
    cluster
        .create_role("rotating", "secret-v1", None)
        .await
        .unwrap();
    let current = Arc::new(Mutex::new(String::from("secret-v1")));
    let provider = CredentialsProvider::new({
        let current = current.clone();
        move || {
            let password = current.lock().unwrap().clone();
            async move { Ok(Credentials::password(password)) }
        }
    });
    let url = format!("postgres://rotating@{}/postgres", cluster.addr());
    let manager = PgManager::new(url).unwrap().with_credentials(provider);
    let pool = Pool::new(manager, config(3)).unwrap();
    let mut first = pool.get().await.unwrap();
    assert_eq!(text(&mut *first, "current_user").await, "rotating");

    cluster
        .execute("ALTER ROLE rotating PASSWORD 'secret-v2'")
        .await
        .unwrap();
    *current.lock().unwrap() = "secret-v2".into();
    let mut second = pool.get().await.unwrap(); // a new connection: the first is held
    assert_eq!(text(&mut *second, "current_user").await, "rotating");
    assert_eq!(
        text(&mut *first, "current_user").await,
        "rotating",
        "open ones untouched"
    );

    *current.lock().unwrap() = "secret-v1".into(); // stale
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
    assert!(error.to_string().contains("28P01"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_a_transient_connect_error_that_says_so() {
    let cluster = cluster().await;
    let provider = CredentialsProvider::new(|| async { Err("the vault is sealed".into()) });
    let manager = PgManager::new(superuser_url(cluster))
        .unwrap()
        .with_credentials(provider);
    let error = manager.connect().await.unwrap_err();
    assert!(matches!(error, DieselError::Credentials(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(
        error
            .to_string()
            .contains("credentials provider failed: the vault is sealed"),
        "{error}"
    );
    let pool = Pool::new(
        manager,
        PoolConfig {
            acquire_timeout: Duration::from_secs(1),
            ..config(1)
        },
    )
    .unwrap();
    let error = pool.get().await.unwrap_err();
    assert!(error.to_string().contains("the vault is sealed"), "{error}");
    assert!(pool.stats().connect_errors_transient >= 1);
}
