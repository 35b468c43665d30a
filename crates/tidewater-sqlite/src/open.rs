//! Opening one connection (on its own thread): flags, busy timeout,
//! pragmas, a first read, and a diagnosis when any of it fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rusqlite::{Connection, OpenFlags, ffi};
use tidewater::ErrorClass;

use crate::error::{SqliteError, describe_code};
use crate::options::{SqliteOptions, bare_name};

/// Connection-level pragmas a full session reset puts back to their values
/// just after connect (those the options do not set themselves).
const SESSION_PRAGMAS: [&str; 14] = [
    "automatic_index",
    "busy_timeout",
    "cache_size",
    "cache_spill",
    "cell_size_check",
    "defer_foreign_keys",
    "foreign_keys",
    "ignore_check_constraints",
    "query_only",
    "read_uncommitted",
    "recursive_triggers",
    "reverse_unordered_selects",
    "synchronous",
    "temp_store",
];

/// Where the database is.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// A file by its path.
    File(PathBuf),
    /// A `file:` URI, passed to SQLite as it is.
    Uri(String),
    /// A named in-memory database with a shared cache.
    Memory {
        /// `file:NAME?mode=memory&cache=shared`.
        uri: String,
        /// `NAME`.
        name: String,
    },
}

impl Location {
    pub(crate) fn of(options: &SqliteOptions) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        if options.is_memory() {
            let name = options.memory_name.clone().unwrap_or_else(|| {
                format!(
                    "tidewater-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Relaxed)
                )
            });
            let uri = format!("file:{name}?mode=memory&cache=shared");
            return Self::Memory { uri, name };
        }
        match options.path.to_str() {
            Some(uri) if uri.starts_with("file:") => Self::Uri(uri.to_owned()),
            _ => Self::File(options.path.clone()),
        }
    }

    /// What SQLite is given to open.
    pub(crate) fn target(&self) -> &Path {
        match self {
            Self::File(path) => path,
            Self::Uri(uri) | Self::Memory { uri, .. } => Path::new(uri),
        }
    }

    /// The file watched for deletion (plain paths only).
    pub(crate) fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            _ => None,
        }
    }

    /// For messages: `database file /x/y.db`, `in-memory database NAME`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("database file {}", path.display()),
            Self::Uri(uri) => format!("database {uri}"),
            Self::Memory { name, .. } => format!("in-memory database {name}"),
        }
    }
}

/// What every connection of a manager is opened with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) options: SqliteOptions,
    pub(crate) location: Location,
    pub(crate) pragmas: Vec<(String, String)>,
}

impl Settings {
    pub(crate) fn new(options: SqliteOptions) -> Self {
        let location = Location::of(&options);
        let mut pragmas = options.effective_pragmas();
        if options.read_only {
            // A read-only connection cannot change the file's journal mode.
            pragmas.retain(|(name, _)| !bare_name(name).eq_ignore_ascii_case("journal_mode"));
        }
        Self {
            options,
            location,
            pragmas,
        }
    }

    pub(crate) fn flags(&self) -> OpenFlags {
        let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if self.options.read_only {
            flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
        } else {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
            if self.options.create || matches!(self.location, Location::Memory { .. }) {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
        }
        flags
    }
}

/// The identity of a file: whether the path still names the file a
/// connection opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Self(metadata.dev(), metadata.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Ok(Self(0, 0))
        }
    }
}

/// A connection ready for use.
pub(crate) struct Opened {
    pub(crate) conn: Connection,
    /// The database file's identity at open, for plain paths.
    pub(crate) file: Option<(PathBuf, FileId)>,
    /// Connection-level pragma values right after connect.
    pub(crate) session: Vec<(String, String)>,
}

/// Opens and sets up one connection. Blocking: runs on the connection's
/// own thread.
pub(crate) fn open(settings: &Settings) -> Result<Opened, SqliteError> {
    let location = &settings.location;
    let failed = |error: rusqlite::Error, doing: &str| diagnose(settings, error, doing);
    let conn = Connection::open_with_flags(location.target(), settings.flags())
        .map_err(|e| failed(e, "opening it"))?;
    conn.busy_timeout(settings.options.busy_timeout)
        .map_err(|e| failed(e, "setting busy_timeout"))?;
    apply_pragmas(&conn, &settings.pragmas, location)
        .map_err(|(error, doing)| failed(error, &doing))?;
    // The first read of the file: a corrupt file or a lock shows here, not
    // on the application's first query.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(|e| failed(e, "reading its schema"))?;
    if !settings.options.read_only && matches!(conn.is_readonly("main"), Ok(true)) {
        let message = format!(
            "{} is read-only to this process (file permissions, an immutable flag or a read-only mount) and read_only is off (SQLITE_READONLY)",
            location.describe()
        );
        return Err(SqliteError::Open {
            message,
            class: ErrorClass::Permanent,
            source: Some(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_READONLY),
                None,
            )),
        });
    }
    let file = match location.file() {
        Some(path) => FileId::of(path).ok().map(|id| (path.to_owned(), id)),
        None => None,
    };
    let session =
        snapshot(&conn, &settings.pragmas).map_err(|e| failed(e, "reading its pragmas"))?;
    run_setup(&conn, settings).map_err(|(error, doing)| failed(error, &doing))?;
    Ok(Opened {
        conn,
        file,
        session,
    })
}

