//! Rotating credentials against the shared MariaDB (127.0.0.1:3306): a
//! user and a database of the test's own, dropped at the end. The password
//! changes on the server (`ALTER USER`) and in the provider; the
//! connection opened before keeps working, new ones use the new password,
//! and a provider that fails is a transient error naming its cause.

use tidewater::Pool;
use tidewater_mysql::{MySqlConnection, MySqlError, MySqlManager, MySqlOptions};
use tidewater_testkit::rotation::{
    self, RotatingPassword, assert_hides, provider_failure_is_transient, refuses_old_password,
};

mod common;
use common::{TestDb, TestUser, admin_exec};

async fn current_user(conn: &mut MySqlConnection) -> String {
    let user: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    user.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_is_used_by_new_connections_only() {
    const V1: &str = "rot-secret-v1-Zq8";
    const V2: &str = "rot-secret-v2-Kp3";
    const URL_PASSWORD: &str = "url-secret-Wm5";
    let db = TestDb::create("rotation").await;
    let user = TestUser::create(&db, V1, "").await;
    let expected = format!("{}@%", user.name);
    // The URL's password is wrong: only the provider's can work. No user
    // from the provider: the URL's stays.
    let password = RotatingPassword::new(V1, None);
    let manager = MySqlManager::new(MySqlOptions {
        url: user.url(URL_PASSWORD, &db),
        ..MySqlOptions::default()
    })
    .unwrap()
    .with_credentials(password.provider());
    assert_hides(&format!("{manager:?}"), &[V1, V2, URL_PASSWORD]);
    let pool = Pool::new(manager, rotation::config()).unwrap();

    let mut before = pool.get().await.unwrap();
    assert_eq!(current_user(&mut before).await, expected);

    // Rotation: the server first, then the provider.
    admin_exec(&format!(
        "ALTER USER '{}'@'%' IDENTIFIED BY '{V2}'",
        user.name
    ))
    .await;
    password.set(Ok(V2));
    let mut after = pool.get().await.unwrap();
    assert_eq!(current_user(&mut after).await, expected);
    assert_ne!(after.connection_id(), before.connection_id());
    assert_eq!(
        pool.stats().opened,
        2,
        "a new connection, with the new password"
    );
    assert_eq!(
        current_user(&mut before).await,
        expected,
        "the connection opened before still works"
    );

    // A provider that still hands out the old password: refused by the
    // server (1045, permanent), and the password is in no error.
    password.set(Ok(V1));
    refuses_old_password(&pool, "1045", &[V1, V2, URL_PASSWORD]).await;

    // A provider that fails: transient, retried until the acquire
    // timeout (or the breaker opens), and its message reaches the caller.
    password.set(Err("vault sealed"));
    let connect = provider_failure_is_transient(&pool, "vault sealed").await;
    assert!(matches!(
        connect.cause().downcast_ref::<MySqlError>(),
        Some(MySqlError::Credentials(_))
    ));

    assert_eq!(current_user(&mut before).await, expected);
    assert_eq!(current_user(&mut after).await, expected);
    drop((before, after));
    pool.close().await;
}
