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

/// `url` with any password replaced by `***`, for logs and errors: URL
/// form (the password after the user, or a `password` query parameter)
/// and libpq's key/value form. Works for any `scheme://` URL; the one
/// redaction every backend, the service and the lab use.
///
/// ```
/// use tidewater::credentials::redact;
/// assert_eq!(redact("postgres://app:s3cret@db/orders"), "postgres://app:***@db/orders");
/// assert_eq!(redact("host=db password=s3cret user=app"), "host=db password=*** user=app");
/// assert_eq!(redact("postgres://db/x?user=app&password=s3cret"), "postgres://db/x?user=app&password=***");
/// assert_eq!(redact("mysql://root:pw@db:3306/shop"), "mysql://root:***@db:3306/shop");
/// assert_eq!(redact("sqlite://app.db"), "sqlite://app.db");
/// ```
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let mut redacted = match rest.rsplit_once('@') {
            Some((credentials, host)) => match credentials.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => format!("{scheme}://{rest}"),
            },
            None => format!("{scheme}://{rest}"),
        };
        if let Some(query) = query {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            redacted.push('?');
            redacted.push_str(&pairs.join("&"));
        }
        return redacted;
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
