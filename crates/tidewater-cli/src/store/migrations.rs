//! The schema's versions: each migration once per database, in order,
//! recorded in the table `tidewater_migrations` (version, name, applied at).
//! One SQL file per dialect, under `migrations/<dialect>/`.

/// One version of the schema.
#[derive(Debug)]
pub struct Migration {
    /// Its number: 1, 2, ... in the order they apply.
    pub version: i64,
    /// What it does, in a word or three.
    pub name: &'static str,
    /// Its SQL for SQLite.
    pub sqlite: &'static str,
    /// Its SQL for PostgreSQL.
    pub postgres: &'static str,
    /// Its SQL for MySQL and MariaDB (one statement at a time: DDL commits
    /// by itself there, so each statement must be safe to run again).
    pub mysql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts_transfers_ledger",
        sqlite: include_str!("../../migrations/sqlite/0001_accounts_transfers_ledger.sql"),
        postgres: include_str!("../../migrations/postgres/0001_accounts_transfers_ledger.sql"),
        mysql: include_str!("../../migrations/mysql/0001_accounts_transfers_ledger.sql"),
    },
    Migration {
        version: 2,
        name: "amount_and_balance_limit",
        sqlite: include_str!("../../migrations/sqlite/0002_amount_and_balance_limit.sql"),
        postgres: include_str!("../../migrations/postgres/0002_amount_and_balance_limit.sql"),
        mysql: include_str!("../../migrations/mysql/0002_amount_and_balance_limit.sql"),
    },
];

/// The migrations not in `applied`, in order.
///
/// # Errors
/// When `applied` holds a version this program does not know: the
/// database was migrated by a newer one.
pub(crate) fn pending(applied: &[i64]) -> Result<Vec<&'static Migration>, String> {
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(unknown) = applied.iter().find(|v| **v > newest) {
        return Err(format!(
            "the database's schema is at version {unknown}, newer than this program knows ({newest}): run a newer tidewater"
        ));
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

/// The statements of a script, for servers that take one at a time:
/// split at `;`, comment lines dropped, empty ones skipped.
pub(crate) fn statements(script: &str) -> Vec<String> {
    script
        .split(';')
        .map(|chunk| {
            chunk
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .filter(|statement| !statement.is_empty())
        .collect()
}

/// The name of the table of applied versions.
pub(crate) const TABLE: &str = "tidewater_migrations";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_order_and_unknown_ones_refused() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(pending(&[]).unwrap().len(), MIGRATIONS.len());
        assert!(pending(&[1, 2]).unwrap().is_empty());
        assert_eq!(pending(&[1]).unwrap()[0].version, 2);
        assert!(pending(&[1, 99]).unwrap_err().contains("version 99"));
    }

    #[test]
    fn scripts_split_into_statements() {
        let mysql = statements(MIGRATIONS[0].mysql);
        assert_eq!(mysql.len(), 3);
        assert!(
            mysql
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
        let mysql = statements(MIGRATIONS[1].mysql);
        assert_eq!(mysql.len(), 2);
        assert!(
            mysql.iter().all(|s| s.starts_with("ALTER TABLE")
                && s.contains(&super::super::MAX_AMOUNT.to_string()))
        );
    }

    #[test]
    fn every_dialect_states_the_documented_limit() {
        let limit = super::super::MAX_AMOUNT.to_string();
        for script in [
            MIGRATIONS[1].sqlite,
            MIGRATIONS[1].postgres,
            MIGRATIONS[1].mysql,
        ] {
            let numbers: Vec<&str> = script
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| n.len() > 4)
                .collect();
            assert!(
                !numbers.is_empty() && numbers.iter().all(|n| *n == limit),
                "{numbers:?}"
            );
        }
    }
}
