//! # tidewater-cli
//!
//! The `tidewater` command. `tidewater serve` (the default) runs the
//! reference service: accounts with balances, transfers between them and a
//! ledger, over HTTP, on SQLite (a file, by default `tidewater.db`),
//! PostgreSQL or MySQL/MariaDB, with the pool's health, metrics and a live
//! dashboard mounted from `tidewater-axum`.
//!
//! The service starts in-process too, as the tests do:
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidewater_cli::config::Config;
//!
//! let config = Config {
//!     bind: "127.0.0.1:0".parse()?,
//!     database_url: "sqlite:///tmp/bank.db".into(),
//!     ..Config::default()
//! };
//! let server = tidewater_cli::serve::start(config).await?;
//! println!("dashboard: {}", server.dashboard_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The API, the configuration keys and how to run it against PostgreSQL
//! or MySQL are in `docs/service.md`.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod logging;
pub mod serve;
pub mod store;
