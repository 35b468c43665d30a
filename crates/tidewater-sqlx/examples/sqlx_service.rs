//! A small axum service on sqlx and tidewater-sqlx: notes in SQLite, with
//! health, Prometheus metrics and the live dashboard.
//!
//! ```text
//! cargo run -p tidewater-sqlx --example sqlx_service                       # ./notes.db
//! cargo run -p tidewater-sqlx --example sqlx_service -- sqlite:///tmp/n.db # any SQLite URL or file
//! curl -X POST localhost:3000/notes -H 'content-type: application/json' -d '{"text":"hi"}'
//! curl localhost:3000/notes
//! open http://localhost:3000/dashboard
//! ```
//!
//! Routes: `GET /notes`, `POST /notes`, `/health/live`, `/health/ready`,
//! `/metrics`, `/api/pools`, `/dashboard`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use tidewater::{Pool, PoolConfig};
use tidewater_axum::{Db, Monitoring, deadline_layer};
use tidewater_sqlx::SqlxManager;

/// The pool the service runs on.
pub type NotesPool = Pool<SqlxManager<Sqlite>>;

/// A note, as stored and served.
#[derive(Debug, Serialize, Deserialize)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// What it says.
    pub text: String,
}

/// The body of `POST /notes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewNote {
    /// What it says.
    pub text: String,
}

/// Opens the database at `target` (an `sqlite:` URL, or a file path,
/// created if missing), and makes sure the table is there.
pub async fn open(target: &str) -> Result<NotesPool, Box<dyn std::error::Error>> {
    let options = if target.starts_with("sqlite:") {
        target.parse::<SqliteConnectOptions>()?
    } else {
        SqliteConnectOptions::new().filename(target)
    };
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let config = PoolConfig {
        name: "notes".into(),
        max_size: 8,
        ..PoolConfig::default()
    };
    let pool = SqlxManager::<Sqlite>::new(options)
        .with_setup_sql(["PRAGMA foreign_keys = ON"])
        .into_pool(config)?;
    let mut conn = pool.get().await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    Ok(pool)
}

/// The service: notes, then health, metrics and dashboard for the pool.
pub fn app(pool: NotesPool) -> Router {
    let monitoring = Monitoring::new();
    monitoring.register(pool.clone());
    Router::new()
        .route("/notes", get(list).post(add))
        .route("/notes/count", get(count))
        .layer(deadline_layer(Duration::from_secs(5)))
        .with_state(pool)
        .merge(monitoring.router())
}

type Failure = (StatusCode, String);

fn failed(error: sqlx::Error) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// `GET /notes`: every note, oldest first. The connection comes from the
/// pool for the length of the request ([`Db`]) and derefs to sqlx's
/// `SqliteConnection`.
async fn list(mut conn: Db<SqlxManager<Sqlite>>) -> Result<Json<Vec<Note>>, Failure> {
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, text FROM notes ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .map_err(failed)?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, text)| Note { id, text })
            .collect(),
    ))
}

/// `POST /notes`: stores a note, returns it with its id.
async fn add(
    mut conn: Db<SqlxManager<Sqlite>>,
    Json(note): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), Failure> {
    let id: i64 = sqlx::query_scalar("INSERT INTO notes (text) VALUES (?) RETURNING id")
        .bind(&note.text)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
    Ok((
        StatusCode::CREATED,
        Json(Note {
            id,
            text: note.text,
        }),
    ))
}

/// `GET /notes/count`: through the pool in the state rather than the
/// extractor.
async fn count(State(pool): State<NotesPool>) -> Result<String, Failure> {
    let mut conn = pool
        .get()
        .await
        .map_err(|error| (StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
    Ok(n.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "notes.db".into());
    let pool = open(&target).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("serving {target} on http://{}", listener.local_addr()?);
    axum::serve(listener, app(pool))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
