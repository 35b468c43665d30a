//! Structured logs through tracing, on standard error: one readable line
//! per event, or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::{InvalidConfig, LogFormat};

/// Installs the process's subscriber: `format`, events passing `level` (a
/// tracing filter such as `"info"` or `"info,tower_http=debug"`).
///
/// # Errors
/// A filter that does not parse, named as the key `log_level`.
pub fn init(format: LogFormat, level: &str) -> Result<(), InvalidConfig> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Already installed (a test, say): keep that one.
    drop(installed);
    Ok(())
}

/// `level` as a tracing filter.
///
/// # Errors
/// A filter that does not parse, named as the key `log_level`.
pub fn filter(level: &str) -> Result<EnvFilter, InvalidConfig> {
    EnvFilter::try_new(level).map_err(|error| InvalidConfig {
        key: "log_level".into(),
        origin: None,
        message: format!("{level:?} is not a tracing filter: {error}"),
    })
}
