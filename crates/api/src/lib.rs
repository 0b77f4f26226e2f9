//! Kappa's HTTP front: the Lambda API's rest-json routes, request limits, and the AWS error wire
//! format. Handlers turn requests into typed commands for `kappa-core` and never hold business
//! logic.

pub mod auth;
pub mod aws_error;
pub mod request;
pub mod routes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kappa_core::control::FunctionService;
use kappa_core::control::concurrency::ConcurrencyService;
use kappa_core::control::event_invoke_config::EventInvokeConfigService;
use kappa_core::invoke::{Invoker, MetricsSource};
use kappa_core::logs_service::LogsService;

use crate::auth::Authenticator;
use crate::aws_error::ApiError;
use crate::routes::{
    account, code, concurrency, event_invoke_config, functions, invoke, layers, logs, provisioned,
    tags, versions,
};

/// What every handler can reach, shared: each request clones only the pointer (the services
/// themselves hold strings and many `Arc`s).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl From<Services> for AppState {
    fn from(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind the API.
pub struct Services {
    pub functions: FunctionService,
    pub invoker: Arc<dyn Invoker>,
    pub event_invoke_configs: EventInvokeConfigService,
    pub concurrency: ConcurrencyService,
    pub metrics: Arc<dyn MetricsSource>,
    pub logs: LogsService,
    pub authenticator: Arc<dyn Authenticator>,
    /// `host:port` used in URLs when a request carries no `Host` header.
    pub public_address: String,
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    let functions_collection = get(functions::list_functions).post(functions::create_function);
    let account_settings = get(account::get_account_settings);
    Router::new()
        .route("/health", get(health))
        .route("/", axum::routing::post(logs::dispatch))
        .route("/kappa/metrics", get(metrics))
        .route(
            "/2014-11-13/functions/{name}/invoke-async",
            axum::routing::post(invoke::invoke_async),
        )
        .route(
            "/2014-11-13/functions/{name}/invoke-async/",
            axum::routing::post(invoke::invoke_async),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(event_invoke_config::get)
                .put(event_invoke_config::put)
                .post(event_invoke_config::update)
                .delete(event_invoke_config::delete),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(event_invoke_config::list),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            axum::routing::put(concurrency::put).delete(concurrency::delete),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke::invoke),
        )
        .route("/2015-03-31/functions", functions_collection.clone())
        .route("/2015-03-31/functions/", functions_collection)
        .route(
            "/2015-03-31/functions/{name}",
            get(functions::get_function).delete(functions::delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(functions::get_function_configuration)
                .put(functions::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            axum::routing::put(functions::update_function_code),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            get(versions::list_versions).post(versions::publish_version),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            get(versions::list_aliases).post(versions::create_alias),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(versions::get_alias)
                .put(versions::update_alias)
                .delete(versions::delete_alias),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            get(provisioned::get_or_list)
                .put(provisioned::put)
                .delete(provisioned::delete),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            get(tags::list_tags)
                .post(tags::tag_resource)
                .delete(tags::untag_resource),
        )
        .route("/2018-10-31/layers", get(layers::list_layers))
        .route(
            "/2018-10-31/layers/{name}/versions",
            get(layers::list_layer_versions).post(layers::publish_layer_version),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}",
            get(layers::get_layer_version).delete(layers::delete_layer_version),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}/policy",
            get(layers::get_layer_version_policy).post(layers::add_layer_version_permission),
        )
        .route(
            "/2018-10-31/layers/{name}/versions/{version}/policy/{statement_id}",
            axum::routing::delete(layers::remove_layer_version_permission),
        )
        .route("/2016-08-19/account-settings", account_settings.clone())
        .route("/2016-08-19/account-settings/", account_settings)
        .route(
            &format!("{}/{{digest}}", code::CODE_PATH),
            get(code::download_code),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": "ok" })),
    )
}

/// Queue depth, oldest event age and environment counts, in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render().await,
    )
}

async fn unknown_operation(request: Request) -> ApiError {
    ApiError::UnknownOperation {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hex = format!(
        "{:016x}{:016x}",
        nanos as u64,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Authenticate the caller and log every request with its outcome and latency.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let caller = state.authenticator.authenticate(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    // Every AWS response names its request; invokes set the invocation's own id.
    if !response.headers().contains_key("x-amzn-requestid")
        && let Ok(id) = axum::http::HeaderValue::from_str(&new_request_id())
    {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        access_key = caller.access_key_id.as_deref().unwrap_or("-"),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
