//! What Kappa's log tail (`X-Amz-Log-Type: Tail`) says about an invocation: the `Init Duration`
//! of the `REPORT` line, present only on an environment's first invocation.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;

use crate::api_connection::ApiResponse;

const INIT_DURATION: &str = "Init Duration:";

/// The decoded `X-Amz-Log-Result` of an invocation sent with `X-Amz-Log-Type: Tail`.
pub fn tail_log(response: &ApiResponse) -> Result<String> {
    let encoded = response
        .headers
        .get("x-amz-log-result")
        .context("the invocation answered without X-Amz-Log-Result")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .context("decoding X-Amz-Log-Result")?;
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}

/// The `Init Duration` of the last `REPORT` line in `log` (`Init Duration: 12.34 ms`), or `None`
/// when the invocation did not start its environment.
pub fn init_duration(log: &str) -> Option<Duration> {
    let report = log.lines().rev().find(|line| line.starts_with("REPORT "))?;
    let (_, rest) = report.split_once(INIT_DURATION)?;
    let millis = rest.split_whitespace().next()?;
    let millis: f64 = millis.parse().ok()?;
    (millis.is_finite() && millis >= 0.0).then(|| Duration::from_secs_f64(millis / 1000.0))
}

/// [`init_duration`] of an invocation's answer.
pub fn init_duration_of(response: &ApiResponse) -> Result<Option<Duration>> {
    Ok(init_duration(&tail_log(response)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLD: &str = "START RequestId: 1 Version: $LATEST\nhello\nEND RequestId: 1\n\
        REPORT RequestId: 1\tDuration: 1.07 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t\
        Max Memory Used: 9 MB\tInit Duration: 12.34 ms\t\n";
    const WARM: &str = "START RequestId: 2 Version: $LATEST\nEND RequestId: 2\n\
        REPORT RequestId: 2\tDuration: 0.51 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\t\
        Max Memory Used: 9 MB\t\n";

    #[test]
    fn a_first_invocation_reports_its_init_duration() {
        assert_eq!(init_duration(COLD), Some(Duration::from_micros(12_340)));
    }

    #[test]
    fn a_warm_invocation_has_none() {
        assert_eq!(init_duration(WARM), None);
    }

    #[test]
    fn only_the_report_line_counts() {
        // A function printing the words itself does not make a cold start.
        let printed = format!("Init Duration: 5.00 ms\n{WARM}");
        assert_eq!(init_duration(&printed), None);
        assert_eq!(
            init_duration("REPORT RequestId: 3\tInit Duration: x ms\n"),
            None
        );
        assert_eq!(init_duration(""), None);
    }

    #[test]
    fn the_tail_is_base64() {
        let mut headers = hyper::HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(COLD);
        headers.insert("x-amz-log-result", encoded.parse().unwrap());
        let response = ApiResponse {
            status: hyper::StatusCode::OK,
            headers,
            body: bytes::Bytes::new(),
        };
        assert_eq!(
            init_duration_of(&response).unwrap(),
            Some(Duration::from_micros(12_340))
        );
        let bare = ApiResponse {
            status: hyper::StatusCode::OK,
            headers: hyper::HeaderMap::new(),
            body: bytes::Bytes::new(),
        };
        assert!(init_duration_of(&bare).is_err());
    }
}
