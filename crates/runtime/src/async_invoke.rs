//! Asynchronous invocation: events are committed to the durable queue before the caller gets
//! 202 (group commit: concurrent accepts share one fsync), then workers invoke the function at
//! least once, retry function errors with Lambda's delays, back off on throttles without using
//! up retries, give up at the maximum event age, and deliver the outcome to destinations. An
//! event leaves the queue only in the same commit that enqueues its destination deliveries, and
//! only after its logs are stored.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kappa_core::ServiceError;
use kappa_core::async_queue::{AsyncEvent, AsyncQueue, EventInvokeConfig};
use kappa_core::control::FunctionService;
use kappa_core::control::event_invoke_config::{DestinationTarget, EventInvokeConfigService};
use kappa_core::invoke::{InvocationType, InvokeRequest, InvokeResponse, Invoker, MetricsSource};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::invoker::FunctionRuntime;
use crate::log_capture::now_ms;

const MAX_ENQUEUE_BATCH: usize = 1000;
const MIN_BACKOFF_MS: i64 = 1000;
const MAX_BACKOFF_MS: i64 = 300_000;
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Settings of asynchronous invocation.
#[derive(Debug, Clone)]
pub struct AsyncSettings {
    /// Delay before the first retry after a function error; each later retry waits twice as
    /// long (Lambda: about 1 minute, then 2).
    pub first_retry_delay: Duration,
    /// Invocations in flight at once across all functions.
    pub max_in_flight: usize,
}

type EnqueueRequest = (AsyncEvent, oneshot::Sender<Result<(), String>>);

/// The invocation front: synchronous invokes go to the runtime, `Event` invokes to the queue.
pub struct Invocations {
    runtime: Arc<FunctionRuntime>,
    functions: FunctionService,
    queue: Arc<dyn AsyncQueue>,
    configs: EventInvokeConfigService,
    settings: AsyncSettings,
    enqueue: mpsc::Sender<EnqueueRequest>,
    wake: Notify,
    in_flight: Mutex<HashSet<String>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Invocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocations").finish_non_exhaustive()
    }
}

enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

