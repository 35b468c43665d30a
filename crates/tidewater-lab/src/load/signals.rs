//! The signals that interrupt a run ([`LoadConfig::handle_signals`](super::LoadConfig::handle_signals)).

/// Waits for SIGINT or SIGTERM (forever, if they cannot be listened for).
pub(super) async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
