//! Proxies that refuse connections until healed, by token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::{FaultProxy, lock};

/// The refusing proxies of one target; a token is an index.
#[derive(Default)]
pub(super) struct RefusingProxies(Mutex<Vec<Arc<FaultProxy>>>);

impl RefusingProxies {
    /// Starts a proxy to `upstream` that refuses every connection (a
    /// connection refused: a transient error), and returns its address and
    /// its token.
    pub(super) async fn start(&self, upstream: SocketAddr) -> (SocketAddr, u64) {
        let proxy = FaultProxy::start(upstream).await.expect("a proxy starts");
        proxy.set_refuse(true).await.expect("the proxy refuses");
        let addr = proxy.addr();
        let mut proxies = lock(&self.0);
        proxies.push(Arc::new(proxy));
        (addr, proxies.len() as u64 - 1)
    }

    /// Lets the proxy of `token` accept connections again.
    pub(super) async fn heal(&self, token: u64) {
        let proxy = lock(&self.0)[usize::try_from(token).expect("a token")].clone();
        proxy
            .set_refuse(false)
            .await
            .expect("the proxy accepts again");
    }
}
