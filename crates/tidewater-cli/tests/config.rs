//! The configuration layers, through the real binary (`--print-config`,
//! exit codes, messages) and through `tidewater_cli::config::load`:
//! defaults < TOML file < `TIDEWATER_*` environment < flags; a wrong value
//! is refused with exit code 2 and a message naming the key and where its
//! value came from; passwords never printed.
//!
//! The binary runs in an empty temporary folder with an empty environment
//! (but `PATH`), so no `tidewater.toml` or `DATABASE_URL` of the machine
//! leaks in.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tidewater_cli::config::{self, Origin, Override};
use tokio::process::Command;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    /// `None` when a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tidewater ARGS` in `dir` with only `PATH` and `env` set; a run
/// that does not exit within 30 s (one that went on to serve, say) fails.
async fn tidewater(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the tidewater binary starts");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tidewater {args:?} did not exit within 30 s"))
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `tidewater --print-config ARGS`, which must succeed: the printed TOML.
async fn printed(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (String, toml::Table) {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let run = tidewater(dir, env, &all).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let table: toml::Table = toml::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("--print-config printed no TOML: {error}\n{run:#?}"));
    (run.stdout, table)
}

/// The value at a dotted key, printed as TOML writes it.
fn at(table: &toml::Table, key: &str) -> String {
    let mut parts = key.split('.');
    let mut value = table
        .get(parts.next().unwrap())
        .unwrap_or_else(|| panic!("no {key} in {table:#?}"));
    for part in parts {
        value = value
            .get(part)
            .unwrap_or_else(|| panic!("no {key} in {table:#?}"));
    }
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A run refused as a wrong configuration: exit code 2, nothing on
/// stdout, one message on stderr naming `key` and `origin`.
fn assert_refused(run: &Run, key: &str, origin: &str) {
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(run.stdout, "", "{run:#?}");
    let prefix = format!("tidewater: invalid configuration: {key} (from {origin})");
    assert!(
        run.stderr.starts_with(&prefix),
        "expected {prefix:?}: {run:#?}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn print_config_shows_the_defaults_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (text, table) = printed(dir.path(), &[], &[]).await;
    assert!(
        text.starts_with(
            "# tidewater serve: effective configuration (flags > environment > no file > defaults)\n"
        ),
        "{text}"
    );
    assert_eq!(at(&table, "bind"), "127.0.0.1:8080");
    assert_eq!(at(&table, "database_url"), "sqlite://tidewater.db");
    assert_eq!(at(&table, "request_timeout"), "10s");
    assert_eq!(at(&table, "log_format"), "human");
    assert_eq!(at(&table, "log_level"), "info");
    assert_eq!(at(&table, "pool.name"), "tidewater");
    assert_eq!(at(&table, "pool.max_size"), "50");
    assert_eq!(at(&table, "pool.acquire_timeout"), "5s");
    assert_eq!(at(&table, "pool.alerts.window"), "1m");
    // Only the table of the backend in use, without its path.
    assert!(table.contains_key("sqlite"), "{text}");
    assert!(
        !table["sqlite"].as_table().unwrap().contains_key("path"),
        "{text}"
    );
    assert!(
        !table.contains_key("postgres") && !table.contains_key("mysql"),
        "{text}"
    );
    // It only prints: no database was opened or created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn print_config_redacts_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        dir.path(),
        &[],
        &[
            "--print-config",
            "--database-url",
            "postgres://app:s3cret@db.internal:5432/bank",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        !run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"),
        "{run:#?}"
    );
    let table: toml::Table = toml::from_str(&run.stdout).unwrap();
    assert_eq!(
        at(&table, "database_url"),
        "postgres://app:***@db.internal:5432/bank"
    );
    assert!(table.contains_key("postgres"), "{}", run.stdout);
    assert!(
        !table["postgres"].as_table().unwrap().contains_key("url"),
        "{}",
        run.stdout
    );
    assert!(!table.contains_key("sqlite") && !table.contains_key("mysql"));

    // From the environment, and a MySQL URL.
    let run = tidewater(
        dir.path(),
        &[("DATABASE_URL", "mysql://root:hunter2@127.0.0.1:3306/bank")],
        &["--print-config"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(!run.stdout.contains("hunter2"), "{run:#?}");
    let table: toml::Table = toml::from_str(&run.stdout).unwrap();
    assert_eq!(
        at(&table, "database_url"),
        "mysql://root:***@127.0.0.1:3306/bank"
    );
    assert!(table.contains_key("mysql"), "{}", run.stdout);
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file_over_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "service.toml",
        r#"
bind = "127.0.0.1:7000"
request_timeout = "7s"
log_level = "debug"

[pool]
max_size = 3
min_idle = 2

[pool.alerts]
window = "30s"
"#,
    );
    let file = file.to_str().unwrap();
    let env = [
        ("TIDEWATER_POOL__MAX_SIZE", "5"),
        ("TIDEWATER_REQUEST_TIMEOUT", "8s"),
        ("TIDEWATER_POOL__ALERTS__WINDOW", "45s"),
    ];

    // The file over the defaults.
    let (text, table) = printed(dir.path(), &[], &["--config", file]).await;
    assert!(
        text.starts_with(&format!(
            "# tidewater serve: effective configuration (flags > environment > {file} > defaults)"
        )),
        "{text}"
    );
    assert_eq!(at(&table, "bind"), "127.0.0.1:7000");
    assert_eq!(at(&table, "request_timeout"), "7s");
    assert_eq!(at(&table, "log_level"), "debug");
    assert_eq!(at(&table, "pool.max_size"), "3");
    assert_eq!(at(&table, "pool.min_idle"), "2");
    assert_eq!(at(&table, "pool.alerts.window"), "30s");
    // Keys the file does not set keep their defaults, beside those it sets.
    assert_eq!(at(&table, "pool.acquire_timeout"), "5s");
    assert_eq!(at(&table, "pool.name"), "tidewater");
    assert_eq!(at(&table, "pool.alerts.utilization_threshold"), "0.8");
    assert_eq!(at(&table, "database_url"), "sqlite://tidewater.db");

    // The environment over the file.
    let (_, table) = printed(dir.path(), &env, &["--config", file]).await;
    assert_eq!(at(&table, "pool.max_size"), "5");
    assert_eq!(at(&table, "request_timeout"), "8s");
    assert_eq!(at(&table, "pool.alerts.window"), "45s");
    assert_eq!(at(&table, "pool.min_idle"), "2");
    assert_eq!(at(&table, "bind"), "127.0.0.1:7000");

    // Flags over the environment; `--set` after the named flags.
    let (_, table) = printed(
        dir.path(),
        &env,
        &[
            "--config",
            file,
            "--max-size",
            "9",
            "--request-timeout",
            "9s",
        ],
    )
    .await;
    assert_eq!(at(&table, "pool.max_size"), "9");
    assert_eq!(at(&table, "request_timeout"), "9s");
    assert_eq!(at(&table, "pool.alerts.window"), "45s");
    assert_eq!(at(&table, "pool.min_idle"), "2");
    assert_eq!(at(&table, "log_level"), "debug");
    let (_, table) = printed(
        dir.path(),
        &env,
        &[
            "--config",
            file,
            "--set",
            "pool.max_size=11",
            "--max-size",
            "9",
            "--set",
            "pool.alerts.window=50s",
        ],
    )
    .await;
    assert_eq!(at(&table, "pool.max_size"), "11");
    assert_eq!(at(&table, "pool.alerts.window"), "50s");

    // A later layer may fix a value an earlier one got wrong: the whole is
    // checked, not each layer.
    let zero = write(dir.path(), "zero.toml", "[pool]\nmax_size = 0\n");
    let (_, table) = printed(
        dir.path(),
        &[("TIDEWATER_POOL__MAX_SIZE", "4")],
        &["--config", zero.to_str().unwrap()],
    )
    .await;
    assert_eq!(at(&table, "pool.max_size"), "4");
}

#[tokio::test]
async fn tidewater_toml_in_the_current_folder_is_read_without_config() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tidewater.toml", "[pool]\nmax_size = 7\n");
    let (text, table) = printed(dir.path(), &[], &[]).await;
    assert!(text.contains("tidewater.toml > defaults)"), "{text}");
    assert_eq!(at(&table, "pool.max_size"), "7");
    // --config names another file instead.
    let other = write(dir.path(), "other.toml", "[pool]\nmax_size = 8\n");
    let (_, table) = printed(dir.path(), &[], &["--config", other.to_str().unwrap()]).await;
    assert_eq!(at(&table, "pool.max_size"), "8");
}

#[tokio::test]
async fn the_database_url_layers() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "service.toml",
        "database_url = \"postgres://file@db/bank\"\n",
    );
    let file = file.to_str().unwrap();
    let (_, table) = printed(dir.path(), &[], &["--config", file]).await;
    assert_eq!(at(&table, "database_url"), "postgres://file@db/bank");
    let database_url = [("DATABASE_URL", "postgres://plain@db/bank")];
    let (_, table) = printed(dir.path(), &database_url, &["--config", file]).await;
    assert_eq!(at(&table, "database_url"), "postgres://plain@db/bank");
    // TIDEWATER_DATABASE_URL wins over DATABASE_URL, whatever their order.
    let both = [
        ("DATABASE_URL", "postgres://plain@db/bank"),
        ("TIDEWATER_DATABASE_URL", "postgres://prefixed@db/bank"),
    ];
    let (_, table) = printed(dir.path(), &both, &["--config", file]).await;
    assert_eq!(at(&table, "database_url"), "postgres://prefixed@db/bank");
    let (_, table) = printed(
        dir.path(),
        &both,
        &["--config", file, "--database-url", "sqlite://flag.db"],
    )
    .await;
    assert_eq!(at(&table, "database_url"), "sqlite://flag.db");
    assert!(table.contains_key("sqlite") && !table.contains_key("postgres"));
}

