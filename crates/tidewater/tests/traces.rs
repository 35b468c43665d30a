//! A `get()` that waits, or whose connection is checked, shows up in the
//! caller's trace as a `db.client.connection.wait` span with the pool's
//! name and the outcome; one served at once from an idle connection does
//! not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::PoolConfig;
use tidewater_testkit::{CheckStep, ScriptedManager};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A finished span: its name and its fields as text.
#[derive(Debug, Clone)]
struct Finished {
    name: &'static str,
    fields: BTreeMap<String, String>,
    parent: Option<&'static str>,
}

/// Collects the spans of the pool as they close.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Finished>>>);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").replace('"', ""),
        );
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions().get::<Fields>().unwrap().0.clone();
        self.0.lock().unwrap().push(Finished {
            name: span.name(),
            fields,
            parent: span.parent().map(|parent| parent.name()),
        });
    }
}

impl Recorder {
    fn waits(&self) -> Vec<Finished> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|span| span.name == "db.client.connection.wait")
            .cloned()
            .collect()
    }
}

fn traced() -> (Recorder, tracing::subscriber::DefaultGuard) {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    (recorder, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_get_that_waits_is_a_span_in_the_callers_trace() {
    let (recorder, _guard) = traced();
    let config = PoolConfig {
        max_size: 1,
        name: "orders".into(),
        ..PoolConfig::default()
    };
    let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
    let request = tracing::info_span!("request");
    let held = tracing::Instrument::instrument(pool.get(), request.clone())
        .await
        .unwrap();
    let waiting = tokio::spawn(tracing::Instrument::instrument(
        {
            let pool = pool.clone();
            async move { pool.get().await.map(|conn| conn.id()) }
        },
        request,
    ));
    while pool.status().waiters == 0 {
        tokio::task::yield_now().await; // until the caller queues
    }
    drop(held);
    waiting.await.unwrap().unwrap();

    let waits = recorder.waits();
    assert_eq!(waits.len(), 2, "the open and the wait: {waits:?}");
    for span in &waits {
        assert_eq!(span.fields["db.client.connection.pool.name"], "orders");
        assert_eq!(span.fields["tidewater.outcome"], "ok");
        assert_eq!(span.parent, Some("request"), "in the caller's trace");
    }
    assert_eq!(waits[1].fields["tidewater.queued"], "true");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_get_served_at_once_costs_no_span() {
    let (recorder, _guard) = traced();
    let pool = tidewater::Pool::new(ScriptedManager::new(), PoolConfig::default()).unwrap();
    drop(pool.get().await.unwrap()); // opens: a span
    for _ in 0..10 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(recorder.waits().len(), 1, "only the first get waited");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_get_is_an_error_span() {
    let (recorder, _guard) = traced();
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(1),
        validate_after: Duration::ZERO,
        ..PoolConfig::default()
    };
    let manager = ScriptedManager::new();
    manager.script().set_check_latency(Duration::from_secs(10));
    manager.script().push_validate(CheckStep::Hang);
    let pool = tidewater::Pool::new(manager, config).unwrap();
    let error = pool.get().await.unwrap_err();
    let waits = recorder.waits();
    assert_eq!(waits.len(), 1, "{waits:?}");
    let fields = &waits[0].fields;
    assert_eq!(fields["tidewater.checked"], "true");
    assert_eq!(fields["tidewater.outcome"], error.kind());
    assert_eq!(fields["error.type"], "timeout");
    assert_eq!(fields["otel.status_code"], "ERROR");
}
