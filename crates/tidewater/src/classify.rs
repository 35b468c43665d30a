//! Which server error codes are worth retrying, and what they mean: the
//! one table of PostgreSQL SQLSTATEs and the one of MySQL/MariaDB error
//! numbers that every tidewater backend and driver adapter classifies
//! with (tidewater-postgres, tidewater-mysql, tidewater-sqlx,
//! tidewater-diesel). It lives here, in the core, so that an adapter can
//! use it without depending on another adapter's driver.
//!
//! The tables only know codes. What has no code (a refused or reset
//! socket, a TLS handshake, a driver's own error enum, a URL that does not
//! parse) is each crate's to classify, as are rules about where an error
//! came from (a setup statement, see [`mysql_setup_error`]).
//!
//! # The three classes
//!
//! - [`Full`](ErrorClass::Full): the server is up but has no room for
//!   another connection, "too many clients": PostgreSQL `53300`, MySQL
//!   `1040`, and MySQL `1203` (the account at its `max_user_connections`).
//!   The connections the pool already has still work, so callers
//!   wait for one of them rather than fail fast.
//! - [`Permanent`](ErrorClass::Permanent): the server refused what was
//!   asked and will again: authentication and authorization (bad password,
//!   role or host not allowed, account locked, password expired), an
//!   unknown database, SQL or settings it rejects (syntax, unknown
//!   setting, bad value). The pool fails waiting callers at once; only a
//!   change of configuration helps.
//! - [`Transient`](ErrorClass::Transient): everything else, notably a
//!   server shutting down, crashed, starting up or in recovery (PostgreSQL
//!   `57P01`, `57P02`, `57P03`; MySQL `1053`), connection exceptions
//!   (PostgreSQL class `08`; MySQL client errors `2003`, `2006`, `2013`,
//!   MariaDB `1927` connection killed), an account at its hourly resource
//!   limit (MySQL `1226`), and conflicts (serialization
//!   failure, deadlock, lock wait timeout). A code these tables do not know
//!   errs towards retrying, which the pool bounds with its backoff and
//!   `acquire_timeout`.
//!
//! ```
//! use tidewater::ErrorClass;
//! use tidewater::classify;
//!
//! assert_eq!(classify::postgres_sqlstate("28P01"), ErrorClass::Permanent);
//! assert_eq!(classify::mysql_error(1040), ErrorClass::Full);
//! assert_eq!(classify::mysql_error_meaning(1045), Some("bad password or user"));
//! ```

use crate::ErrorClass;

/// The class of a PostgreSQL SQLSTATE.
///
/// Full: `53300` too many connections. Permanent: the classes `28`
/// (invalid authorization: `28P01` bad password, `28000` role not
/// allowed), `3D` (`3D000` unknown database), `42` (syntax error or access
/// rule violation), `0A` (feature not supported), `22` (data exception:
/// a setting's bad value) and `3F` (unknown schema). Transient: everything
/// else, among them `57P01` admin shutdown, `57P02` crash shutdown,
/// `57P03` cannot connect now, `08xxx` connection exceptions, `53xxx`
/// other insufficient resources, `40001` serialization failure and
/// `40P01` deadlock. These classes are the SQL standard's, so a SQLSTATE
/// from another server is read the same way.
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater::classify::postgres_sqlstate;
///
/// assert_eq!(postgres_sqlstate("53300"), ErrorClass::Full);
/// assert_eq!(postgres_sqlstate("3D000"), ErrorClass::Permanent);
/// assert_eq!(postgres_sqlstate("57P03"), ErrorClass::Transient);
/// ```
pub fn postgres_sqlstate(code: &str) -> ErrorClass {
    if code == "53300" {
        return ErrorClass::Full;
    }
    match code.get(..2) {
        Some("28" | "3D" | "42" | "0A" | "22" | "3F") => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// What a PostgreSQL SQLSTATE means, in an operator's words, for the
/// codes met when connecting and the conflicts a retry resolves; `None`
/// for the others (the server's own message says enough).
///
/// ```
/// use tidewater::classify::postgres_sqlstate_meaning;
///
/// assert_eq!(postgres_sqlstate_meaning("28P01"), Some("bad password"));
/// assert_eq!(postgres_sqlstate_meaning("42601"), None);
/// ```
pub fn postgres_sqlstate_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "28P01" => "bad password",
        "28000" => "role not allowed to connect",
        "3D000" => "unknown database",
        "57P01" => "server shutting down",
        "57P02" => "server crashed",
        "57P03" => "server starting up or in recovery",
        "53300" => "server has too many connections",
        "53000" => "server out of resources",
        "40001" => "serialization failure",
        "40P01" => "deadlock",
        "57014" => "query cancelled",
        _ => return None,
    })
}