/// Sets each pragma; on failure, the error and which pragma it was.
pub(crate) fn apply_pragmas(
    conn: &Connection,
    pragmas: &[(String, String)],
    location: &Location,
) -> Result<(), (rusqlite::Error, String)> {
    for (name, value) in pragmas {
        let sql = format!("PRAGMA {name} = {value}");
        let doing = || format!("setting `{sql}`");
        // Some pragmas answer with a row (journal_mode: the mode in force).
        let answer: Option<String> = conn
            .prepare(&sql)
            .and_then(|mut statement| {
                let mut rows = statement.query([])?;
                Ok(rows.next()?.and_then(|row| row.get(0).ok()))
            })
            .map_err(|error| (error, doing()))?;
        if bare_name(name).eq_ignore_ascii_case("journal_mode")
            && let (Some(mode), Location::File(_) | Location::Uri(_)) = (&answer, location)
            && !mode.eq_ignore_ascii_case(value)
        {
            tracing::warn!(
                database = %location.describe(), requested = %value, %mode,
                "SQLite kept another journal mode than the one configured"
            );
        }
    }
    Ok(())
}

/// Runs the setup statements in order; on failure, the error and which
/// statement it was.
fn run_setup(conn: &Connection, settings: &Settings) -> Result<(), (rusqlite::Error, String)> {
    for statement in &settings.options.setup_sql {
        conn.execute_batch(statement)
            .map_err(|error| (error, format!("running setup statement `{statement}`")))?;
    }
    Ok(())
}

/// The values of the connection-level pragmas the options do not set.
fn snapshot(
    conn: &Connection,
    configured: &[(String, String)],
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut values = Vec::new();
    for name in SESSION_PRAGMAS {
        if configured
            .iter()
            .any(|(set, _)| bare_name(set).eq_ignore_ascii_case(name))
        {
            continue;
        }
        let value: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
        values.push((name.to_owned(), value.to_string()));
    }
    Ok(values)
}

/// A full session reset, after any transaction was rolled back: temporary
/// objects dropped, attached databases detached, pragmas set again, then
/// the setup statements run again.
pub(crate) fn reset_session(
    conn: &Connection,
    settings: &Settings,
    session: &[(String, String)],
) -> Result<(), SqliteError> {
    let temporary: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, name FROM temp.sqlite_schema \
             WHERE type IN ('view', 'trigger', 'table') AND name NOT LIKE 'sqlite_%' \
             ORDER BY type = 'table'",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name) in temporary {
        let name = name.replace('"', "\"\"");
        conn.execute_batch(&format!("DROP {kind} IF EXISTS temp.\"{name}\""))?;
    }
    let attached: Vec<String> = conn
        .prepare("SELECT name FROM pragma_database_list WHERE name NOT IN ('main', 'temp')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in attached {
        conn.execute_batch(&format!("DETACH \"{}\"", name.replace('"', "\"\"")))?;
    }
    apply_pragmas(conn, &settings.pragmas, &settings.location).map_err(|(error, _)| error)?;
    apply_pragmas(conn, session, &settings.location).map_err(|(error, _)| error)?;
    run_setup(conn, settings).map_err(|(error, doing)| diagnose(settings, error, &doing))?;
    Ok(())
}

/// Turns a failure while opening or setting up a connection into an error
/// that names its cause and says whether retrying can help.
fn diagnose(settings: &Settings, error: rusqlite::Error, doing: &str) -> SqliteError {
    let location = &settings.location;
    let database = location.describe();
    let Some(code) = error.sqlite_error().map(|e| e.extended_code) else {
        return SqliteError::Open {
            message: format!("{database}: {error} while {doing}"),
            class: ErrorClass::Permanent,
            source: Some(error),
        };
    };
    let code_text = describe_code(code);
    let (message, class) = match code & 0xff {
        ffi::SQLITE_BUSY => (
            format!(
                "{database} is locked by another connection or process: still locked after busy_timeout ({:?}) while {doing} ({code_text})",
                settings.options.busy_timeout
            ),
            ErrorClass::Transient,
        ),
        ffi::SQLITE_LOCKED => (
            format!("{database} is locked by another connection while {doing} ({code_text})"),
            ErrorClass::Transient,
        ),
        ffi::SQLITE_CANTOPEN => match location.file() {
            Some(path) => cannot_open(path, settings.options.create, settings.options.read_only),
            None => (
                format!("cannot open {database} ({code_text})"),
                ErrorClass::Permanent,
            ),
        },
        ffi::SQLITE_CORRUPT => (
            format!("{database} is corrupt ({code_text})"),
            ErrorClass::Permanent,
        ),
        ffi::SQLITE_NOTADB => (
            format!(
                "{database} is not an SQLite database, or is corrupt or encrypted ({code_text})"
            ),
            ErrorClass::Permanent,
        ),
        ffi::SQLITE_READONLY | ffi::SQLITE_PERM | ffi::SQLITE_AUTH => (
            format!(
                "{database} cannot be written while {doing}: permission denied or read-only ({code_text})"
            ),
            ErrorClass::Permanent,
        ),
        _ => {
            let class = crate::error::class_of(&error);
            let message = match &error {
                rusqlite::Error::SqliteFailure(_, Some(text))
                | rusqlite::Error::SqlInputError { msg: text, .. } => text.clone(),
                other => other.to_string(),
            };
            (
                format!("{database}: {message} while {doing} ({code_text})"),
                class,
            )
        }
    };
    SqliteError::Open {
        message,
        class,
        source: Some(error),
    }
}