#[tokio::test]
async fn a_wrong_value_exits_2_naming_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();

    let run = tidewater(path, &[], &["--print-config", "--set", "pool.max_size=0"]).await;
    assert_refused(&run, "pool.max_size", "flag --set pool.max_size=0");
    assert!(run.stderr.contains("allowed: 1 to 10000"), "{run:#?}");

    let run = tidewater(path, &[], &["--print-config", "--max-size", "ten"]).await;
    assert_refused(&run, "pool.max_size", "flag --max-size");

    let env = [("TIDEWATER_POOL__ACQUIRE_TIMEOUT", "banana")];
    let run = tidewater(path, &env, &["--print-config"]).await;
    assert_refused(
        &run,
        "pool.acquire_timeout",
        "environment variable TIDEWATER_POOL__ACQUIRE_TIMEOUT",
    );
    assert!(run.stderr.contains("banana"), "{run:#?}");

    let env = [("TIDEWATER_POOL__MAX_SIZE", "0")];
    let run = tidewater(path, &env, &["--print-config"]).await;
    assert_refused(
        &run,
        "pool.max_size",
        "environment variable TIDEWATER_POOL__MAX_SIZE",
    );

    let file = write(path, "typo.toml", "[pool]\nmax_sise = 4\n");
    let run = tidewater(
        path,
        &[],
        &["--print-config", "--config", file.to_str().unwrap()],
    )
    .await;
    assert_refused(&run, "pool.max_sise", &format!("file {}", file.display()));
    assert!(run.stderr.contains("unknown field `max_sise`"), "{run:#?}");

    // An unknown key in the file is blamed on the file, not on another
    // layer that set something else.
    let file = write(path, "colour.toml", "colour = \"blue\"\n");
    let run = tidewater(
        path,
        &[("TIDEWATER_BIND", "127.0.0.1:0")],
        &[
            "--print-config",
            "--config",
            file.to_str().unwrap(),
            "--max-size",
            "3",
        ],
    )
    .await;
    assert_refused(&run, "colour", &format!("file {}", file.display()));

    let file = write(path, "wrong_type.toml", "request_timeout = 10\n");
    let run = tidewater(
        path,
        &[],
        &["--print-config", "--config", file.to_str().unwrap()],
    )
    .await;
    assert_refused(&run, "request_timeout", &format!("file {}", file.display()));

    let run = tidewater(
        path,
        &[],
        &["--print-config", "--database-url", "ftp://db/bank"],
    )
    .await;
    assert_refused(&run, "database_url", "flag --database-url");

    let env = [("TIDEWATER_POSTGRES__URL", "postgres://elsewhere/bank")];
    let run = tidewater(path, &env, &["--print-config"]).await;
    assert_refused(
        &run,
        "postgres.url",
        "environment variable TIDEWATER_POSTGRES__URL",
    );

    let run = tidewater(
        path,
        &[],
        &["--print-config", "--log-level", "tidewater=[["],
    )
    .await;
    assert_refused(&run, "log_level", "flag --log-level");

    // A file that is not there, or not TOML: the file is named.
    let missing = path.join("missing.toml");
    let run = tidewater(
        path,
        &[],
        &["--print-config", "--config", missing.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "tidewater: invalid configuration: file {}: cannot read it",
            missing.display()
        )),
        "{run:#?}"
    );
    let broken = write(path, "broken.toml", "[pool\n");
    let run = tidewater(
        path,
        &[],
        &["--print-config", "--config", broken.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.starts_with(&format!(
            "tidewater: invalid configuration: file {}: ",
            broken.display()
        )),
        "{run:#?}"
    );

    // The temporary folder holds only the test's files: nothing started.
    assert!(!path.join("tidewater.db").exists());
}

