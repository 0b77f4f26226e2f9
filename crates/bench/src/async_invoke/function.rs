//! The benchmark's function on the server: the `print-event` binary as a `provided.al2023`
//! bootstrap, and the events sent to it.

use std::io::{Cursor, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::api_connection::ApiConnection;
use crate::deployment_package::ROLE;

/// The function's name on the server.
pub const NAME: &str = "kappa-bench-async";
const FUNCTIONS_PATH: &str = "/2015-03-31/functions";

/// `POST /2015-03-31/functions/NAME/invocations`.
pub fn invoke_path() -> String {
    format!("{FUNCTIONS_PATH}/{NAME}/invocations")
}

/// The log group the function's output goes to.
pub fn log_group() -> String {
    format!("/aws/lambda/{NAME}")
}

/// A deployment package whose only entry is `binary` as an executable `bootstrap`.
pub fn package(binary: &Path) -> Result<Vec<u8>> {
    let code = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)
        .context("starting the bootstrap entry")?;
    zip.write_all(&code).context("zipping the bootstrap")?;
    let archive = zip.finish().context("finishing the zip")?;
    Ok(archive.into_inner())
}

/// CreateFunction with `package`, as a boto3 client sends it.
pub async fn create(connection: &mut ApiConnection, package: &[u8]) -> Result<()> {
    let body = serde_json::json!({
        "FunctionName": NAME,
        "Runtime": "provided.al2023",
        "Role": ROLE,
        "Handler": "bootstrap",
        "Timeout": 30,
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(package) },
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
        .with_context(|| format!("creating {NAME}"))?;
    Ok(())
}

/// The event with sequence number `seq`, stamped with the time it is built (just before it is
/// sent): `{"seq":N,"sent_ms":…,"sent_us":…}`, times since the Unix epoch.
pub fn event(seq: u64) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Bytes::from(format!(
        r#"{{"seq":{seq},"sent_ms":{},"sent_us":{}}}"#,
        now.as_millis(),
        now.as_micros()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_carries_its_number_and_send_time() {
        let event: serde_json::Value = serde_json::from_slice(&event(7)).unwrap();
        assert_eq!(event["seq"], 7);
        let ms = event["sent_ms"].as_u64().unwrap();
        let us = event["sent_us"].as_u64().unwrap();
        assert_eq!(us / 1000, ms);
    }

    #[test]
    fn the_package_is_one_executable_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("print-event");
        std::fs::write(&binary, b"\x7fELF").unwrap();
        let zip = package(&binary).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().map(|mode| mode & 0o777), Some(0o755));
    }
}
