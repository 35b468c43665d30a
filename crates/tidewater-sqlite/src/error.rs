//! The backend's error, and which failures are worth retrying.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::ffi;
use tidewater::ErrorClass;

/// What went wrong with SQLite. Its message names the cause in words an
/// operator can act on, with SQLite's result code (`SQLITE_BUSY`,
/// `SQLITE_CANTOPEN`...).
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater_sqlite::SqliteError;
///
/// let error = SqliteError::Config("busy_timeout = 0".into());
/// assert_eq!(error.to_string(), "invalid SQLite configuration: busy_timeout = 0");
/// assert_eq!(error.class(), ErrorClass::Permanent);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SqliteError {
    /// A connection could not be opened or set up (file missing, corrupt,
    /// read-only, locked...). The message says which.
    Open {
        /// What happened, naming the file and SQLite's result code.
        message: String,
        /// Whether another attempt can succeed.
        class: ErrorClass,
        /// SQLite's own error, when there was one.
        source: Option<rusqlite::Error>,
    },
    /// An error from SQLite on an open connection.
    Sqlite(rusqlite::Error),
    /// The options are wrong (this never fixes itself).
    Config(String),
    /// A closure run on the connection panicked. The connection was closed
    /// (and the pool replaces it); the panic's message is kept.
    Panicked(String),
    /// The connection's thread is gone: the connection was closed after a
    /// panic, a statement that would not stop, or its file being deleted.
    Closed,
    /// The database file was deleted, or replaced by another file, since
    /// this connection opened it. The connection refuses further work (it
    /// would read and write a file nobody else sees) and was closed.
    ///
    /// To replace a live database file, remove its `-wal` and `-shm` files
    /// with it: SQLite keeps the `-wal` of a database file that moved, and
    /// would apply it to the next file at that path. Better still, write
    /// into the live database with SQLite's backup API.
    FileReplaced {
        /// The database file.
        path: PathBuf,
        /// `true` when another file now stands at the path, `false` when
        /// nothing does.
        replaced: bool,
    },
    /// A closure outlived the statement timeout: SQLite was interrupted.
    Timeout {
        /// The statement timeout.
        after: Duration,
        /// Whether the closure ended soon after the interrupt, so the
        /// connection stays usable (it is closed if not).
        connection_kept: bool,
    },
}

impl SqliteError {
    /// SQLite's extended result code, when SQLite reported the error.
    ///
    /// ```
    /// use rusqlite::ffi;
    /// use tidewater_sqlite::SqliteError;
    ///
    /// let busy = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY_SNAPSHOT), None);
    /// assert_eq!(SqliteError::Sqlite(busy).code(), Some(ffi::SQLITE_BUSY_SNAPSHOT));
    /// assert_eq!(SqliteError::Closed.code(), None);
    /// ```
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Sqlite(error)
            | Self::Open {
                source: Some(error),
                ..
            } => error.sqlite_error().map(|e| e.extended_code),
            _ => None,
        }
    }

    /// Transient (retrying can help) or permanent.
    ///
    /// - transient: `SQLITE_BUSY` and `SQLITE_LOCKED` (another connection
    ///   holds a lock), I/O errors, a full disk, out of memory, an
    ///   interrupted statement, a closed connection;
    /// - permanent: a missing file with `create` off or a missing folder
    ///   (`SQLITE_CANTOPEN`), a corrupt file (`SQLITE_CORRUPT`,
    ///   `SQLITE_NOTADB`), a read-only file (`SQLITE_READONLY`,
    ///   `SQLITE_PERM`), a pragma or statement SQLite rejects, bad options.
    ///
    /// ```
    /// use rusqlite::ffi;
    /// use tidewater::ErrorClass;
    /// use tidewater_sqlite::SqliteError;
    ///
    /// let sqlite = |code| SqliteError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
    /// assert_eq!(sqlite(ffi::SQLITE_BUSY).class(), ErrorClass::Transient);
    /// assert_eq!(sqlite(ffi::SQLITE_NOTADB).class(), ErrorClass::Permanent);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Open { class, .. } => *class,
            Self::Sqlite(error) => class_of(error),
            Self::Config(_) | Self::Panicked(_) => ErrorClass::Permanent,
            Self::Closed | Self::FileReplaced { .. } | Self::Timeout { .. } => {
                ErrorClass::Transient
            }
        }
    }

    /// Whether SQLite said the database or a table is locked by another
    /// connection (`SQLITE_BUSY`, `SQLITE_LOCKED` and their extended codes).
    ///
    /// ```
    /// # use tidewater_sqlite::SqliteError;
    /// assert!(!SqliteError::Closed.is_busy());
    /// ```
    pub fn is_busy(&self) -> bool {
        self.code().is_some_and(is_busy_code)
    }
}