#[tokio::test]
async fn a_wrong_value_stops_the_start_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    // Without --print-config: it would serve (on a free port, in memory)
    // if the value were taken.
    let serve = ["--bind", "127.0.0.1:0", "--database-url", "sqlite::memory:"];

    let mut args = serve.to_vec();
    args.extend(["--set", "pool.max_size=0"]);
    let run = tidewater(path, &[], &args).await;
    assert_refused(&run, "pool.max_size", "flag --set pool.max_size=0");

    let env = [("TIDEWATER_POOL__ACQUIRE_TIMEOUT", "banana")];
    let run = tidewater(path, &env, &serve).await;
    assert_refused(
        &run,
        "pool.acquire_timeout",
        "environment variable TIDEWATER_POOL__ACQUIRE_TIMEOUT",
    );

    let file = write(path, "typo.toml", "[pool]\nmax_sise = 4\n");
    let mut args = serve.to_vec();
    args.extend(["--config", file.to_str().unwrap()]);
    let run = tidewater(path, &[], &args).await;
    assert_refused(&run, "pool.max_sise", &format!("file {}", file.display()));

    let mut args = serve.to_vec();
    args.extend(["--log-level", "tidewater=[["]);
    let run = tidewater(path, &[], &args).await;
    assert_refused(&run, "log_level", "flag --log-level");

    // `serve` spelled out is the same command.
    let mut args = vec!["serve"];
    args.extend(serve);
    args.extend(["--set", "pool.min_idle=99"]);
    let run = tidewater(path, &[], &args).await;
    assert_refused(&run, "pool.min_idle", "flag --set pool.min_idle=99");
}

