//! The durable queue behind asynchronous invocation, and the per-function settings that govern
//! its retries and destinations.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// One accepted asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    /// The request id, the same on every attempt.
    pub request_id: String,
    pub function_name: String,
    pub qualifier: Option<String>,
    /// The ARN the caller invoked, as the function's context reports it.
    pub invoked_arn: String,
    /// The payload, JSON text.
    pub payload: String,
    /// Unix epoch milliseconds when the event was accepted.
    pub enqueued_at: i64,
    /// Invocations that ended in a function error so far.
    pub attempts: u32,
    /// Not before this time (Unix epoch milliseconds).
    pub next_attempt_at: i64,
    /// Current backoff after throttles or platform errors (0 when none).
    pub throttle_backoff_ms: i64,
}

/// Depth and age of the queue, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: u64,
    /// Age of the oldest event in milliseconds (0 when empty).
    pub oldest_age_ms: i64,
}

/// Durable storage of asynchronous events. Each call is atomic.
#[async_trait]
pub trait AsyncQueue: Send + Sync + 'static {
    /// Store events in one commit; when this returns they survive a crash.
    async fn enqueue(&self, events: &[AsyncEvent]) -> Result<(), StoreError>;
    /// Events due at `now`, oldest due first, skipping `excluded` request ids.
    async fn due(
        &self,
        now: i64,
        limit: usize,
        excluded: &[String],
    ) -> Result<Vec<AsyncEvent>, StoreError>;
    /// Record a failed attempt or a backoff and when to try again.
    async fn reschedule(&self, event: &AsyncEvent) -> Result<(), StoreError>;
    /// Remove a finished event and, in the same commit, enqueue what its outcome produces
    /// (destination deliveries).
    async fn complete(&self, request_id: &str, follow_ups: &[AsyncEvent])
    -> Result<(), StoreError>;
    async fn stats(&self, now: i64) -> Result<QueueStats, StoreError>;
}

/// `DestinationConfig` of an event invoke config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Retry and destination settings of one function version or alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_in_seconds: Option<u32>,
    pub destinations: DestinationConfig,
    /// Unix epoch milliseconds.
    pub last_modified: i64,
}

/// Default retries after a function error.
pub const DEFAULT_MAXIMUM_RETRY_ATTEMPTS: u32 = 2;
/// Default maximum event age (6 hours).
pub const DEFAULT_MAXIMUM_EVENT_AGE_SECONDS: u32 = 21_600;

impl EventInvokeConfig {
    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts
            .unwrap_or(DEFAULT_MAXIMUM_RETRY_ATTEMPTS)
    }

    pub fn max_age_ms(&self) -> i64 {
        i64::from(
            self.maximum_event_age_in_seconds
                .unwrap_or(DEFAULT_MAXIMUM_EVENT_AGE_SECONDS),
        ) * 1000
    }
}

/// Durable event invoke configs, keyed by function name and qualifier (`$LATEST` when none).
#[async_trait]
pub trait EventInvokeConfigStore: Send + Sync + 'static {
    async fn put_config(
        &self,
        function: &str,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> Result<(), StoreError>;
    async fn get_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>, StoreError>;
    /// `NotFound` if there was none.
    async fn delete_config(&self, function: &str, qualifier: &str) -> Result<(), StoreError>;
    /// Every config of a function, by qualifier.
    async fn list_configs(
        &self,
        function: &str,
    ) -> Result<Vec<(String, EventInvokeConfig)>, StoreError>;
}
