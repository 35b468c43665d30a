//! Why a load run could not be made: [`LoadError`], and the errors of the
//! requests it makes before its users start ([`ProbeError`] for
//! `/api/pools`, [`AccountsError`] for opening the run's accounts).

use crate::service::ServiceError;

/// Why a run could not be made (as opposed to a run that failed its
/// verdicts, which is a report). The underlying error, where there is
/// one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The options do not make a run.
    #[error("{0}")]
    Invalid(String),
    /// The service could not be started or reached.
    #[error("cannot use the service")]
    Service(#[from] ServiceError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The target does not answer `GET /api/pools` like `tidewater serve`.
    #[error("{base} does not answer GET /api/pools like `tidewater serve`")]
    NotTheService {
        /// The target's base URL.
        base: String,
        /// What went wrong.
        #[source]
        source: ProbeError,
    },
    /// The run's accounts could not be opened.
    #[error("could not open the run's accounts")]
    Accounts(#[source] AccountsError),
    /// SIGINT or SIGTERM arrived: the users were stopped, the spawned
    /// service too, and no report was made.
    #[error("interrupted: the run was stopped before its report")]
    Interrupted,
}

impl LoadError {
    /// The process exit code: 2 for bad options (a target off this
    /// machine among them), 3 for a run that could not be made, 130 when
    /// interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::Service(error) => error.exit_code(),
            Self::Client(_) | Self::NotTheService { .. } | Self::Accounts(_) => 3,
            Self::Interrupted => 130,
        }
    }
}

/// Why `GET /api/pools` gave no pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The base URL and the path make no URL.
    #[error("not a URL")]
    Url(#[from] url::ParseError),
    /// The request, or reading its answer, failed.
    #[error("GET /api/pools failed")]
    Request(#[from] reqwest::Error),
    /// It was answered with a status other than a success.
    #[error("status {0}")]
    Status(reqwest::StatusCode),
    /// The answer lists no pool.
    #[error("no pool in the answer")]
    NoPool,
}

/// Why an account of the run could not be opened (`POST /api/accounts`,
/// tried four times while the service answers 5xx or not at all).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// `201` without the new account's id.
    #[error("POST /api/accounts: 201 without an id")]
    NoId,
    /// Refused with a status other than 5xx.
    #[error("POST /api/accounts: {status}: {body}")]
    Refused {
        /// The status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
    /// The last try was answered with a 5xx.
    #[error("POST /api/accounts: status {0}")]
    Unavailable(reqwest::StatusCode),
    /// The last try got no answer.
    #[error("POST /api/accounts failed")]
    Request(#[source] reqwest::Error),
    /// The task opening it ended without a result (it panicked).
    #[error("the task opening an account failed")]
    Task(#[source] tokio::task::JoinError),
}