// Through `config::load`: cheaper, and the origins as values.

fn flag(key: &str, value: &str) -> Override {
    Override {
        key: key.to_owned(),
        value: value.to_owned(),
        flag: format!("--set {key}={value}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn load_layers_and_origins() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "tidewater.toml",
        "[pool]\nmax_size = 3\nmin_idle = 1\n\n[postgres]\nstatement_timeout = \"2s\"\n",
    );

    // The file in `dir` is read when none is given.
    let loaded = config::load(None, dir.path(), env(&[]), &[]).unwrap();
    assert_eq!(loaded.file.as_deref(), Some(file.as_path()));
    assert_eq!(loaded.config.pool.max_size, 3);
    assert_eq!(
        loaded.config.postgres.statement_timeout,
        Some(Duration::from_secs(2))
    );
    assert_eq!(loaded.config.pool.acquire_timeout, Duration::from_secs(5));

    let loaded = config::load(
        None,
        dir.path(),
        env(&[
            ("TIDEWATER_POOL__MAX_SIZE", "5"),
            ("TIDEWATER_POOL__MIN_IDLE", "2"),
        ]),
        &[flag("pool.max_size", "9")],
    )
    .unwrap();
    assert_eq!(loaded.config.pool.max_size, 9);
    assert_eq!(loaded.config.pool.min_idle, 2);

    // Each layer is named when its value is wrong.
    let error =
        config::load(None, dir.path(), env(&[]), &[flag("pool.min_idle", "4")]).unwrap_err();
    assert_eq!(error.key, "pool.min_idle");
    assert_eq!(
        error.origin,
        Some(Origin::Flag("--set pool.min_idle=4".into()))
    );
    let error = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_POOL__MAX_SIZE", "0")]),
        &[],
    )
    .unwrap_err();
    assert_eq!(error.key, "pool.max_size");
    assert_eq!(
        error.origin,
        Some(Origin::Env("TIDEWATER_POOL__MAX_SIZE".into()))
    );
    write(dir.path(), "tidewater.toml", "[pool]\nmax_size = 0\n");
    let error = config::load(None, dir.path(), env(&[]), &[]).unwrap_err();
    assert_eq!(error.key, "pool.max_size");
    assert_eq!(error.origin, Some(Origin::File(file.clone())));
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
}

