//! Credentials that change while the pool runs: a rotating password, a
//! cloud IAM token (RDS, Cloud SQL, Azure), fetched for each new connection.
//!
//! A backend that supports it (PostgreSQL, MySQL/MariaDB, sqlx, diesel-async)
//! takes a [`CredentialsProvider`] and calls it before every connection
//! attempt, so a rotated secret is used from the next connection on and the
//! connections already open are not touched. The password never appears in
//! `Debug` output, logs or errors.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidewater::credentials::BoxError> {
//! use tidewater::credentials::{Credentials, CredentialsProvider};
//!
//! let provider = CredentialsProvider::new(|| async {
//!     // e.g. ask the cloud for a token valid 15 minutes
//!     Ok(Credentials::password("token-4711").with_user("app"))
//! });
//! let credentials = provider.fetch().await?;
//! assert_eq!(credentials.user(), Some("app"));
//! assert_eq!(credentials.secret(), "token-4711");
//! assert!(!format!("{credentials:?}").contains("4711"));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The error a provider returns (the token service was unreachable, the
/// secret store refused...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A user name (optional: the backend's configured one otherwise) and a
/// password or token. `Debug` shows the password as `***`.
///
/// ```
/// use tidewater::credentials::Credentials;
/// let credentials = Credentials::password("s3cret");
/// assert_eq!(credentials.user(), None);
/// assert_eq!(format!("{credentials:?}"), r#"Credentials { user: None, password: "***" }"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: Option<String>,
    password: String,
}

impl Credentials {
    /// A password (or token) for the configured user.
    pub fn password(password: impl Into<String>) -> Self {
        Self {
            user: None,
            password: password.into(),
        }
    }

    /// The same password for another user.
    ///
    /// ```
    /// use tidewater::credentials::Credentials;
    /// assert_eq!(Credentials::password("x").with_user("app").user(), Some("app"));
    /// ```
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The user to connect as, if the provider chose one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password or token, for the driver only.
    pub fn secret(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

type Fetch =
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Credentials, BoxError>> + Send>> + Send + Sync;

/// Where a backend gets [`Credentials`] for each new connection. Cheap to
/// clone; a provider that is expensive to ask (a token valid for 15
/// minutes) caches inside its closure.
///
/// A failure to fetch is a connection error the pool retries with its
/// backoff, like a refused connection.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use tidewater::credentials::{Credentials, CredentialsProvider};
///
/// let rotation = Arc::new(AtomicU32::new(1));
/// let provider = CredentialsProvider::new(move || {
///     let version = rotation.load(Ordering::Relaxed);
///     async move { Ok(Credentials::password(format!("secret-v{version}"))) }
/// });
/// assert_eq!(format!("{provider:?}"), "CredentialsProvider(..)");
/// ```
#[derive(Clone)]
pub struct CredentialsProvider(Arc<Fetch>);

impl CredentialsProvider {
    /// A provider that runs `fetch` for every new connection.
    pub fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credentials, BoxError>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(fetch())))
    }

    /// Credentials for the next connection.
    ///
    /// # Errors
    /// Whatever the provider returned.
    pub async fn fetch(&self) -> Result<Credentials, BoxError> {
        (self.0)().await
    }
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialsProvider(..)")
    }
}