/// The class of a MySQL or MariaDB error number (the server's, or the
/// client's `2xxx`).
///
/// Full: `1040` too many connections (`max_connections`), `1203` the
/// account's own `max_user_connections` (the pool's open connections
/// still work, so callers wait for them). Permanent: the
/// account, its password, its host or its database are not accepted:
/// `1044` no access to the database, `1045` bad password or user, `1049`
/// unknown database, `1129` host blocked, `1130` host not allowed, `1251`
/// auth method not supported, `1698` access denied to the account,
/// `1820`/`1862` password expired, `3118`/`4151` account locked.
/// Transient: everything else, notably `1226` the account's hourly
/// resource limit, `1205` lock wait timeout, `1213`
/// deadlock, `1053` shutdown, `1927` connection killed, and the client's
/// `2003` cannot connect, `2006` gone away, `2013` lost connection.
///
/// SQL the server rejects (`1064` syntax, `1193` unknown variable...) is
/// transient here: on a connection it says nothing about the connection.
/// Where the statement was the pool's own, see [`mysql_setup_error`].
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater::classify::mysql_error;
///
/// assert_eq!(mysql_error(1040), ErrorClass::Full);
/// assert_eq!(mysql_error(1045), ErrorClass::Permanent);
/// assert_eq!(mysql_error(2013), ErrorClass::Transient);
/// ```
pub fn mysql_error(code: u16) -> ErrorClass {
    match code {
        1044 | 1045 | 1049 | 1129 | 1130 | 1251 | 1698 | 1820 | 1862 | 3118 | 4151 => {
            ErrorClass::Permanent
        }
        1040 | 1203 => ErrorClass::Full,
        _ => ErrorClass::Transient,
    }
}

/// MySQL/MariaDB server errors a statement can meet that say nothing
/// against the statement: too many connections (`1040`, `1203`, `1226`),
/// shutdown (`1053`), lock wait timeout (`1205`), deadlock (`1213`),
/// interrupted (`1317`) or killed (`1927`), statement timeout (MariaDB
/// `1969`, MySQL `3024`).
const STATEMENT_NOT_AT_FAULT: [u16; 10] =
    [1040, 1053, 1203, 1205, 1213, 1226, 1317, 1927, 1969, 3024];

/// The class of a MySQL/MariaDB server error answering a setup statement,
/// one the pool runs on each new (or reset) session. A server error that
/// says nothing against the statement (too many connections, shutdown,
/// lock wait timeout, deadlock, interrupted or killed, statement timeout)
/// is classified by [`mysql_error`]; any other means the server refused
/// the statement itself (syntax, unknown variable, no privilege), which it
/// will do again: permanent.
///
/// Only for errors the server sent: a lost connection or a client error
/// (`2xxx`) is the caller's to classify.
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater::classify::mysql_setup_error;
///
/// assert_eq!(mysql_setup_error(1064), ErrorClass::Permanent); // syntax
/// assert_eq!(mysql_setup_error(1213), ErrorClass::Transient); // deadlock
/// assert_eq!(mysql_setup_error(1040), ErrorClass::Full);
/// ```
pub fn mysql_setup_error(code: u16) -> ErrorClass {
    if STATEMENT_NOT_AT_FAULT.contains(&code) {
        mysql_error(code)
    } else {
        ErrorClass::Permanent
    }
}

/// What a MySQL/MariaDB error number means, in an operator's words, for
/// the codes met when connecting and the conflicts a retry resolves;
/// `None` for the others.
///
/// ```
/// use tidewater::classify::mysql_error_meaning;
///
/// assert_eq!(mysql_error_meaning(1049), Some("unknown database"));
/// assert_eq!(mysql_error_meaning(1064), None);
/// ```
pub fn mysql_error_meaning(code: u16) -> Option<&'static str> {
    Some(match code {
        1040 => "server has too many connections (max_connections)",
        1044 => "user may not use that database",
        1045 => "bad password or user",
        1049 => "unknown database",
        1053 => "server shutting down",
        1129 => "host blocked after too many connection errors",
        1130 => "host not allowed to connect",
        1203 => "user has too many connections (max_user_connections)",
        1205 => "lock wait timeout",
        1213 => "deadlock",
        1226 => "user exceeded a resource limit",
        1251 => "authentication method not supported",
        1317 => "query interrupted",
        1698 => "access denied to this account",
        1820 | 1862 => "password expired",
        1927 => "connection killed",
        1969 => "statement timeout (max_statement_time)",
        2003 => "cannot connect",
        2006 => "server has gone away",
        2013 => "lost connection",
        3024 => "statement timeout (max_execution_time)",
        3118 | 4151 => "account locked",
        _ => return None,
    })
}