/// Whether `error`, or any error behind it, is `SQLITE_BUSY` or
/// `SQLITE_LOCKED`: lock contention that a retry resolves.
///
/// ```
/// use rusqlite::ffi;
///
/// let locked = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_LOCKED_SHAREDCACHE), None);
/// assert!(tidewater_sqlite::is_busy(&locked));
/// assert!(!tidewater_sqlite::is_busy(&std::io::Error::other("not SQLite")));
/// ```
pub fn is_busy(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        let code = error
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error)
            .map(|e| e.extended_code)
            .or_else(|| {
                error
                    .downcast_ref::<SqliteError>()
                    .and_then(SqliteError::code)
            });
        if code.is_some_and(is_busy_code) {
            return true;
        }
        next = error.source();
    }
    false
}

fn is_busy_code(code: i32) -> bool {
    matches!(code & 0xff, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED)
}

/// The class of an error SQLite reported; see [`SqliteError::class`].
pub(crate) fn class_of(error: &rusqlite::Error) -> ErrorClass {
    let Some(code) = error.sqlite_error().map(|e| e.extended_code) else {
        // Errors of the wrapper itself: a wrong type, a bad parameter...
        return ErrorClass::Permanent;
    };
    match code & 0xff {
        ffi::SQLITE_BUSY
        | ffi::SQLITE_LOCKED
        | ffi::SQLITE_IOERR
        | ffi::SQLITE_FULL
        | ffi::SQLITE_NOMEM
        | ffi::SQLITE_INTERRUPT
        | ffi::SQLITE_PROTOCOL
        | ffi::SQLITE_SCHEMA => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// SQLite's name for a result code, extended where SQLite has a name for
/// it (`SQLITE_BUSY_SNAPSHOT`), else the primary name.
pub(crate) fn code_name(code: i32) -> String {
    let extended = match code {
        ffi::SQLITE_BUSY_RECOVERY => "SQLITE_BUSY_RECOVERY",
        ffi::SQLITE_BUSY_SNAPSHOT => "SQLITE_BUSY_SNAPSHOT",
        ffi::SQLITE_BUSY_TIMEOUT => "SQLITE_BUSY_TIMEOUT",
        ffi::SQLITE_LOCKED_SHAREDCACHE => "SQLITE_LOCKED_SHAREDCACHE",
        ffi::SQLITE_READONLY_RECOVERY => "SQLITE_READONLY_RECOVERY",
        ffi::SQLITE_READONLY_CANTLOCK => "SQLITE_READONLY_CANTLOCK",
        ffi::SQLITE_READONLY_ROLLBACK => "SQLITE_READONLY_ROLLBACK",
        ffi::SQLITE_READONLY_DBMOVED => "SQLITE_READONLY_DBMOVED",
        ffi::SQLITE_READONLY_CANTINIT => "SQLITE_READONLY_CANTINIT",
        ffi::SQLITE_READONLY_DIRECTORY => "SQLITE_READONLY_DIRECTORY",
        ffi::SQLITE_CANTOPEN_ISDIR => "SQLITE_CANTOPEN_ISDIR",
        ffi::SQLITE_CANTOPEN_FULLPATH => "SQLITE_CANTOPEN_FULLPATH",
        ffi::SQLITE_IOERR_READ => "SQLITE_IOERR_READ",
        ffi::SQLITE_IOERR_SHORT_READ => "SQLITE_IOERR_SHORT_READ",
        ffi::SQLITE_IOERR_WRITE => "SQLITE_IOERR_WRITE",
        ffi::SQLITE_IOERR_FSYNC => "SQLITE_IOERR_FSYNC",
        ffi::SQLITE_IOERR_TRUNCATE => "SQLITE_IOERR_TRUNCATE",
        ffi::SQLITE_IOERR_FSTAT => "SQLITE_IOERR_FSTAT",
        ffi::SQLITE_IOERR_LOCK => "SQLITE_IOERR_LOCK",
        ffi::SQLITE_IOERR_DELETE => "SQLITE_IOERR_DELETE",
        ffi::SQLITE_IOERR_SHMOPEN => "SQLITE_IOERR_SHMOPEN",
        ffi::SQLITE_IOERR_SHMMAP => "SQLITE_IOERR_SHMMAP",
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "SQLITE_CONSTRAINT_FOREIGNKEY",
        ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "SQLITE_CONSTRAINT_PRIMARYKEY",
        ffi::SQLITE_CONSTRAINT_UNIQUE => "SQLITE_CONSTRAINT_UNIQUE",
        ffi::SQLITE_CONSTRAINT_NOTNULL => "SQLITE_CONSTRAINT_NOTNULL",
        _ => "",
    };
    if !extended.is_empty() {
        return extended.to_owned();
    }
    let primary = match code & 0xff {
        ffi::SQLITE_ERROR => "SQLITE_ERROR",
        ffi::SQLITE_INTERNAL => "SQLITE_INTERNAL",
        ffi::SQLITE_PERM => "SQLITE_PERM",
        ffi::SQLITE_ABORT => "SQLITE_ABORT",
        ffi::SQLITE_BUSY => "SQLITE_BUSY",
        ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
        ffi::SQLITE_NOMEM => "SQLITE_NOMEM",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        ffi::SQLITE_IOERR => "SQLITE_IOERR",
        ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        ffi::SQLITE_NOTFOUND => "SQLITE_NOTFOUND",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_CANTOPEN => "SQLITE_CANTOPEN",
        ffi::SQLITE_PROTOCOL => "SQLITE_PROTOCOL",
        ffi::SQLITE_SCHEMA => "SQLITE_SCHEMA",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_MISUSE => "SQLITE_MISUSE",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_NOTADB => "SQLITE_NOTADB",
        _ => return format!("SQLite result code {code}"),
    };
    primary.to_owned()
}

/// What a result code means to an operator, for the codes met in a pool.
fn meaning(code: i32) -> Option<&'static str> {
    Some(match code & 0xff {
        ffi::SQLITE_BUSY if code == ffi::SQLITE_BUSY_SNAPSHOT => {
            "another connection wrote since this transaction's snapshot was taken"
        }
        ffi::SQLITE_BUSY => "another connection held a lock for longer than busy_timeout",
        ffi::SQLITE_LOCKED => "another connection of the shared cache holds a table lock",
        ffi::SQLITE_READONLY if code == ffi::SQLITE_READONLY_DBMOVED => {
            "the database file was moved or deleted while open"
        }
        ffi::SQLITE_READONLY => "the database is read-only to this connection",
        ffi::SQLITE_CORRUPT => "the database file is corrupt",
        ffi::SQLITE_NOTADB => "not an SQLite database, or corrupt",
        ffi::SQLITE_FULL => "the disk is full",
        ffi::SQLITE_IOERR => "the operating system reported an I/O error",
        ffi::SQLITE_INTERRUPT => "interrupted",
        _ => return None,
    })
}

/// SQLite's code name and its meaning, as `SQLITE_BUSY: ...`.
pub(crate) fn describe_code(code: i32) -> String {
    match meaning(code) {
        Some(meaning) => format!("{}: {meaning}", code_name(code)),
        None => code_name(code),
    }
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { message, .. } => f.write_str(message),
            Self::Sqlite(error) => match error.sqlite_error() {
                Some(code) => write!(f, "{error} ({})", describe_code(code.extended_code)),
                None => write!(f, "{error}"),
            },
            Self::Config(message) => write!(f, "invalid SQLite configuration: {message}"),
            Self::Panicked(message) => write!(
                f,
                "a closure run on the SQLite connection panicked ({message}); the connection was closed"
            ),
            Self::Closed => f.write_str(
                "the SQLite connection is closed (its thread ended after a panic, a statement that would not stop, or its file being deleted)",
            ),
            Self::FileReplaced { path, replaced } => write!(
                f,
                "database file {} was {} since this connection opened it; the connection was closed",
                path.display(),
                if *replaced {
                    "replaced by another file"
                } else {
                    "deleted"
                }
            ),
            Self::Timeout {
                after,
                connection_kept,
            } => {
                write!(
                    f,
                    "SQLite interrupted after the statement timeout ({after:?})"
                )?;
                if !*connection_kept {
                    f.write_str(
                        "; the closure did not end after the interrupt, so the connection was discarded",
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite(error)
            | Self::Open {
                source: Some(error),
                ..
            } => Some(error),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn codes_are_classified_as_the_issue_lists() {
        for (code, class) in [
            (ffi::SQLITE_BUSY, ErrorClass::Transient),
            (ffi::SQLITE_BUSY_SNAPSHOT, ErrorClass::Transient),
            (ffi::SQLITE_LOCKED, ErrorClass::Transient),
            (ffi::SQLITE_LOCKED_SHAREDCACHE, ErrorClass::Transient),
            (ffi::SQLITE_IOERR_WRITE, ErrorClass::Transient),
            (ffi::SQLITE_FULL, ErrorClass::Transient),
            (ffi::SQLITE_CANTOPEN, ErrorClass::Permanent),
            (ffi::SQLITE_CORRUPT, ErrorClass::Permanent),
            (ffi::SQLITE_NOTADB, ErrorClass::Permanent),
            (ffi::SQLITE_READONLY, ErrorClass::Permanent),
            (ffi::SQLITE_PERM, ErrorClass::Permanent),
            (ffi::SQLITE_ERROR, ErrorClass::Permanent),
            (ffi::SQLITE_CONSTRAINT_UNIQUE, ErrorClass::Permanent),
        ] {
            let error = SqliteError::Sqlite(failure(code));
            assert_eq!(error.class(), class, "{error}");
        }
        let wrapper = rusqlite::Error::InvalidColumnIndex(3);
        assert_eq!(class_of(&wrapper), ErrorClass::Permanent);
    }

    #[test]
    fn busy_and_locked_are_found_behind_other_errors() {
        #[derive(Debug)]
        struct App(SqliteError);
        impl fmt::Display for App {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "app: {}", self.0)
            }
        }
        impl std::error::Error for App {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_BUSY_SNAPSHOT,
            ffi::SQLITE_LOCKED_SHAREDCACHE,
        ] {
            assert!(is_busy(&App(SqliteError::Sqlite(failure(code)))));
        }
        assert!(!is_busy(&App(SqliteError::Sqlite(failure(
            ffi::SQLITE_READONLY
        )))));
        assert!(!is_busy(&App(SqliteError::Closed)));
    }

    #[test]
    fn messages_name_the_code_and_its_meaning() {
        let error = SqliteError::Sqlite(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        ));
        assert_eq!(
            error.to_string(),
            "database is locked (SQLITE_BUSY: another connection held a lock for longer than busy_timeout)"
        );
        let snapshot = SqliteError::Sqlite(failure(ffi::SQLITE_BUSY_SNAPSHOT));
        assert!(
            snapshot
                .to_string()
                .contains("SQLITE_BUSY_SNAPSHOT: another connection wrote")
        );
        assert_eq!(code_name(ffi::SQLITE_IOERR_WRITE), "SQLITE_IOERR_WRITE");
        assert_eq!(code_name(ffi::SQLITE_IOERR | (99 << 8)), "SQLITE_IOERR");
        let replaced = SqliteError::FileReplaced {
            path: "/x/y.db".into(),
            replaced: false,
        };
        assert!(
            replaced
                .to_string()
                .starts_with("database file /x/y.db was deleted")
        );
    }
}
