//! What the backend's test files share.

use tidewater_postgres::PgError;

/// An application's error type, as the transaction helper expects one:
/// convertible from the pool's and the database's errors.
#[derive(Debug)]
pub enum AppError {
    /// No connection.
    Pool(tidewater::Error),
    /// The database said no.
    Db(PgError),
    /// The application said no.
    #[allow(dead_code)]
    Refused,
}

impl From<tidewater::Error> for AppError {
    fn from(error: tidewater::Error) -> Self {
        Self::Pool(error)
    }
}

impl From<PgError> for AppError {
    fn from(error: PgError) -> Self {
        Self::Db(error)
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Db(error.into())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool(error) => write!(f, "{error}"),
            Self::Db(error) => write!(f, "{error}"),
            Self::Refused => f.write_str("refused"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Db(error) => Some(error),
            _ => None,
        }
    }
}
