//! What the integration tests share: a real axum server on 127.0.0.1:0, a
//! real HTTP client, and polling with a deadline.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long any one condition may take to come true.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// An axum server on a free loopback port; stopped when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    task: JoinHandle<()>,
}

impl Server {
    /// The address of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on 127.0.0.1:0.
pub async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let address = listener.local_addr().expect("a bound address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the server runs");
    });
    Server {
        base: format!("http://{address}"),
        task,
    }
}

/// A client that keeps no connection idle between requests, so that each
/// test sees the server as a fresh client would.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client")
}

/// Checks `probe` every few milliseconds until it returns `Some`, and panics
/// naming `what` and the last value seen when [`PATIENCE`] runs out.
pub async fn eventually<T, L: Debug, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, L>>,
{
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Duration::from_millis(2);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: still not so after {PATIENCE:?}; last seen: {last:?}")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Waits until `pool`'s status satisfies `test`.
pub async fn until_status<M: tidewater::Manager>(
    what: &str,
    pool: &tidewater::Pool<M>,
    test: impl Fn(&tidewater::PoolStatus) -> bool,
) {
    eventually(what, || {
        let status = pool.status();
        let outcome = if test(&status) { Ok(()) } else { Err(status) };
        std::future::ready(outcome)
    })
    .await;
}
