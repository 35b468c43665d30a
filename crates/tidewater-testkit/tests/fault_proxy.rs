//! `FaultProxy` in front of a real PostgreSQL. The faults stay on the wire,
//! so the tests share one server; each has a proxy of its own.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::{bounded, connect, eventually, pg_io_kind, select_one, stall, try_connect};
use tidewater_testkit::{FaultProxy, PgCluster};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// Never dropped: the cluster's watchdog stops it once the tests exit.
static CLUSTER: OnceCell<PgCluster> = OnceCell::const_new();

async fn cluster() -> &'static PgCluster {
    CLUSTER
        .get_or_init(|| async { PgCluster::new().await.expect("a private PostgreSQL starts") })
        .await
}

async fn proxy() -> (FaultProxy, String) {
    let cluster = cluster().await;
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let url = cluster.url_at(proxy.addr());
    (proxy, url)
}

#[tokio::test]
async fn forwards_and_counts_connections() {
    let (proxy, url) = proxy().await;
    assert_eq!(proxy.connections(), 0);
    let (client, driver) = connect(&url).await;
    select_one(&client).await.unwrap();
    assert_eq!(proxy.connections(), 1);
    drop(client);
    bounded("the connection closes", driver)
        .await
        .unwrap()
        .unwrap();
    eventually("the proxy sees it close", || proxy.connections() == 0).await;
}

#[tokio::test]
async fn latency_delays_every_round_trip() {
    let (proxy, url) = proxy().await;
    let (client, _driver) = connect(&url).await;
    let latency = Duration::from_millis(150);
    proxy.set_latency(latency);
    let start = Instant::now();
    select_one(&client).await.unwrap();
    // The query goes one way and the answer the other, each delayed.
    assert!(start.elapsed() >= 2 * latency, "took {:?}", start.elapsed());
    proxy.set_latency(Duration::ZERO);
    select_one(&client).await.unwrap();
}

#[tokio::test]
async fn blackhole_holds_traffic_until_lifted() {
    let (proxy, url) = proxy().await;
    let (client, _driver) = connect(&url).await;
    proxy.set_blackhole(true);
    let stalled = stall(client, &url, "blackhole").await;
    let raw = TcpStream::connect(proxy.addr()).await;
    assert!(raw.is_ok(), "the blackhole still accepts connections");
    proxy.set_blackhole(false);
    stalled.complete().await;
}

#[tokio::test]
async fn reset_all_aborts_open_connections_with_rst() {
    let (proxy, url) = proxy().await;
    let (first, first_driver) = connect(&url).await;
    let (second, _second_driver) = connect(&url).await;
    assert_eq!(proxy.connections(), 2);

    assert_eq!(proxy.reset_all().await, 2);
    assert_eq!(proxy.connections(), 0);
    let ended = bounded("the reset connection ends", first_driver)
        .await
        .unwrap();
    let error = ended.expect_err("a reset, not a clean end");
    assert_eq!(
        pg_io_kind(&error),
        Some(io::ErrorKind::ConnectionReset),
        "{error}"
    );
    assert!(select_one(&first).await.is_err());
    assert!(select_one(&second).await.is_err());

    let (client, _driver) = connect(&url).await;
    select_one(&client).await.unwrap();
}

#[tokio::test]
async fn refuse_closes_the_port_and_keeps_open_connections() {
    let (proxy, url) = proxy().await;
    let (open, _driver) = connect(&url).await;

    proxy.set_refuse(true).await.unwrap();
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    let error = try_connect(&url).await.unwrap_err();
    assert_eq!(
        pg_io_kind(&error),
        Some(io::ErrorKind::ConnectionRefused),
        "{error}"
    );
    select_one(&open).await.unwrap();

    proxy.set_refuse(false).await.unwrap();
    let (client, _driver) = connect(&url).await;
    select_one(&client).await.unwrap();
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let (proxy, url) = proxy().await;
    let addr = proxy.addr();
    let (client, driver) = connect(&url).await;
    drop(proxy);
    bounded("the connection ends", driver).await.unwrap().ok();
    assert!(select_one(&client).await.is_err());
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
