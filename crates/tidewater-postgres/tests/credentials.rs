//! Rotating credentials on a private PostgreSQL cluster (SCRAM-SHA-256
//! over TCP): the password changes on the server and in the provider; the
//! connection opened before keeps working, new ones use the new password,
//! and a provider that fails is a transient error naming its cause.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_postgres::{PgError, PgManager, PgOptions};
use tidewater_testkit::PgCluster;

/// What the test's provider answers: a password, or a failure.
type Answer = Arc<Mutex<Result<String, String>>>;

fn provider(answer: &Answer) -> CredentialsProvider {
    let answer = answer.clone();
    CredentialsProvider::new(move || {
        let now = answer.lock().unwrap().clone();
        async move {
            match now {
                Ok(password) => Ok(Credentials::password(password).with_user("rotating")),
                Err(message) => Err(message.into()),
            }
        }
    })
}

fn set(answer: &Answer, to: Result<&str, &str>) {
    *answer.lock().unwrap() = to.map(str::to_owned).map_err(str::to_owned);
}

async fn current_user(conn: &tidewater_postgres::PgConnection) -> String {
    conn.query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_is_used_by_new_connections_only() {
    const V1: &str = "rot-secret-v1-Zq8";
    const V2: &str = "rot-secret-v2-Kp3";
    const URL_PASSWORD: &str = "url-secret-Wm5";
    let cluster = PgCluster::new().await.unwrap();
    cluster.create_role("rotating", V1, None).await.unwrap();
    // The URL names another user and a wrong password: only the
    // provider's can work.
    let url = cluster.url_for("nobody", URL_PASSWORD, "postgres");
    let answer: Answer = Arc::new(Mutex::new(Ok(V1.to_owned())));
    let manager = PgManager::new(PgOptions {
        url,
        ..PgOptions::default()
    })
    .unwrap()
    .with_credentials(provider(&answer));
    let debug = format!("{manager:?}");
    for secret in [V1, V2, URL_PASSWORD] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let config = PoolConfig {
        max_size: 3,
        acquire_timeout: Duration::from_secs(3),
        connect_backoff_max: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let pool = Pool::new(manager, config).unwrap();

    let before = pool.get().await.unwrap();
    assert_eq!(current_user(&before).await, "rotating");

    // Rotation: the server first, then the provider.
    cluster
        .execute(&format!("ALTER ROLE rotating PASSWORD '{V2}'"))
        .await
        .unwrap();
    set(&answer, Ok(V2));
    let after = pool.get().await.unwrap();
    assert_eq!(current_user(&after).await, "rotating");
    assert_eq!(
        pool.stats().opened,
        2,
        "a new connection, with the new password"
    );
    assert_eq!(
        current_user(&before).await,
        "rotating",
        "the connection opened before still works"
    );

    // A provider that still hands out the old password: refused by the
    // server (28P01, permanent), and the password is in no error.
    set(&answer, Ok(V1));
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error}");
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    let text = format!("{error} {error:?}");
    assert!(text.contains("28P01"), "{text}");
    for secret in [V1, V2, URL_PASSWORD] {
        assert!(!text.contains(secret), "{text}");
    }

    // A provider that fails: transient, retried until the acquire
    // timeout, and its message reaches the caller.
    set(&answer, Err("vault sealed"));
    let error = pool.get().await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("could not get credentials: vault sealed"),
        "{text}"
    );
    let connect = match &error {
        Error::Timeout {
            last_connect_error: Some(cause),
            ..
        } => cause,
        Error::Unavailable { cause, .. } => cause,
        other => panic!("unexpected error: {other}"),
    };
    assert_eq!(connect.class(), ErrorClass::Transient);
    assert!(matches!(
        connect.cause().downcast_ref::<PgError>(),
        Some(PgError::Credentials(_))
    ));

    // Both connections still work after all that.
    assert_eq!(current_user(&before).await, "rotating");
    assert_eq!(current_user(&after).await, "rotating");
    drop((before, after));
    pool.close().await;
}