impl Invocations {
    /// Start the enqueue batcher and the dispatcher.
    pub fn start(
        runtime: Arc<FunctionRuntime>,
        functions: FunctionService,
        queue: Arc<dyn AsyncQueue>,
        configs: EventInvokeConfigService,
        settings: AsyncSettings,
    ) -> Arc<Self> {
        let (enqueue, requests) = mpsc::channel(4 * MAX_ENQUEUE_BATCH);
        let invocations = Arc::new(Self {
            runtime,
            functions,
            queue: Arc::clone(&queue),
            configs,
            settings,
            enqueue,
            wake: Notify::new(),
            in_flight: Mutex::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(commit_batches(queue, requests));
        tokio::spawn(Arc::clone(&invocations).dispatch());
        invocations
    }

    /// Stop taking events from the queue and wait (up to `grace`) for those in flight; what is
    /// left stays queued for the next start.
    pub async fn shut_down(&self, grace: Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Commit an event; returns once it is durable.
    async fn accept(&self, event: AsyncEvent) -> Result<(), ServiceError> {
        let (done, committed) = oneshot::channel();
        self.enqueue.send((event, done)).await.map_err(|_| {
            ServiceError::internal(std::io::Error::other("the event queue is closed"))
        })?;
        match committed.await {
            Ok(Ok(())) => {
                self.wake.notify_one();
                Ok(())
            }
            Ok(Err(reason)) => Err(ServiceError::internal(std::io::Error::other(reason))),
            Err(_) => Err(ServiceError::internal(std::io::Error::other(
                "the event queue stopped",
            ))),
        }
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let excluded: Vec<String> = self
                .in_flight
                .lock()
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let room = self.settings.max_in_flight.saturating_sub(excluded.len());
            let due = if room == 0 {
                Vec::new()
            } else {
                match self.queue.due(now_ms(), room, &excluded).await {
                    Ok(due) => due,
                    Err(err) => {
                        tracing::error!(error = %err, "reading the async queue failed");
                        Vec::new()
                    }
                }
            };
            if due.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            for event in due {
                if let Ok(mut in_flight) = self.in_flight.lock() {
                    in_flight.insert(event.request_id.clone());
                }
                let this = Arc::clone(&self);
                tokio::spawn(async move {
                    let request_id = event.request_id.clone();
                    if let Err(err) = this.process(event).await {
                        tracing::error!(request_id, error = %err, "processing an async event failed; it stays queued");
                    }
                    if let Ok(mut in_flight) = this.in_flight.lock() {
                        in_flight.remove(&request_id);
                    }
                    this.wake.notify_one();
                });
            }
        }
    }

    async fn process(&self, mut event: AsyncEvent) -> Result<(), ServiceError> {
        let config = self
            .configs
            .effective(&event.function_name, event.qualifier.as_deref())
            .await?;
        let now = now_ms();
        if now - event.enqueued_at > config.max_age_ms() {
            return self
                .finish(&event, &config, Condition::EventAgeExceeded, None)
                .await;
        }
        let result = self
            .runtime
            .invoke(InvokeRequest {
                function_name: event.function_name.clone(),
                qualifier: event.qualifier.clone(),
                invocation_type: InvocationType::RequestResponse,
                tail_log: false,
                client_context: None,
                payload: event.payload.clone().into_bytes(),
                request_id: Some(event.request_id.clone()),
            })
            .await;
        let now = now_ms();
        match result {
            Ok(response) if response.function_error.is_none() => {
                event.attempts += 1;
                self.finish(&event, &config, Condition::Success, Some(&response))
                    .await
            }
            Ok(response) => {
                event.attempts += 1;
                if event.attempts > config.retries() {
                    return self
                        .finish(
                            &event,
                            &config,
                            Condition::RetriesExhausted,
                            Some(&response),
                        )
                        .await;
                }
                let delay = self.retry_delay_ms(event.attempts);
                // Lambda fails the event now if the retry would come after its maximum age.
                if now + delay - event.enqueued_at > config.max_age_ms() {
                    return self
                        .finish(
                            &event,
                            &config,
                            Condition::EventAgeExceeded,
                            Some(&response),
                        )
                        .await;
                }
                self.runtime.flush_logs().await;
                event.next_attempt_at = now + delay;
                event.throttle_backoff_ms = 0;
                self.queue
                    .reschedule(&event)
                    .await
                    .map_err(ServiceError::internal)
            }
            Err(ServiceError::ResourceNotFound(message)) => {
                tracing::warn!(request_id = %event.request_id, %message, "dropping an async event of a deleted function");
                self.queue
                    .complete(&event.request_id, &[])
                    .await
                    .map_err(ServiceError::internal)
            }
            Err(err) => {
                // Throttles and platform errors: back off, keep the function-error retries.
                let backoff = (event.throttle_backoff_ms * 2).clamp(MIN_BACKOFF_MS, MAX_BACKOFF_MS);
                if now + backoff - event.enqueued_at > config.max_age_ms() {
                    return self
                        .finish(&event, &config, Condition::EventAgeExceeded, None)
                        .await;
                }
                tracing::debug!(request_id = %event.request_id, error = %err, backoff, "async invocation deferred");
                event.next_attempt_at = now + backoff;
                event.throttle_backoff_ms = backoff;
                self.queue
                    .reschedule(&event)
                    .await
                    .map_err(ServiceError::internal)
            }
        }
    }

    fn retry_delay_ms(&self, failed_attempts: u32) -> i64 {
        let base = i64::try_from(self.settings.first_retry_delay.as_millis()).unwrap_or(i64::MAX);
        base.saturating_mul(1_i64 << failed_attempts.saturating_sub(1).min(16))
    }

    /// Deliver the outcome to its destination and remove the event, in one commit, after the
    /// invocation's logs are stored.
    async fn finish(
        &self,
        event: &AsyncEvent,
        config: &EventInvokeConfig,
        condition: Condition,
        response: Option<&InvokeResponse>,
    ) -> Result<(), ServiceError> {
        let destination = match condition {
            Condition::Success => config.destinations.on_success.as_ref(),
            _ => config.destinations.on_failure.as_ref(),
        }
        .and_then(|d| d.destination.clone());
        let mut follow_ups = Vec::new();
        if let Some(arn) = destination {
            match DestinationTarget::parse(&arn, self.functions.account()) {
                Ok(DestinationTarget::Function {
                    name,
                    qualifier,
                    arn,
                }) => {
                    let record = self.record(event, &condition, response);
                    let now = now_ms();
                    follow_ups.push(AsyncEvent {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        function_name: name,
                        qualifier,
                        invoked_arn: arn,
                        payload: record.to_string(),
                        enqueued_at: now,
                        attempts: 0,
                        next_attempt_at: now,
                        throttle_backoff_ms: 0,
                    });
                }
                Err(err) => {
                    tracing::warn!(destination = %arn, error = %err, "cannot deliver to destination")
                }
            }
        } else if !matches!(condition, Condition::Success) {
            tracing::warn!(request_id = %event.request_id, condition = condition.as_str(), "async event failed with no OnFailure destination");
        }
        self.runtime.flush_logs().await;
        self.queue
            .complete(&event.request_id, &follow_ups)
            .await
            .map_err(ServiceError::internal)?;
        if !follow_ups.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The invocation record Lambda sends to destinations.
    fn record(
        &self,
        event: &AsyncEvent,
        condition: &Condition,
        response: Option<&InvokeResponse>,
    ) -> Value {
        let qualifier = event.qualifier.as_deref().unwrap_or("$LATEST");
        let mut record = json!({
            "version": "1.0",
            "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": self.functions.account().qualified_function_arn(&event.function_name, qualifier),
                "condition": condition.as_str(),
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": serde_json::from_str::<Value>(&event.payload).unwrap_or(Value::String(event.payload.clone())),
        });
        if let Some(response) = response {
            let mut context = json!({ "statusCode": response.status, "executedVersion": response.executed_version });
            if let Some(error) = response.function_error {
                context["functionError"] = json!(error);
            }
            record["responseContext"] = context;
            record["responsePayload"] = serde_json::from_slice::<Value>(&response.payload)
                .unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&response.payload).into_owned())
                });
        }
        record
    }
}

