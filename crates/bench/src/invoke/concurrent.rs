//! What the capacity figures share: creating a function with a memory size, and a burst of
//! requests sent at the same moment over separate keep-alive connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::BenchFunction;
use crate::api_connection::{ApiConnection, ApiResponse};
use crate::deployment_package::ROLE;

const FUNCTIONS_PATH: &str = "/2015-03-31/functions";
/// Lambda gives a function one vCPU at 1,769 MB; the capacity figures use that size so that the
/// CPU share of an environment does not limit them.
pub const ONE_VCPU_MEMORY_MB: u32 = 1769;
/// Asks for the log tail, whose `REPORT` line tells a cold start.
pub const TAIL: &[(&str, &str)] = &[("x-amz-log-type", "Tail")];

/// Create `function`'s code as a new function `name` of `memory_mb`; its invoke path.
pub async fn create_function(
    connection: &mut ApiConnection,
    function: &BenchFunction,
    name: &str,
    memory_mb: u32,
) -> Result<String> {
    let body = serde_json::json!({
        "FunctionName": name,
        "Runtime": function.runtime(),
        "Role": ROLE,
        "Handler": "app.handler",
        "Timeout": 30,
        "MemorySize": memory_mb,
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(&function.package) },
    });
    let body = serde_json::to_vec(&body).context("encoding the CreateFunction body")?;
    connection
        .expect(
            Method::POST,
            FUNCTIONS_PATH,
            Some(Bytes::from(body)),
            StatusCode::CREATED,
        )
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(format!("{FUNCTIONS_PATH}/{name}/invocations"))
}

/// One request of a burst.
#[derive(Debug)]
pub struct Answer {
    pub sent: Instant,
    pub answered: Instant,
    pub response: ApiResponse,
}

impl Answer {
    pub fn latency(&self) -> Duration {
        self.answered.duration_since(self.sent)
    }
}

/// Send `body` to `path` once over each of `connections`, all released at the same moment; the
/// answers and the connections, in the same order.
pub async fn burst(
    connections: Vec<ApiConnection>,
    path: &str,
    headers: &'static [(&'static str, &'static str)],
    body: Bytes,
) -> Result<(Vec<Answer>, Vec<ApiConnection>)> {
    let barrier = Arc::new(Barrier::new(connections.len()));
    let mut tasks = JoinSet::new();
    for (index, mut connection) in connections.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        let path = path.to_owned();
        let body = body.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let sent = Instant::now();
            let response = connection
                .send_with_headers(Method::POST, &path, headers, Some(body))
                .await;
            let answered = Instant::now();
            (index, connection, sent, answered, response)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.context("a client task failed")?);
    }
    done.sort_by_key(|(index, ..)| *index);
    let mut answers = Vec::with_capacity(done.len());
    let mut connections = Vec::with_capacity(done.len());
    for (_, connection, sent, answered, response) in done {
        answers.push(Answer {
            sent,
            answered,
            response: response?,
        });
        connections.push(connection);
    }
    Ok((answers, connections))
}

/// `count` new keep-alive connections to `address`.
pub async fn connect(address: SocketAddr, count: usize) -> Result<Vec<ApiConnection>> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(ApiConnection::open(address).await?);
    }
    Ok(connections)
}

/// From the first request sent to the last answer read.
pub fn wall_time(answers: &[Answer]) -> Duration {
    let first = answers.iter().map(|a| a.sent).min();
    let last = answers.iter().map(|a| a.answered).max();
    match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    }
}

/// Fail unless `response` is a 200 whose JSON equals `sent`'s.
pub fn check_echo_of(response: &ApiResponse, sent: &[u8], side: &str) -> Result<()> {
    ensure!(
        response.status == StatusCode::OK,
        "{side} answered the invocation with {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let expected: Value = serde_json::from_slice(sent).context("parsing the event")?;
    let answered: Value = serde_json::from_slice(&response.body).with_context(|| {
        format!(
            "{side} answered something that is not JSON: {}",
            String::from_utf8_lossy(&response.body)
        )
    })?;
    ensure!(
        answered == expected,
        "{side} answered {answered} instead of echoing the event"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(sent: Instant, after_ms: u64) -> Answer {
        Answer {
            sent,
            answered: sent + Duration::from_millis(after_ms),
            response: ApiResponse {
                status: StatusCode::OK,
                headers: hyper::HeaderMap::new(),
                body: Bytes::from_static(br#"{"sleep_ms": 5}"#),
            },
        }
    }

    #[test]
    fn the_wall_time_runs_from_the_first_send_to_the_last_answer() {
        let start = Instant::now();
        let answers = [
            answer(start + Duration::from_millis(2), 10),
            answer(start, 3),
        ];
        assert_eq!(wall_time(&answers), Duration::from_millis(12));
        assert_eq!(answers[0].latency(), Duration::from_millis(10));
        assert_eq!(wall_time(&[]), Duration::ZERO);
    }

    #[test]
    fn an_echo_is_compared_with_what_was_sent() {
        let start = Instant::now();
        let echoed = answer(start, 1);
        check_echo_of(&echoed.response, br#"{"sleep_ms":5}"#, "Kappa").unwrap();
        let err = check_echo_of(&echoed.response, br#"{"sleep_ms":6}"#, "Kappa").unwrap_err();
        assert!(err.to_string().contains("instead of echoing"), "{err}");
    }
}
