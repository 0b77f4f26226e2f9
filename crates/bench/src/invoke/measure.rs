//! What both sides share: the event, the check that it came back, and the warm-invoke loop.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api_connection::{ApiConnection, ApiResponse};
use crate::latency::Samples;

/// The event every invocation sends; the echo functions return it unchanged.
pub const EVENT: &[u8] =
    br#"{"benchmark":"kappa-bench invoke","items":[1,2,3],"nested":{"ok":true}}"#;

/// How many invocations of each kind.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Unmeasured warm invocations (the first of them starts the environment).
    pub warmup: usize,
    /// Measured warm invocations.
    pub iterations: usize,
    /// Measured cold starts, each in a fresh environment.
    pub cold: usize,
    /// The pause before each measured cold start, on both sides.
    pub cold_pause: Duration,
}

/// One side's figures for one function.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// Invocations of an environment that already served one.
    pub warm: Samples,
    /// The invoke request that starts a new environment, from sending it to reading the answer.
    pub cold_invoke: Samples,
    /// From the moment a new environment is asked for (Kappa: UpdateFunctionConfiguration is
    /// sent; the emulator: its process is spawned) to reading the first answer.
    pub cold_from_change: Samples,
}

/// Samples of one cold-start figure, gathered one at a time.
pub fn cold_samples(operation: &str, latencies: Vec<Duration>) -> Samples {
    let loop_time = latencies.iter().sum();
    Samples {
        operation: operation.to_owned(),
        latencies,
        loop_time,
    }
}

/// The invocation request: `POST path` with [`EVENT`].
pub async fn invoke(
    connection: &mut ApiConnection,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<ApiResponse> {
    connection
        .send_with_headers(Method::POST, path, headers, Some(Bytes::from_static(EVENT)))
        .await
}

/// Fail unless `response` is a 200 carrying [`EVENT`] (compared as JSON: Python adds spaces).
pub fn check_echo(response: &ApiResponse, side: &str) -> Result<()> {
    ensure!(
        response.status == StatusCode::OK,
        "{side} answered the invocation with {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let expected: Value = serde_json::from_slice(EVENT).context("parsing the event")?;
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

/// `warmup` unmeasured then `iterations` measured invocations over one keep-alive connection.
pub async fn warm_invokes(
    connection: &mut ApiConnection,
    path: &str,
    workload: Workload,
    side: &str,
) -> Result<Samples> {
    for _ in 0..workload.warmup {
        let response = invoke(connection, path, &[]).await?;
        check_echo(&response, side)?;
    }
    let mut latencies = Vec::with_capacity(workload.iterations);
    let mut checking = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..workload.iterations {
        let sent = Instant::now();
        let response = invoke(connection, path, &[]).await?;
        latencies.push(sent.elapsed());
        let check = Instant::now();
        check_echo(&response, side)?;
        checking += check.elapsed();
    }
    Ok(Samples {
        operation: "warm".to_owned(),
        latencies,
        loop_time: started.elapsed().saturating_sub(checking),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: StatusCode, body: &'static [u8]) -> ApiResponse {
        ApiResponse {
            status,
            headers: hyper::HeaderMap::new(),
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn an_echo_may_be_formatted_differently() {
        let spaced =
            br#"{"benchmark": "kappa-bench invoke", "items": [1, 2, 3], "nested": {"ok": true}}"#;
        check_echo(&response(StatusCode::OK, spaced), "x").unwrap();
        check_echo(&response(StatusCode::OK, EVENT), "x").unwrap();
    }

    #[test]
    fn errors_and_other_answers_are_refused() {
        let failure = br#"{"errorType":"Runtime.ExitError","errorMessage":"boom"}"#;
        let err = check_echo(&response(StatusCode::OK, failure), "Kappa").unwrap_err();
        assert!(err.to_string().contains("instead of echoing"), "{err}");
        let err = check_echo(&response(StatusCode::BAD_GATEWAY, b"{}"), "RIE").unwrap_err();
        assert!(err.to_string().contains("502"), "{err}");
    }
}