/// An error's message followed by those of the errors behind it that it
/// does not already end with, which drivers' own messages often leave out
/// ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer").
///
/// ```
/// use std::io;
/// #[derive(Debug)]
/// struct Handshake(io::Error);
/// impl std::fmt::Display for Handshake {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("error performing TLS handshake")
///     }
/// }
/// impl std::error::Error for Handshake {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
/// let error = Handshake(io::Error::other("invalid peer certificate"));
/// assert_eq!(
///     tidewater::classify::with_causes(&error),
///     "error performing TLS handshake: invalid peer certificate"
/// );
/// ```
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::{Full, Permanent, Transient};

    #[test]
    fn postgres_sqlstates_are_classified_as_documented() {
        for (code, class) in [
            ("57P01", Transient), // admin shutdown
            ("57P02", Transient), // crash shutdown
            ("57P03", Transient), // cannot connect now
            ("08006", Transient), // connection failure
            ("08001", Transient),
            ("53000", Transient), // insufficient resources
            ("53300", Full),      // too many connections
            ("28P01", Permanent), // bad password
            ("28000", Permanent), // role not allowed
            ("3D000", Permanent), // unknown database
            ("42601", Permanent), // syntax error
            ("42704", Permanent), // unknown setting
            ("0A000", Permanent), // feature not supported
            ("22023", Permanent), // invalid parameter value
            ("3F000", Permanent), // unknown schema
            ("40001", Transient), // serialization failure
            ("40P01", Transient), // deadlock
            ("57014", Transient), // query cancelled
            ("XX000", Transient), // internal error
            ("", Transient),
            ("2", Transient),
        ] {
            assert_eq!(postgres_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn mysql_errors_are_classified_as_documented() {
        for (code, class) in [
            (1040, Full),
            (1044, Permanent),
            (1045, Permanent),
            (1049, Permanent),
            (1129, Permanent),
            (1130, Permanent),
            (1251, Permanent),
            (1698, Permanent),
            (1820, Permanent),
            (1862, Permanent),
            (3118, Permanent),
            (4151, Permanent),
            (1053, Transient),
            (1203, Full),
            (1205, Transient),
            (1213, Transient),
            (1226, Transient),
            (1927, Transient),
            (1064, Transient),
            (2003, Transient),
            (2006, Transient),
            (2013, Transient),
        ] {
            assert_eq!(mysql_error(code), class, "{code}");
        }
    }

    #[test]
    fn mysql_setup_errors_are_permanent_unless_not_the_statements_fault() {
        for (code, class) in [
            (1064, Permanent), // syntax
            (1193, Permanent), // unknown variable
            (1231, Permanent), // bad value
            (1227, Permanent), // no privilege
            (1045, Permanent),
            (1040, Full),
            (1053, Transient),
            (1203, Full),
            (1205, Transient),
            (1213, Transient),
            (1226, Transient),
            (1317, Transient),
            (1927, Transient),
            (1969, Transient),
            (3024, Transient),
        ] {
            assert_eq!(mysql_setup_error(code), class, "{code}");
        }
    }

    #[test]
    fn meanings_name_the_cause() {
        assert_eq!(
            postgres_sqlstate_meaning("53300"),
            Some("server has too many connections")
        );
        assert_eq!(postgres_sqlstate_meaning("57P02"), Some("server crashed"));
        assert_eq!(mysql_error_meaning(1820), mysql_error_meaning(1862));
        assert_eq!(mysql_error_meaning(3118), Some("account locked"));
        assert_eq!(mysql_error_meaning(9999), None);
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        #[derive(Debug)]
        struct Wraps(std::io::Error, &'static str);
        impl std::fmt::Display for Wraps {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.1)
            }
        }
        impl std::error::Error for Wraps {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let repeats = Wraps(std::io::Error::other("refused"), "connect: refused");
        assert_eq!(with_causes(&repeats), "connect: refused");
        let hides = Wraps(std::io::Error::other("refused"), "connect");
        assert_eq!(with_causes(&hides), "connect: refused");
    }
}
