//! The HTTP API: accounts, transfers and their ledger, as JSON; every
//! error an RFC 9457 problem. See `docs/service.md`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, problem};
use crate::store::{NewTransfer, Store, TransferOutcome};

/// The header that makes a transfer request safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header set on the answer to a retried request: the transfer was
/// made by an earlier request with the same key.
pub const REPLAYED: &str = "idempotent-replayed";

/// The API's routes, over `store`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard") }))
        .route("/api/accounts", post(create_account))
        .route("/api/accounts/{id}", get(account))
        .route("/api/accounts/{id}/ledger", get(ledger))
        .route("/api/transfers", post(create_transfer))
        .route("/api/transfers/{id}", get(transfer))
        .with_state(store)
}

/// A problem for paths no route serves, and for methods a route does not
/// take; for a router that merged [`router`] with others.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no resource at this path; the API is under /api (see docs/service.md)".into(),
                json!({}),
            )
        })
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this path does not take this method".into(),
                json!({}),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    #[serde(default)]
    name: String,
    balance: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    from: i64,
    to: i64,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    limit: Option<u32>,
    /// Only entries older than this entry id: the next page.
    before: Option<i64>,
}

/// The body, or a 400 problem (422 when well-formed JSON holds values of
/// the wrong type or is missing fields).
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(error)) => Err(ApiError::Invalid(error.body_text())),
        Err(error) => Err(ApiError::BadRequest(error.body_text())),
    }
}

/// The id in the path, or a 400 problem.
fn id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|error| {
        ApiError::BadRequest(format!("the id must be an integer: {}", error.body_text()))
    })
}

/// `201 Created` with `Location` and `value` as JSON.
fn created(location: String, value: &impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(value)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn create_account(
    State(store): State<Store>,
    request: Result<Json<NewAccount>, JsonRejection>,
) -> Result<Response, ApiError> {
    let NewAccount { name, balance } = body(request)?;
    let account = store.create_account(name, balance).await?;
    Ok(created(format!("/api/accounts/{}", account.id), &account))
}

async fn account(
    State(store): State<Store>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let account = store.account(id(path)?).await?;
    Ok(Json(account).into_response())
}

async fn ledger(
    State(store): State<Store>,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let account = id(path)?;
    let Query(query) = query.map_err(|error| ApiError::BadRequest(error.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit must be from 1 to 1000, not {limit}"
        )));
    }
    if let Some(before) = query.before
        && before < 1
    {
        return Err(ApiError::Invalid(format!(
            "before must be a ledger entry id, from 1 to {}, not {before}",
            i64::MAX
        )));
    }
    let entries = store.ledger(account, limit, query.before).await?;
    Ok(Json(json!({ "account": account, "entries": entries })).into_response())
}

async fn create_transfer(
    State(store): State<Store>,
    headers: HeaderMap,
    request: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
                .to_owned(),
        ),
    };
    let TransferRequest { from, to, amount } = body(request)?;
    let outcome = store
        .make_transfer(NewTransfer {
            from,
            to,
            amount,
            key,
        })
        .await?;
    Ok(match outcome {
        TransferOutcome::Created(transfer) => {
            created(format!("/api/transfers/{}", transfer.id), &transfer)
        }
        TransferOutcome::Replayed(transfer) => {
            let mut response = created(format!("/api/transfers/{}", transfer.id), &transfer);
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            response
        }
    })
}

async fn transfer(
    State(store): State<Store>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let transfer = store.transfer(id(path)?).await?;
    Ok(Json(transfer).into_response())
}
