//! Setup SQL against the machine's shared PostgreSQL (127.0.0.1:5432,
//! user postgres, database test, trust auth): session settings only,
//! nothing is created that outlives a session.

use std::time::Duration;

use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_postgres::{PgError, PgManager, PgOptions, SessionReset};

const SHARED: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pool_with(setup_sql: &[&str], session_reset: SessionReset) -> Pool<PgManager> {
    let options = PgOptions {
        url: SHARED.into(),
        session_reset,
        setup_sql: setup_sql.iter().map(|s| (*s).to_owned()).collect(),
        ..PgOptions::default()
    };
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    Pool::new(PgManager::new(options).unwrap(), config).unwrap()
}

async fn show(conn: &tidewater_postgres::PgConnection, sql: &str) -> String {
    conn.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn setup_statements_run_in_order_on_each_new_connection() {
    let pool = pool_with(
        &[
            "SET search_path = tw_setup_schema, public",
            "SET application_name = 'tw-setup-first'",
            "SET application_name = 'tw-setup-second'",
        ],
        SessionReset::Rollback,
    );
    let conn = pool.get().await.unwrap();
    assert_eq!(
        show(&conn, "SHOW search_path").await,
        "tw_setup_schema, public"
    );
    assert_eq!(
        show(&conn, "SELECT current_setting('application_name')").await,
        "tw-setup-second",
        "the statements ran in order"
    );
    // A new connection gets it too.
    drop(conn.detach());
    let conn = pool.get().await.unwrap();
    assert_eq!(
        show(&conn, "SHOW search_path").await,
        "tw_setup_schema, public"
    );
    assert_eq!(pool.stats().opened, 2);
}

#[tokio::test]
async fn a_bad_setup_statement_fails_fast_with_a_permanent_error_naming_it() {
    let pool = pool_with(
        &["SET search_path = public", "SETT application_name = 'x'"],
        SessionReset::Rollback,
    );
    // acquire_timeout is 30 s: a timeout would be a `Timeout`, not `Connect`.
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error}");
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains("setup statement `SETT application_name = 'x'` failed"),
        "{text}"
    );
    assert!(text.contains("SQLSTATE 42601"), "{text}");
    let pg = cause.cause().downcast_ref::<PgError>().unwrap();
    assert!(matches!(pg, PgError::Setup { .. }), "{pg:?}");
    assert_eq!(pool.status().in_use + pool.status().idle, 0, "dropped");
}

#[tokio::test]
async fn with_discard_all_the_setup_survives_reuse() {
    let pool = pool_with(
        &[
            "SET application_name = 'tw-setup-discard'",
            "SET search_path = tw_setup_schema, public",
        ],
        SessionReset::DiscardAll,
    );
    let conn = pool.get().await.unwrap();
    let id = conn.id();
    conn.batch_execute(
        "SET application_name = 'changed-by-a-caller'; SET search_path = public; \
         CREATE TEMP TABLE tw_setup_left_behind (x int)",
    )
    .await
    .unwrap();
    drop(conn);

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "the same connection, reset");
    let temp: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'tw_setup_left_behind'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "DISCARD ALL ran");
    assert_eq!(
        show(&conn, "SELECT current_setting('application_name')").await,
        "tw-setup-discard"
    );
    assert_eq!(
        show(&conn, "SHOW search_path").await,
        "tw_setup_schema, public"
    );
    assert_eq!(pool.stats().opened, 1);
}

#[test]
fn setup_sql_is_refused_behind_a_transaction_pooler_and_when_empty() {
    let options = PgOptions {
        transaction_pooler: true,
        setup_sql: vec!["SET search_path = app".into()],
        ..PgOptions::default()
    };
    let error = PgManager::new(options).unwrap_err().to_string();
    assert!(error.contains("transaction pooler"), "{error}");
    let options = PgOptions {
        setup_sql: vec!["SET search_path = app".into(), "  ".into()],
        ..PgOptions::default()
    };
    let error = PgManager::new(options).unwrap_err().to_string();
    assert!(error.contains("setup_sql[1] is empty"), "{error}");
}

#[test]
fn setup_sql_loads_from_toml() {
    let options: PgOptions =
        toml::from_str(r#"setup_sql = ["SET search_path = app", "SET TIME ZONE 'UTC'"]"#).unwrap();
    assert_eq!(
        options.setup_sql,
        ["SET search_path = app", "SET TIME ZONE 'UTC'"]
    );
}

#[tokio::test]
async fn hooks_run_on_a_real_session_after_connect_and_before_checkout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let checkouts = Arc::new(AtomicU64::new(0));
    let counted = checkouts.clone();
    let hooks = tidewater::Hooks::new()
        .after_connect(|conn: &mut tidewater_postgres::PgConnection| {
            Box::pin(async move {
                conn.batch_execute("SET application_name = 'tw-hooked'")
                    .await
            })
        })
        .before_checkout(move |conn: &mut tidewater_postgres::PgConnection| {
            let n = counted.fetch_add(1, SeqCst) + 1;
            Box::pin(async move {
                conn.batch_execute(&format!("SET tidewater.checkout = '{n}'"))
                    .await
            })
        });
    let options = PgOptions {
        url: SHARED.into(),
        ..PgOptions::default()
    };
    let config = PoolConfig {
        max_size: 1,
        ..PoolConfig::default()
    };
    let pool = PgManager::new(options)
        .unwrap()
        .into_pool_with_hooks(config, hooks)
        .unwrap();
    // The pool's capacity check takes connections too, so the count is
    // read, not predicted: the hook's last run was for this checkout.
    for _ in 0..3 {
        let conn = pool.get().await.unwrap();
        assert_eq!(
            show(&conn, "SELECT current_setting('application_name')").await,
            "tw-hooked"
        );
        assert_eq!(
            show(&conn, "SELECT current_setting('tidewater.checkout')").await,
            checkouts.load(SeqCst).to_string(),
            "the checkout hook ran before this checkout"
        );
    }
    assert!(checkouts.load(SeqCst) >= 3);
    assert_eq!(pool.stats().opened, 1);
}
