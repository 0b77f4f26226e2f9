//! Function logs: events grouped in log groups (`/aws/lambda/<function>`) and streams (one per
//! execution environment), as CloudWatch Logs keeps them.

use async_trait::async_trait;
use serde::Serialize;

use crate::store::StoreError;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Unix epoch milliseconds.
    pub timestamp: i64,
    pub message: String,
}

/// Events of one stream, appended together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub group: String,
    pub stream: String,
    pub events: Vec<LogEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroupInfo {
    pub log_group_name: String,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i64>,
    pub stored_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStreamInfo {
    pub log_stream_name: String,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ingestion_time: Option<i64>,
    pub stored_bytes: i64,
}

/// A stored event with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogEvent {
    /// Position in the store; increasing in insertion order, used for paging.
    pub id: i64,
    pub stream: String,
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
}

/// A query over the events of one group.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub group: String,
    /// Restrict to these streams (empty: all).
    pub streams: Vec<String>,
    pub stream_prefix: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// Only events after this id (forward) or before it (backward).
    pub after_id: Option<i64>,
    pub before_id: Option<i64>,
    pub newest_first: bool,
    pub limit: usize,
}

/// Durable log storage.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Append batches in one transaction, creating groups and streams as needed.
    async fn append(&self, batches: &[LogBatch]) -> Result<(), StoreError>;
    async fn create_group(&self, group: &str) -> Result<(), StoreError>;
    async fn delete_group(&self, group: &str) -> Result<(), StoreError>;
    async fn set_retention(&self, group: &str, days: Option<i64>) -> Result<(), StoreError>;
    /// Groups ordered by name, after `after`, with the given prefix.
    async fn groups(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogGroupInfo>, StoreError>;
    /// Streams of a group; `None` if the group does not exist.
    async fn streams(&self, group: &str) -> Result<Option<Vec<LogStreamInfo>>, StoreError>;
    /// Events matching a query; `None` if the group does not exist.
    async fn events(&self, query: &LogQuery) -> Result<Option<Vec<StoredLogEvent>>, StoreError>;
    /// Drop events older than each group's retention; returns how many were removed.
    async fn expire(&self, now_ms: i64) -> Result<u64, StoreError>;
}
