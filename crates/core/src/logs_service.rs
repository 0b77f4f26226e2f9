//! The CloudWatch Logs operations a Lambda user needs to read function logs: describe groups and
//! streams, get and filter events, retention. Pagination tokens are opaque to callers and carry
//! event ids (`f/<id>`, `b/<id>`) or list positions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::logs::{LogGroupInfo, LogQuery, LogStore, LogStreamInfo, StoredLogEvent};
use crate::names::AccountContext;
use crate::store::StoreError;

const MAX_DESCRIBE_LIMIT: i64 = 50;
const MAX_EVENTS_LIMIT: i64 = 10_000;
/// Retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Debug, Error)]
pub enum LogsError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceAlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl LogsError {
    fn group_not_found() -> Self {
        Self::ResourceNotFound("The specified log group does not exist.".to_owned())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsInput {
    pub log_group_name_prefix: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsInput {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name_prefix: Option<String>,
    pub order_by: Option<String>,
    pub descending: Option<bool>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsInput {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_name: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
    pub start_from_head: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsInput {
    pub log_group_name: Option<String>,
    pub log_group_identifier: Option<String>,
    pub log_stream_names: Option<Vec<String>>,
    pub log_stream_name_prefix: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub filter_pattern: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroupInput {
    pub log_group_name: Option<String>,
    pub retention_in_days: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroupShape {
    #[serde(flatten)]
    pub info: LogGroupInfo,
    pub metric_filter_count: i64,
    pub arn: String,
    pub log_group_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStreamShape {
    #[serde(flatten)]
    pub info: LogStreamInfo,
    pub arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputLogEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilteredLogEvent {
    pub log_stream_name: String,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
    pub event_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogGroupsOutput {
    pub log_groups: Vec<LogGroupShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeLogStreamsOutput {
    pub log_streams: Vec<LogStreamShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogEventsOutput {
    pub events: Vec<OutputLogEvent>,
    pub next_forward_token: String,
    pub next_backward_token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterLogEventsOutput {
    pub events: Vec<FilteredLogEvent>,
    pub searched_log_streams: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LogsService {
    store: Arc<dyn LogStore>,
    account: AccountContext,
}

impl std::fmt::Debug for dyn LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

impl LogsService {
    pub fn new(store: Arc<dyn LogStore>, account: AccountContext) -> Self {
        Self { store, account }
    }

    fn group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}",
            self.account.region, self.account.account_id
        )
    }

    pub async fn describe_log_groups(
        &self,
        input: DescribeLogGroupsInput,
    ) -> Result<DescribeLogGroupsOutput, LogsError> {
        let limit = check_limit(input.limit, MAX_DESCRIBE_LIMIT)?;
        let mut groups = self
            .store
            .groups(
                input.log_group_name_prefix.as_deref(),
                input.next_token.as_deref(),
                limit + 1,
            )
            .await
            .map_err(LogsError::Internal)?;
        let next_token = page_token(&mut groups, limit, |g| g.log_group_name.clone());
        Ok(DescribeLogGroupsOutput {
            log_groups: groups
                .into_iter()
                .map(|info| LogGroupShape {
                    arn: format!("{}:*", self.group_arn(&info.log_group_name)),
                    log_group_arn: self.group_arn(&info.log_group_name),
                    metric_filter_count: 0,
                    info,
                })
                .collect(),
            next_token,
        })
    }

    pub async fn describe_log_streams(
        &self,
        input: DescribeLogStreamsInput,
    ) -> Result<DescribeLogStreamsOutput, LogsError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let limit = check_limit(input.limit, MAX_DESCRIBE_LIMIT)?;
        let by_time = match input.order_by.as_deref() {
            None | Some("LogStreamName") => false,
            Some("LastEventTime") => {
                if input.log_stream_name_prefix.is_some() {
                    return Err(LogsError::InvalidParameter(
                        "Cannot order by LastEventTime with a logStreamNamePrefix.".to_owned(),
                    ));
                }
                true
            }
            Some(other) => {
                return Err(LogsError::InvalidParameter(format!(
                    "1 validation error detected: Value '{other}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
                )));
            }
        };
        let mut streams = self
            .store
            .streams(&group)
            .await
            .map_err(LogsError::Internal)?
            .ok_or_else(LogsError::group_not_found)?;
        if let Some(prefix) = &input.log_stream_name_prefix {
            streams.retain(|s| s.log_stream_name.starts_with(prefix.as_str()));
        }
        if by_time {
            streams.sort_by_key(|s| {
                (
                    s.last_event_timestamp.unwrap_or(0),
                    s.log_stream_name.clone(),
                )
            });
        }
        if input.descending == Some(true) {
            streams.reverse();
        }
        let offset = parse_offset(input.next_token.as_deref())?;
        let mut page: Vec<LogStreamInfo> =
            streams.into_iter().skip(offset).take(limit + 1).collect();
        let next_token = (page.len() > limit).then(|| {
            page.truncate(limit);
            format!("o/{}", offset + limit)
        });
        let group_arn = self.group_arn(&group);
        Ok(DescribeLogStreamsOutput {
            log_streams: page
                .into_iter()
                .map(|info| LogStreamShape {
                    arn: format!("{group_arn}:log-stream:{}", info.log_stream_name),
                    info,
                })
                .collect(),
            next_token,
        })
    }

    pub async fn get_log_events(
        &self,
        input: GetLogEventsInput,
    ) -> Result<GetLogEventsOutput, LogsError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let Some(stream) = input.log_stream_name else {
            return Err(LogsError::InvalidParameter(
                "logStreamName is required.".to_owned(),
            ));
        };
        let limit = check_limit(input.limit, MAX_EVENTS_LIMIT)?;
        let token = input
            .next_token
            .as_deref()
            .map(EventToken::parse)
            .transpose()?;
        let streams = self
            .store
            .streams(&group)
            .await
            .map_err(LogsError::Internal)?
            .ok_or_else(LogsError::group_not_found)?;
        if !streams.iter().any(|s| s.log_stream_name == stream) {
            return Err(LogsError::ResourceNotFound(
                "The specified log stream does not exist.".to_owned(),
            ));
        }
        let mut query = LogQuery {
            group,
            streams: vec![stream],
            start_time: input.start_time,
            end_time: input.end_time,
            limit,
            ..LogQuery::default()
        };
        match token {
            Some(EventToken::Forward(id)) => query.after_id = Some(id),
            Some(EventToken::Backward(id)) => {
                query.before_id = Some(id);
                query.newest_first = true;
            }
            None => query.newest_first = input.start_from_head != Some(true),
        }
        let mut events = self
            .store
            .events(&query)
            .await
            .map_err(LogsError::Internal)?
            .ok_or_else(LogsError::group_not_found)?;
        if query.newest_first {
            events.reverse();
        }
        let (forward, backward) = match (events.first(), events.last()) {
            (Some(first), Some(last)) => (format!("f/{}", last.id), format!("b/{}", first.id)),
            _ => {
                let echo = input.next_token.unwrap_or_else(|| "f/0".to_owned());
                (echo.clone(), echo.replacen("f/", "b/", 1))
            }
        };
        Ok(GetLogEventsOutput {
            events: events
                .into_iter()
                .map(|e| OutputLogEvent {
                    timestamp: e.timestamp,
                    message: e.message,
                    ingestion_time: e.ingestion_time,
                })
                .collect(),
            next_forward_token: forward,
            next_backward_token: backward,
        })
    }

    pub async fn filter_log_events(
        &self,
        input: FilterLogEventsInput,
    ) -> Result<FilterLogEventsOutput, LogsError> {
        let group = group_name(input.log_group_name, input.log_group_identifier)?;
        let limit = check_limit(input.limit, MAX_EVENTS_LIMIT)?;
        let pattern = FilterPattern::parse(input.filter_pattern.as_deref().unwrap_or(""));
        let mut after = match input
            .next_token
            .as_deref()
            .map(EventToken::parse)
            .transpose()?
        {
            Some(EventToken::Forward(id)) => Some(id),
            Some(EventToken::Backward(_)) => {
                return Err(LogsError::InvalidParameter(
                    "The specified nextToken is invalid.".to_owned(),
                ));
            }
            None => None,
        };
        let mut found: Vec<StoredLogEvent> = Vec::new();
        let scan = 1000;
        loop {
            let query = LogQuery {
                group: group.clone(),
                streams: input.log_stream_names.clone().unwrap_or_default(),
                stream_prefix: input.log_stream_name_prefix.clone(),
                start_time: input.start_time,
                end_time: input.end_time,
                after_id: after,
                limit: scan,
                ..LogQuery::default()
            };
            let batch = self
                .store
                .events(&query)
                .await
                .map_err(LogsError::Internal)?
                .ok_or_else(LogsError::group_not_found)?;
            let exhausted = batch.len() < scan;
            for event in batch {
                after = Some(event.id);
                if pattern.matches(&event.message) {
                    found.push(event);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            if found.len() == limit || exhausted {
                // A full page may have more after it; a short one ends the scan.
                let more = found.len() == limit;
                let next_token = if more {
                    after.map(|id| format!("f/{id}"))
                } else {
                    None
                };
                return Ok(FilterLogEventsOutput {
                    events: found
                        .into_iter()
                        .map(|e| FilteredLogEvent {
                            event_id: e.id.to_string(),
                            log_stream_name: e.stream,
                            timestamp: e.timestamp,
                            message: e.message,
                            ingestion_time: e.ingestion_time,
                        })
                        .collect(),
                    searched_log_streams: Vec::new(),
                    next_token,
                });
            }
        }
    }

    pub async fn create_log_group(&self, input: LogGroupInput) -> Result<(), LogsError> {
        let group = group_name(input.log_group_name, None)?;
        if group.is_empty() || group.len() > 512 {
            return Err(LogsError::InvalidParameter(
                "logGroupName must be 1 to 512 characters.".to_owned(),
            ));
        }
        match self.store.create_group(&group).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(LogsError::ResourceAlreadyExists(
                "The specified log group already exists".to_owned(),
            )),
            Err(err) => Err(LogsError::Internal(err)),
        }
    }

    pub async fn delete_log_group(&self, input: LogGroupInput) -> Result<(), LogsError> {
        let group = group_name(input.log_group_name, None)?;
        not_found_as_group(self.store.delete_group(&group).await)
    }

    pub async fn put_retention_policy(&self, input: LogGroupInput) -> Result<(), LogsError> {
        let group = group_name(input.log_group_name, None)?;
        let days = input.retention_in_days.unwrap_or(0);
        if !RETENTION_DAYS.contains(&days) {
            return Err(LogsError::InvalidParameter(format!(
                "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}"
            )));
        }
        not_found_as_group(self.store.set_retention(&group, Some(days)).await)
    }

    pub async fn delete_retention_policy(&self, input: LogGroupInput) -> Result<(), LogsError> {
        let group = group_name(input.log_group_name, None)?;
        not_found_as_group(self.store.set_retention(&group, None).await)
    }

    /// Apply retention: drop events older than their group keeps.
    pub async fn expire(&self, now_ms: i64) -> Result<u64, LogsError> {
        self.store.expire(now_ms).await.map_err(LogsError::Internal)
    }
}

fn not_found_as_group(result: Result<(), StoreError>) -> Result<(), LogsError> {
    match result {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(LogsError::group_not_found()),
        Err(err) => Err(LogsError::Internal(err)),
    }
}

fn group_name(name: Option<String>, identifier: Option<String>) -> Result<String, LogsError> {
    match (name, identifier) {
        (Some(name), _) => Ok(name),
        (None, Some(identifier)) => Ok(identifier
            .split(":log-group:")
            .nth(1)
            .map_or(identifier.clone(), |rest| {
                rest.trim_end_matches(":*").to_owned()
            })),
        (None, None) => Err(LogsError::InvalidParameter(
            "Either logGroupName or logGroupIdentifier is required.".to_owned(),
        )),
    }
}

fn check_limit(limit: Option<i64>, max: i64) -> Result<usize, LogsError> {
    let limit = limit.unwrap_or(max);
    if !(1..=max).contains(&limit) {
        return Err(LogsError::InvalidParameter(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        )));
    }
    usize::try_from(limit)
        .map_err(|_| LogsError::InvalidParameter("limit is out of range".to_owned()))
}

/// Trim a page fetched with one extra row; the token is the last kept item's key.
fn page_token<T>(items: &mut Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Option<String> {
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    }
}

fn parse_offset(token: Option<&str>) -> Result<usize, LogsError> {
    match token {
        None => Ok(0),
        Some(token) => token
            .strip_prefix("o/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                LogsError::InvalidParameter("The specified nextToken is invalid.".to_owned())
            }),
    }
}

enum EventToken {
    Forward(i64),
    Backward(i64),
}

impl EventToken {
    fn parse(token: &str) -> Result<Self, LogsError> {
        let invalid =
            || LogsError::InvalidParameter("The specified nextToken is invalid.".to_owned());
        if let Some(id) = token.strip_prefix("f/") {
            id.parse().map(Self::Forward).map_err(|_| invalid())
        } else if let Some(id) = token.strip_prefix("b/") {
            id.parse().map(Self::Backward).map_err(|_| invalid())
        } else {
            Err(invalid())
        }
    }
}

/// CloudWatch Logs' term patterns: every plain or quoted term must appear, `?term`s are
/// alternatives (one must appear), `-term`s must not appear. An empty pattern matches all.
#[derive(Debug, Default)]
struct FilterPattern {
    required: Vec<String>,
    any_of: Vec<String>,
    excluded: Vec<String>,
}

impl FilterPattern {
    fn parse(pattern: &str) -> Self {
        let mut parsed = Self::default();
        let mut rest = pattern.trim();
        while !rest.is_empty() {
            let (prefix, body) = match rest.as_bytes()[0] {
                b'?' => (Some('?'), &rest[1..]),
                b'-' => (Some('-'), &rest[1..]),
                _ => (None, rest),
            };
            let (term, remainder) = if let Some(quoted) = body.strip_prefix('"') {
                match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                }
            } else {
                match body.find(char::is_whitespace) {
                    Some(end) => (&body[..end], &body[end..]),
                    None => (body, ""),
                }
            };
            if !term.is_empty() {
                let list = match prefix {
                    Some('?') => &mut parsed.any_of,
                    Some('-') => &mut parsed.excluded,
                    _ => &mut parsed.required,
                };
                list.push(term.to_owned());
            }
            rest = remainder.trim_start();
        }
        parsed
    }

    fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_patterns_combine_terms() {
        let p = FilterPattern::parse(r#"ERROR "disk full" -ignored"#);
        assert!(p.matches("ERROR: disk full now"));
        assert!(!p.matches("ERROR: disk is full"));
        assert!(!p.matches("ERROR disk full ignored"));
        let any = FilterPattern::parse("?START ?END");
        assert!(any.matches("END RequestId: x"));
        assert!(!any.matches("REPORT"));
        assert!(FilterPattern::parse("").matches("anything"));
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(check_limit(None, 50).unwrap(), 50);
        assert!(check_limit(Some(0), 50).is_err());
        assert!(check_limit(Some(51), 50).is_err());
    }
}
