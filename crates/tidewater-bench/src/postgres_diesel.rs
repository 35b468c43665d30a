//! The diesel-async contenders of `tidewater-bench postgres`: the same
//! `SELECT 1` through diesel on three pools of `AsyncPgConnection`.
//!
//! - `tidewater-diesel`: `tidewater::Pool<tidewater_diesel::PgManager>`,
//!   defaults but `max_size`. A checkout does no I/O: the broken check
//!   reads flags, a reset runs only when the session's transaction status
//!   (read off the socket) is not idle, validation only after 500 ms idle
//!   (none while timing);
//! - `diesel-deadpool`: diesel-async's deadpool adapter with
//!   `RecyclingMethod::Fast` (its default, `Verified`, runs `SELECT 1` on
//!   every checkout): a checkout checks the transaction manager and the
//!   socket, no I/O;
//! - `diesel-bb8`: diesel-async's bb8 adapter with
//!   `test_on_check_out(false)` (bb8 otherwise pings every checkout): a
//!   checkout does no I/O; the broken check runs on return.
//!
//! Each runs `diesel::sql_query("SELECT 1").execute(&mut conn)` through
//! `diesel_async::RunQueryDsl`, whatever `--statement` says: diesel-async
//! prepares the statement once per connection and caches it, so each
//! operation is one round trip (like sqlx).

use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidewater_diesel::PgManager;

use super::{BoxError, Contender, Load, POOL_SIZE, SQL, Statement};
use crate::ACQUIRE_TIMEOUT;

/// `SELECT 1` through diesel; it affects no row.
async fn select_one(conn: &mut AsyncPgConnection) -> Result<(), BoxError> {
    diesel::sql_query(SQL).execute(conn).await?;
    Ok(())
}

/// tidewater-diesel.
pub(super) struct TidewaterDiesel(tidewater::Pool<PgManager>);

impl Contender for TidewaterDiesel {
    type Conn<'a> = tidewater::PooledConnection<PgManager>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        let config = tidewater::PoolConfig {
            max_size: POOL_SIZE,
            ..Default::default()
        };
        Ok(Self(PgManager::new(load.url.clone())?.into_pool(config)?))
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(self.0.get().await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, _statement: Statement) -> Result<(), BoxError> {
        select_one(conn).await
    }

    async fn close(self) {
        self.0.close().await;
    }
}

/// diesel-async's manager with `RecyclingMethod::Fast`.
fn fast_manager(load: &Load) -> AsyncDieselConnectionManager<AsyncPgConnection> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    AsyncDieselConnectionManager::new_with_config(load.url.clone(), config)
}

/// diesel-async's deadpool adapter.
pub(super) type DieselDeadpool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

impl Contender for DieselDeadpool {
    type Conn<'a> = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        Ok(DieselDeadpool::builder(fast_manager(load))
            .max_size(POOL_SIZE as usize)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()?)
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(DieselDeadpool::get(self).await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, _statement: Statement) -> Result<(), BoxError> {
        select_one(conn).await
    }

    async fn close(self) {
        DieselDeadpool::close(&self);
    }
}

/// diesel-async's bb8 adapter.
pub(super) type DieselBb8 = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

impl Contender for DieselBb8 {
    type Conn<'a> = bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        Ok(bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .test_on_check_out(false)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(fast_manager(load))
            .await?)
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(DieselBb8::get(self).await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, _statement: Statement) -> Result<(), BoxError> {
        select_one(conn).await
    }

    async fn close(self) {
        // bb8 has no close: dropping the last handle closes the idle
        // connections.
        drop(self);
    }
}