/// Commit accepted events in batches: every event waiting when a commit starts shares it.
async fn commit_batches(queue: Arc<dyn AsyncQueue>, mut requests: mpsc::Receiver<EnqueueRequest>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_ENQUEUE_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let events: Vec<AsyncEvent> = batch.iter().map(|(event, _)| event.clone()).collect();
        let result = queue.enqueue(&events).await.map_err(|err| err.to_string());
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

#[async_trait]
impl Invoker for Invocations {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, ServiceError> {
        if request.invocation_type != InvocationType::Event {
            return self.runtime.invoke(request).await;
        }
        let (version, invoked_arn) = self
            .functions
            .resolve_for_invoke(&request.function_name, request.qualifier.as_deref())
            .await?;
        let now = now_ms();
        let payload = String::from_utf8(request.payload).map_err(|_| {
            ServiceError::InvalidRequestContent(
                "Could not parse request body into json: payload is not UTF-8".to_owned(),
            )
        })?;
        let request_id = request
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.accept(AsyncEvent {
            request_id: request_id.clone(),
            function_name: version.name.clone(),
            qualifier: request.qualifier,
            invoked_arn,
            payload,
            enqueued_at: now,
            attempts: 0,
            next_attempt_at: now,
            throttle_backoff_ms: 0,
        })
        .await?;
        Ok(InvokeResponse {
            status: 202,
            payload: Vec::new(),
            function_error: None,
            log_result: None,
            executed_version: version.version.clone(),
            request_id,
        })
    }
}

#[async_trait]
impl MetricsSource for Invocations {
    async fn render(&self) -> String {
        let stats = self.queue.stats(now_ms()).await.unwrap_or_default();
        format!(
            "# HELP kappa_async_queue_depth Asynchronous events accepted and not yet finished.\n\
             # TYPE kappa_async_queue_depth gauge\n\
             kappa_async_queue_depth {}\n\
             # HELP kappa_async_oldest_event_age_seconds Age of the oldest queued asynchronous event.\n\
             # TYPE kappa_async_oldest_event_age_seconds gauge\n\
             kappa_async_oldest_event_age_seconds {:.3}\n\
             # HELP kappa_async_in_flight Asynchronous invocations running now.\n\
             # TYPE kappa_async_in_flight gauge\n\
             kappa_async_in_flight {}\n\
             # HELP kappa_idle_environments Warm execution environments waiting for work.\n\
             # TYPE kappa_idle_environments gauge\n\
             kappa_idle_environments {}\n",
            stats.depth,
            stats.oldest_age_ms as f64 / 1000.0,
            self.in_flight_count(),
            self.runtime.idle_environments(),
        )
    }
}
