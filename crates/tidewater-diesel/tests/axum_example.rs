//! The axum example (examples/diesel_service.rs) served on loopback and driven with
//! a real HTTP client, on the shared PostgreSQL (a read-only query).

#[allow(dead_code)] // its `main` is the example's
#[path = "../examples/diesel_service.rs"]
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_a_query_health_and_metrics() {
    let pool = example::pool("postgres://postgres@127.0.0.1:5432/test").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, example::app(pool.clone())).into_future());
    let client = reqwest::Client::new();

    let response = client
        .get(format!("http://{addr}/sum?upto=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "upto": 10, "total": 55 }));

    let response = client
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|line| {
            line.starts_with("db_client_connection_count{")
                && line.contains("diesel-example")
                && line.contains("idle")
        })
        .unwrap_or_else(|| panic!("no idle connection count for the pool:\n{metrics}"));
    let idle: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(idle >= 1.0, "the query's connection is back, idle: {line}");

    let response = client
        .get(format!("http://{addr}/sum?upto=notanumber"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    assert_eq!(pool.status().in_use, 0, "every connection went back");
    server.abort();
}