#[test]
fn load_passes_setup_sql_to_the_backends() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tidewater.toml",
        "database_url = \"postgres://app@db/bank\"\n\n[postgres]\nsetup_sql = [\"SET search_path = bank\", \"SET TIME ZONE 'UTC'\"]\n\n[sqlite]\nsetup_sql = [\"CREATE TEMP VIEW v AS SELECT 1\"]\n",
    );
    let loaded = config::load(
        None,
        dir.path(),
        env(&[(
            "TIDEWATER_MYSQL__SETUP_SQL",
            r#"["SET time_zone = '+00:00'"]"#,
        )]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.config.postgres.setup_sql,
        ["SET search_path = bank", "SET TIME ZONE 'UTC'"]
    );
    assert_eq!(
        loaded.config.sqlite.setup_sql,
        ["CREATE TEMP VIEW v AS SELECT 1"]
    );
    assert_eq!(loaded.config.mysql.setup_sql, ["SET time_zone = '+00:00'"]);
    match loaded.config.backend().unwrap() {
        config::Backend::Postgres(options) => {
            assert_eq!(options.url, "postgres://app@db/bank");
            assert_eq!(options.setup_sql.len(), 2);
        }
        other => panic!("not PostgreSQL: {other:?}"),
    }
}

#[test]
fn load_leaves_other_variables_alone() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = config::load(
        None,
        dir.path(),
        env(&[
            ("TIDEWATER_PG_BIN", "/usr/lib/postgresql/15/bin"),
            ("HOME", "/root"),
            ("POOL__MAX_SIZE", "0"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config, config::Config::default());
    assert_eq!(loaded.file, None);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("TIDEWATER_PG_BIN"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn load_refuses_choosing_the_database_outside_database_url() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["sqlite.path", "postgres.url", "mysql.url"] {
        let error =
            config::load(None, dir.path(), env(&[]), &[flag(key, "somewhere")]).unwrap_err();
        assert_eq!(error.key, key);
        assert!(error.message.contains("database_url"), "{error}");
    }
}

#[test]
fn load_checks_the_log_filter() {
    let dir = tempfile::tempdir().unwrap();
    let error = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_LOG_LEVEL", "tidewater=[[")]),
        &[],
    )
    .unwrap_err();
    assert_eq!(error.key, "log_level");
    assert_eq!(
        error.origin,
        Some(Origin::Env("TIDEWATER_LOG_LEVEL".into()))
    );
    let loaded = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_LOG_LEVEL", "info,tower_http=debug")]),
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config.log_level, "info,tower_http=debug");
}

#[test]
fn load_reads_the_pool_keys_renamed_in_0_2_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tidewater.toml",
        "[pool]\nconnect_backoff_initial = \"20ms\"\nbreaker_enabled = false\n",
    );
    let loaded = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_POOL__CONNECT_BACKOFF_MAX", "2s")]),
        &[flag("pool.breaker_failure_threshold", "3")],
    )
    .unwrap();
    let pool = &loaded.config.pool;
    assert_eq!(pool.connect_backoff.initial, Duration::from_millis(20));
    assert_eq!(pool.connect_backoff.max, Duration::from_secs(2));
    assert!(!pool.breaker.enabled);
    assert_eq!(pool.breaker.failure_threshold, 3);
    let warnings = loaded.warnings.join("\n");
    assert_eq!(loaded.warnings.len(), 4, "{warnings}");
    for expected in [
        "pool.connect_backoff_initial (from file ",
        "is now pool.connect_backoff.initial;",
        "is now pool.breaker.enabled;",
        "pool.connect_backoff_max (from environment variable TIDEWATER_POOL__CONNECT_BACKOFF_MAX) is now pool.connect_backoff.max (TIDEWATER_POOL__CONNECT_BACKOFF__MAX)",
        "pool.breaker_failure_threshold (from flag --set pool.breaker_failure_threshold=3) is now pool.breaker.failure_threshold;",
    ] {
        assert!(warnings.contains(expected), "{expected:?} in {warnings}");
    }

    // Across layers the later wins, whatever the name; a wrong value is
    // reported under the new key, from where the old one came.
    write(
        dir.path(),
        "tidewater.toml",
        "[pool.connect_backoff]\ninitial = \"30ms\"\n",
    );
    let loaded = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_POOL__CONNECT_BACKOFF_INITIAL", "40ms")]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.config.pool.connect_backoff.initial,
        Duration::from_millis(40)
    );
    let error = config::load(
        None,
        dir.path(),
        env(&[("TIDEWATER_POOL__BREAKER_FAILURE_THRESHOLD", "0")]),
        &[],
    )
    .unwrap_err();
    assert_eq!(error.key, "pool.breaker.failure_threshold");
    assert_eq!(
        error.origin,
        Some(Origin::Env(
            "TIDEWATER_POOL__BREAKER_FAILURE_THRESHOLD".into()
        ))
    );
}

