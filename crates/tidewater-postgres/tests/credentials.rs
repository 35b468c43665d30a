//! Rotating credentials on a private PostgreSQL cluster (SCRAM-SHA-256
//! over TCP): the password changes on the server and in the provider; the
//! connection opened before keeps working, new ones use the new password,
//! and a provider that fails is a transient error naming its cause.

use tidewater::Pool;
use tidewater_postgres::{PgError, PgManager, PgOptions};
use tidewater_testkit::PgCluster;
use tidewater_testkit::rotation::{
    self, RotatingPassword, assert_hides, provider_failure_is_transient, refuses_old_password,
};

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
    let password = RotatingPassword::new(V1, Some("rotating"));
    let manager = PgManager::new(PgOptions {
        url,
        ..PgOptions::default()
    })
    .unwrap()
    .with_credentials(password.provider());
    assert_hides(&format!("{manager:?}"), &[V1, V2, URL_PASSWORD]);
    let pool = Pool::new(manager, rotation::config()).unwrap();

    let before = pool.get().await.unwrap();
    assert_eq!(current_user(&before).await, "rotating");

    // Rotation: the server first, then the provider.
    cluster
        .execute(&format!("ALTER ROLE rotating PASSWORD '{V2}'"))
        .await
        .unwrap();
    password.set(Ok(V2));
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
    password.set(Ok(V1));
    refuses_old_password(&pool, "28P01", &[V1, V2, URL_PASSWORD]).await;

    // A provider that fails: transient, retried until the acquire
    // timeout, and its message reaches the caller.
    password.set(Err("vault sealed"));
    let connect = provider_failure_is_transient(&pool, "vault sealed").await;
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