/// Why SQLite could not open the file at `path`, found by looking at the
/// file system: a missing file or folder, a folder in its place, no
/// permission, or too many open files (the one transient case).
fn cannot_open(path: &Path, create: bool, read_only: bool) -> (String, ErrorClass) {
    let shown = path.display();
    let permanent = |text: String| (format!("{text} (SQLITE_CANTOPEN)"), ErrorClass::Permanent);
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            permanent(format!("database path {shown} is a folder, not a file"))
        }
        Ok(_) => match std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
        {
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                permanent(format!("database file {shown}: permission denied"))
            }
            Err(error) => (
                format!("cannot open database file {shown}: {error} (SQLITE_CANTOPEN)"),
                ErrorClass::Transient,
            ),
            Ok(_) => permanent(format!(
                "cannot create the journal or WAL files next to database file {shown}: is its folder writable?"
            )),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                permanent(format!(
                    "folder {} of database file {shown} does not exist",
                    parent.display()
                ))
            } else if !create || read_only {
                permanent(format!(
                    "database file {shown} does not exist and create is off"
                ))
            } else {
                permanent(format!(
                    "database file {shown} cannot be created in {}",
                    parent.display()
                ))
            }
        }
        Err(error) => permanent(format!("database file {shown}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(options: SqliteOptions) -> Settings {
        Settings::new(options)
    }

    fn open_error(options: SqliteOptions) -> SqliteError {
        match open(&settings(options)) {
            Ok(_) => panic!("opened"),
            Err(error) => error,
        }
    }

    #[test]
    fn a_missing_file_with_create_off_is_permanent_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.db");
        let error = open_error(SqliteOptions {
            create: false,
            ..SqliteOptions::file(&path)
        });
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert_eq!(
            error.to_string(),
            format!(
                "database file {} does not exist and create is off (SQLITE_CANTOPEN)",
                path.display()
            )
        );
    }

    #[test]
    fn a_missing_folder_and_a_folder_in_place_of_the_file_are_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let error = open_error(SqliteOptions::file(dir.path().join("no/such/x.db")));
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert!(
            error.to_string().contains("no/such of database file"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .ends_with("does not exist (SQLITE_CANTOPEN)"),
            "{error}"
        );

        let error = open_error(SqliteOptions::file(dir.path()));
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert!(
            error.to_string().contains("is a folder, not a file"),
            "{error}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let error = open_error(SqliteOptions::file(&path));
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert_eq!(error.code().map(|c| c & 0xff), Some(ffi::SQLITE_NOTADB));
        assert!(
            error
                .to_string()
                .contains("is not an SQLite database, or is corrupt"),
            "{error}"
        );
    }

    #[test]
    fn a_locked_file_is_transient_and_names_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let error = open_error(SqliteOptions {
            busy_timeout: std::time::Duration::from_millis(20),
            ..SqliteOptions::file(&path)
        });
        assert_eq!(error.class(), ErrorClass::Transient);
        assert!(error.is_busy());
        let text = error.to_string();
        assert!(
            text.contains("is locked by another connection or process"),
            "{text}"
        );
        assert!(text.contains("(SQLITE_BUSY: "), "{text}");
    }

    #[test]
    fn a_locked_shared_cache_is_transient() {
        let options = SqliteOptions {
            memory_name: Some(format!("locked-{}", std::process::id())),
            ..SqliteOptions::in_memory()
        };
        let settings = settings(options);
        let holder =
            Connection::open_with_flags(settings.location.target(), settings.flags()).unwrap();
        holder
            .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE")
            .unwrap();
        let error = match open(&settings) {
            Ok(_) => panic!("opened"),
            Err(error) => error,
        };
        assert_eq!(error.class(), ErrorClass::Transient);
        assert!(
            error.to_string().contains("SQLITE_LOCKED_SHAREDCACHE"),
            "{error}"
        );
    }

    #[test]
    fn a_pragma_sqlite_rejects_is_permanent() {
        let error = open_error(SqliteOptions {
            pragmas: vec![("encoding".into(), "'bogus'".into())],
            ..SqliteOptions::in_memory()
        });
        assert_eq!(error.class(), ErrorClass::Permanent);
        assert!(
            error
                .to_string()
                .contains("unsupported encoding: bogus while setting `PRAGMA encoding = 'bogus'`"),
            "{error}"
        );
    }
}
