//! The axum example, served over loopback and driven by a real HTTP client.

#[path = "../examples/sqlx_service.rs"]
#[allow(dead_code)] // its `main`
mod example;

use example::{NewNote, Note};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_notes_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let pool = example::open(dir.path().join("notes.db").to_str().unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, example::app(pool.clone())).into_future());
    let client = reqwest::Client::new();

    for text in ["first", "second"] {
        let response = client
            .post(format!("{base}/notes"))
            .json(&NewNote { text: text.into() })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let note: Note = response.json().await.unwrap();
        assert_eq!(note.text, text);
    }
    let notes: Vec<Note> = client
        .get(format!("{base}/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<_> = notes.iter().map(|note| note.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);
    let count = client
        .get(format!("{base}/notes/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(count.text().await.unwrap(), "2");

    for path in ["/health/live", "/health/ready"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("db_client_connection_max{pool_name=\"notes\"} 8"),
        "{metrics}"
    );
    let dashboard = client
        .get(format!("{base}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 200);
    assert_eq!(
        pool.status().in_use,
        0,
        "every request gave its connection back"
    );
    server.abort();
}
