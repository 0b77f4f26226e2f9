//! The Runtime API (2018-06-01) one execution environment's runtime talks to.
//!
//! Each environment gets its own listener. The environment hands an invocation over a channel;
//! `GET /next` answers with it (payload and the headers every official client requires), and
//! `POST /response` or `/error` completes it. `POST /init/error` records why init failed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kappa_core::invoke::MAX_RESPONSE_PAYLOAD;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

/// One invocation as the runtime receives it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Vec<u8>,
    /// Unix epoch milliseconds at which the invocation times out.
    pub deadline_ms: u64,
    pub invoked_function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
}

/// How the runtime finished an invocation.
#[derive(Debug)]
pub enum RuntimeOutcome {
    Response(Bytes),
    Error { body: Bytes },
    ResponseTooLarge,
}

/// The environment's side of its Runtime API.
#[derive(Debug)]
pub struct RuntimeApiHandle {
    pub address: SocketAddr,
    invocations: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    ready: watch::Receiver<bool>,
    shutdown: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Shared {
    next: Mutex<mpsc::Receiver<Invocation>>,
    in_flight: std::sync::Mutex<Option<InFlight>>,
    ready: watch::Sender<bool>,
    init_error: std::sync::Mutex<Option<Bytes>>,
}

#[derive(Debug)]
struct InFlight {
    request_id: String,
    done: oneshot::Sender<RuntimeOutcome>,
}

impl RuntimeApiHandle {
    /// Start serving on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Self::serve(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?)
    }

    /// Serve on `listener` (which may belong to another network namespace).
    pub fn serve(listener: tokio::net::TcpListener) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let (invocations, next) = mpsc::channel(1);
        let (ready_tx, ready) = watch::channel(false);
        let shared = Arc::new(Shared {
            next: Mutex::new(next),
            in_flight: std::sync::Mutex::new(None),
            ready: ready_tx,
            init_error: std::sync::Mutex::new(None),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let app = router(Arc::clone(&shared));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "runtime API stopped with an error");
            }
        });
        Ok(Self {
            address,
            invocations,
            shared,
            ready,
            shutdown: Some(shutdown_tx),
        })
    }

    /// Resolves once the runtime has called `/next` for the first time (init is done).
    pub async fn wait_ready(&mut self) {
        let _ = self.ready.wait_for(|ready| *ready).await;
    }

    /// The body the runtime posted to `/init/error`, if it did.
    pub fn init_error(&self) -> Option<Bytes> {
        self.shared
            .init_error
            .lock()
            .ok()
            .and_then(|guard| guard.clone())
    }

    /// Hand an invocation to the runtime; the receiver resolves when it answers.
    pub async fn dispatch(
        &self,
        invocation: Invocation,
    ) -> Option<oneshot::Receiver<RuntimeOutcome>> {
        let (done, outcome) = oneshot::channel();
        if let Ok(mut slot) = self.shared.in_flight.lock() {
            *slot = Some(InFlight {
                request_id: invocation.request_id.clone(),
                done,
            });
        }
        self.invocations.send(invocation).await.ok()?;
        Some(outcome)
    }
}

impl Drop for RuntimeApiHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/2018-06-01/ping", get(|| async { "pong" }))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.ready.send_replace(true);
    let mut next = shared.next.lock().await;
    let Some(invocation) = next.recv().await else {
        return runtime_error(
            StatusCode::GONE,
            "EnvironmentShutdown",
            "the environment is shutting down",
        );
    };
    drop(next);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("content-type", "application/json");
    put("lambda-runtime-aws-request-id", &invocation.request_id);
    put(
        "lambda-runtime-deadline-ms",
        &invocation.deadline_ms.to_string(),
    );
    put(
        "lambda-runtime-invoked-function-arn",
        &invocation.invoked_function_arn,
    );
    put("lambda-runtime-trace-id", &invocation.trace_id);
    if let Some(client_context) = &invocation.client_context {
        put("lambda-runtime-client-context", client_context);
    }
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let Some(in_flight) = take_in_flight(&shared, &id) else {
        return invalid_request_id();
    };
    let outcome = match axum::body::to_bytes(body, MAX_RESPONSE_PAYLOAD).await {
        Ok(bytes) => RuntimeOutcome::Response(bytes),
        Err(_) => {
            let _ = in_flight.done.send(RuntimeOutcome::ResponseTooLarge);
            return runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_PAYLOAD} bytes)."),
            );
        }
    };
    let _ = in_flight.done.send(outcome);
    accepted()
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(in_flight) = take_in_flight(&shared, &id) else {
        return invalid_request_id();
    };
    let _ = in_flight.done.send(RuntimeOutcome::Error { body });
    accepted()
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    if *shared.ready.borrow() {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Ready to InitError failed for runtime. Error: init is over",
        );
    }
    if let Ok(mut slot) = shared.init_error.lock() {
        *slot = Some(body);
    }
    accepted()
}

fn take_in_flight(shared: &Shared, id: &str) -> Option<InFlight> {
    let mut slot = shared.in_flight.lock().ok()?;
    if slot.as_ref().is_some_and(|f| f.request_id == id) {
        slot.take()
    } else {
        None
    }
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "status": "OK" })),
    )
        .into_response()
}

fn invalid_request_id() -> Response {
    runtime_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        "Invalid request ID",
    )
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "errorType": error_type, "errorMessage": message })),
    )
        .into_response()
}
