//! What the server says about asynchronous events: the queue gauges of `GET /kappa/metrics`, and
//! the function's log lines through the CloudWatch Logs API on the same endpoint.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api_connection::ApiConnection;

const METRICS_PATH: &str = "/kappa/metrics";
/// What the benchmark function prints once per event, before the fields.
pub const EVENT_MARKER: &str = "KAPPA_BENCH_EVENT";
/// What a `REPORT` line says only after an environment's first invocation.
pub const COLD_START_MARKER: &str = "Init Duration";

/// The asynchronous queue's gauges at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueGauges {
    /// Events accepted and not yet finished (`kappa_async_queue_depth`).
    pub depth: u64,
    /// Events being invoked now (`kappa_async_in_flight`).
    pub in_flight: u64,
}

/// Read the gauges from the server.
pub async fn queue_gauges(connection: &mut ApiConnection) -> Result<QueueGauges> {
    let body = connection
        .expect(Method::GET, METRICS_PATH, None, StatusCode::OK)
        .await?;
    parse_gauges(&String::from_utf8_lossy(&body))
}

/// The two gauges out of Prometheus text; both must be there.
pub fn parse_gauges(text: &str) -> Result<QueueGauges> {
    let mut depth = None;
    let mut in_flight = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let slot = match name {
            "kappa_async_queue_depth" => &mut depth,
            "kappa_async_in_flight" => &mut in_flight,
            _ => continue,
        };
        let value: f64 = value
            .parse()
            .with_context(|| format!("reading the metric line {line:?}"))?;
        *slot = Some(value as u64);
    }
    let (Some(depth), Some(in_flight)) = (depth, in_flight) else {
        bail!("{METRICS_PATH} has no kappa_async_queue_depth or kappa_async_in_flight:\n{text}");
    };
    Ok(QueueGauges { depth, in_flight })
}

/// Every message of `log_group` that matches `filter_pattern`, through FilterLogEvents, following
/// `nextToken` to the end.
pub async fn filter_log_messages(
    connection: &mut ApiConnection,
    log_group: &str,
    filter_pattern: &str,
) -> Result<Vec<String>> {
    let mut messages = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let mut request = serde_json::json!({
            "logGroupName": log_group,
            "filterPattern": filter_pattern,
        });
        if let Some(token) = &next_token {
            request["nextToken"] = Value::String(token.clone());
        }
        let response = connection
            .send_with_headers(
                Method::POST,
                "/",
                &[
                    ("x-amz-target", "Logs_20140328.FilterLogEvents"),
                    ("content-type", "application/x-amz-json-1.1"),
                ],
                Some(Bytes::from(request.to_string())),
            )
            .await?;
        ensure!(
            response.status == StatusCode::OK,
            "FilterLogEvents on {log_group} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        let page: Value =
            serde_json::from_slice(&response.body).context("reading FilterLogEvents' answer")?;
        let events = page["events"]
            .as_array()
            .context("FilterLogEvents answered without events")?;
        for event in events {
            let message = event["message"]
                .as_str()
                .context("a log event without a message")?;
            messages.push(message.to_owned());
        }
        match page["nextToken"].as_str() {
            // An empty page with a token would loop forever on a server that keeps answering it.
            Some(token) if !events.is_empty() => next_token = Some(token.to_owned()),
            _ => return Ok(messages),
        }
    }
}

/// One line the function printed: which event, when it was sent and when the handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRun {
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub sent_us: u64,
    /// Microseconds since the Unix epoch.
    pub ran_us: u64,
}

/// `KAPPA_BENCH_EVENT seq=<n> sent_us=<µs> ran_us=<µs>`, anywhere in the message.
pub fn parse_event_line(message: &str) -> Option<EventRun> {
    let (_, fields) = message.split_once(EVENT_MARKER)?;
    let mut seq = None;
    let mut sent_us = None;
    let mut ran_us = None;
    for field in fields.split_whitespace() {
        let (name, value) = field.split_once('=')?;
        let slot = match name {
            "seq" => &mut seq,
            "sent_us" => &mut sent_us,
            "ran_us" => &mut ran_us,
            _ => continue,
        };
        *slot = Some(value.parse().ok()?);
    }
    Some(EventRun {
        seq: seq?,
        sent_us: sent_us?,
        ran_us: ran_us?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_gauges() {
        let text = "# HELP kappa_async_queue_depth x\n# TYPE kappa_async_queue_depth gauge\n\
                    kappa_async_queue_depth 42\nkappa_async_oldest_event_age_seconds 1.250\n\
                    kappa_async_in_flight 3\nkappa_idle_environments 7\n";
        assert_eq!(
            parse_gauges(text).unwrap(),
            QueueGauges {
                depth: 42,
                in_flight: 3
            }
        );
    }

    #[test]
    fn a_missing_gauge_is_an_error() {
        let err = parse_gauges("kappa_async_queue_depth 0\n").unwrap_err();
        assert!(err.to_string().contains("kappa_async_in_flight"), "{err}");
    }

    #[test]
    fn reads_the_printed_event_line() {
        let run = parse_event_line("KAPPA_BENCH_EVENT seq=17 sent_us=100 ran_us=250\n");
        assert_eq!(
            run,
            Some(EventRun {
                seq: 17,
                sent_us: 100,
                ran_us: 250
            })
        );
        assert_eq!(parse_event_line("START RequestId: x\n"), None);
        assert_eq!(
            parse_event_line("KAPPA_BENCH_EVENT seq=1 sent_us=2\n"),
            None
        );
        assert_eq!(
            parse_event_line("KAPPA_BENCH_EVENT seq=x sent_us=2 ran_us=3"),
            None
        );
    }
}