#[test]
fn load_refuses_a_key_given_under_its_old_and_new_names_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "both.toml",
        "[pool]\nbreaker_enabled = false\n\n[pool.breaker]\nenabled = true\n",
    );
    let refusals = [
        config::load(Some(&file), dir.path(), env(&[]), &[]).unwrap_err(),
        config::load(
            None,
            dir.path(),
            env(&[
                ("TIDEWATER_POOL__BREAKER_ENABLED", "false"),
                ("TIDEWATER_POOL__BREAKER__ENABLED", "true"),
            ]),
            &[],
        )
        .unwrap_err(),
        config::load(
            None,
            dir.path(),
            env(&[]),
            &[
                flag("pool.breaker.enabled", "true"),
                flag("pool.breaker_enabled", "false"),
            ],
        )
        .unwrap_err(),
    ];
    let origins = [
        Origin::File(file.clone()),
        Origin::Env("TIDEWATER_POOL__BREAKER_ENABLED".into()),
        Origin::Flag("--set pool.breaker_enabled=false".into()),
    ];
    for (error, origin) in refusals.iter().zip(origins) {
        assert_eq!(error.key, "pool.breaker_enabled");
        assert_eq!(error.origin, Some(origin));
        assert!(error.message.contains("pool.breaker.enabled"), "{error}");
    }
}
