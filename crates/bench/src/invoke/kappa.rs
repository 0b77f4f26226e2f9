//! The Kappa side: create the function through the API, invoke it warm, then force a new
//! environment before each cold invocation by changing the configuration.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::BenchFunction;
use super::measure::{self, Measurements, Workload};
use crate::api_connection::{ApiConnection, ApiResponse};
use crate::deployment_package::ROLE;

const FUNCTIONS_PATH: &str = "/2015-03-31/functions";
const SIDE: &str = "Kappa";
/// What Kappa's `REPORT` line says on, and only on, an environment's first invocation.
const COLD_MARKER: &str = "Init Duration:";
/// One vCPU's worth of memory on Lambda: Kappa holds a function to the CPU share its memory buys
/// (128 MB gets 7% of a CPU) and RIE holds it to nothing, so the comparison gives both a CPU.
pub const MEMORY_MB: u32 = 1769;

/// Create `function` on the server behind `connection` and measure its invocations.
pub async fn measure(
    connection: &mut ApiConnection,
    function: &BenchFunction,
    workload: Workload,
) -> Result<Measurements> {
    let body = serde_json::json!({
        "FunctionName": function.name,
        "Runtime": function.runtime(),
        "Role": ROLE,
        "Handler": "app.handler",
        "Timeout": 30,
        "MemorySize": MEMORY_MB,
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
        .with_context(|| format!("creating {}", function.name))?;

    let invoke_path = format!("{FUNCTIONS_PATH}/{}/invocations", function.name);
    let warm = measure::warm_invokes(connection, &invoke_path, workload, SIDE).await?;

    let configuration_path = format!("{FUNCTIONS_PATH}/{}/configuration", function.name);
    let mut cold_invoke = Vec::with_capacity(workload.cold);
    let mut cold_from_change = Vec::with_capacity(workload.cold);
    for round in 0..workload.cold {
        tokio::time::sleep(workload.cold_pause).await;
        let update = Bytes::from(format!(
            r#"{{"Description":"kappa-bench cold start {round}"}}"#
        ));
        let changed = Instant::now();
        connection
            .expect(
                Method::PUT,
                &configuration_path,
                Some(update),
                StatusCode::OK,
            )
            .await
            .context("changing the configuration to force a new environment")?;
        let sent = Instant::now();
        let response =
            measure::invoke(connection, &invoke_path, &[("x-amz-log-type", "Tail")]).await?;
        cold_invoke.push(sent.elapsed());
        cold_from_change.push(changed.elapsed());
        measure::check_echo(&response, SIDE)?;
        ensure!(
            tail_log(&response)?.contains(COLD_MARKER),
            "the invocation after UpdateFunctionConfiguration was not a cold start (no \
             {COLD_MARKER:?} in its log)"
        );
    }
    Ok(Measurements {
        warm,
        cold_invoke: measure::cold_samples("cold invoke", cold_invoke),
        cold_from_change: measure::cold_samples("cold from change", cold_from_change),
    })
}

/// The decoded `X-Amz-Log-Result` of an invocation sent with `X-Amz-Log-Type: Tail`.
fn tail_log(response: &ApiResponse) -> Result<String> {
    let encoded = response
        .headers
        .get("x-amz-log-result")
        .context("the invocation answered without X-Amz-Log-Result")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .context("decoding X-Amz-Log-Result")?;
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}
