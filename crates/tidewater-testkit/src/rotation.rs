//! What a backend's credential-rotation test shares with the others': a
//! provider the test steers ([`RotatingPassword`]), the pool it runs, and
//! the checks of the two failures (a provider still handing out the old
//! password, a provider that fails). The test keeps the rotation itself:
//! the server's statement and the backend's session queries.
//!
//! ```ignore
//! let password = RotatingPassword::new(V1, Some("rotating"));
//! let manager = MyManager::new(url)?.with_credentials(password.provider());
//! assert_hides(&format!("{manager:?}"), &[V1, V2, URL_PASSWORD]);
//! let pool = Pool::new(manager, rotation::config())?;
//! // ... rotate on the server, then password.set(Ok(V2)) ...
//! password.set(Ok(V1));
//! refuses_old_password(&pool, "28P01", &[V1, V2, URL_PASSWORD]).await;
//! password.set(Err("vault sealed"));
//! let cause = provider_failure_is_transient(&pool, "vault sealed").await;
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{Backoff, ConnectError, Error, ErrorClass, Manager, Pool, PoolConfig};

use crate::lock;

/// A credentials provider's answer, which the test changes as it goes: a
/// password, or a failure with a message.
#[derive(Clone)]
pub struct RotatingPassword {
    answer: Arc<Mutex<Result<String, String>>>,
    user: Option<String>,
}

impl RotatingPassword {
    /// Answers `password` (for `user`, or the URL's user when `None`)
    /// until [`set`](Self::set) changes it.
    pub fn new(password: &str, user: Option<&str>) -> Self {
        Self {
            answer: Arc::new(Mutex::new(Ok(password.to_owned()))),
            user: user.map(str::to_owned),
        }
    }

    /// From now on the provider answers this password, or fails with this
    /// message.
    pub fn set(&self, to: Result<&str, &str>) {
        *lock(&self.answer) = to.map(str::to_owned).map_err(str::to_owned);
    }

    /// A provider that answers what [`set`](Self::set) said last.
    pub fn provider(&self) -> CredentialsProvider {
        let this = self.clone();
        CredentialsProvider::new(move || {
            let now = lock(&this.answer).clone();
            let user = this.user.clone();
            async move {
                match (now, user) {
                    (Ok(password), Some(user)) => {
                        Ok(Credentials::password(password).with_user(user))
                    }
                    (Ok(password), None) => Ok(Credentials::password(password)),
                    (Err(message), _) => Err(message.into()),
                }
            }
        })
    }
}

/// The pool of a rotation test: 3 connections, a 3 s acquire timeout, and
/// retries at most 200 ms apart.
pub fn config() -> PoolConfig {
    PoolConfig {
        max_size: 3,
        acquire_timeout: Duration::from_secs(3),
        connect_backoff: Backoff {
            max: Duration::from_millis(200),
            ..Backoff::default()
        },
        ..PoolConfig::default()
    }
}

/// Asserts that `text` (a debug or error text) holds none of `secrets`.
pub fn assert_hides(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{text}");
    }
}

/// With the provider handing out a password the server no longer takes:
/// `get()` fails at once with the permanent connect error, whose text
/// holds the server's `code` and none of `secrets`.
pub async fn refuses_old_password<M: Manager>(pool: &Pool<M>, code: &str, secrets: &[&str]) {
    let Err(error) = pool.get().await else {
        panic!("the old password still works")
    };
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error}");
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    let text = format!("{error} {error:?}");
    assert!(text.contains(code), "{text}");
    assert_hides(&text, secrets);
}

/// With the provider failing with `message`: `get()` fails with a
/// retryable error (retried until the acquire timeout, or the breaker
/// opens) that says `could not get credentials: <message>`. Returns the
/// last transient connect error, for the backend to check its type.
pub async fn provider_failure_is_transient<M: Manager>(
    pool: &Pool<M>,
    message: &str,
) -> ConnectError {
    let Err(error) = pool.get().await else {
        panic!("served without credentials")
    };
    assert!(error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("could not get credentials: {message}")),
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
    connect.clone()
}
