//! Deployment packages and the CreateFunction body a boto3 client would send for them.

use std::io::{Cursor, Read, Write};

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Size of the single entry in each package: 1 MiB of random bytes.
pub const ENTRY_BYTES: usize = 1024 * 1024;
/// The role every benchmark function is created with.
pub const ROLE: &str = "arn:aws:iam::000000000000:role/bench";

/// A zip whose single entry is [`ENTRY_BYTES`] read from `random`, stored uncompressed so the
/// archive is as large as its content (random bytes would not compress anyway).
pub fn random_zip(random: &mut impl Read) -> Result<Vec<u8>> {
    let mut content = vec![0; ENTRY_BYTES];
    random
        .read_exact(&mut content)
        .context("reading random bytes for the package")?;
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(ENTRY_BYTES + 1024)));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    zip.start_file("payload.bin", options)
        .context("starting the zip entry")?;
    zip.write_all(&content).context("writing the zip entry")?;
    let archive = zip.finish().context("finishing the zip")?;
    Ok(archive.into_inner())
}

/// The JSON body of CreateFunction with the package inline as `Code.ZipFile`.
pub fn create_function_body(name: &str, zip: &[u8]) -> Result<Bytes> {
    let body = serde_json::json!({
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
    });
    let bytes = serde_json::to_vec(&body).context("encoding the CreateFunction body")?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_holds_one_stored_entry_of_one_mebibyte() {
        let mut random = std::io::repeat(7);
        let zip = random_zip(&mut random).unwrap();
        assert!(zip.len() > ENTRY_BYTES && zip.len() < ENTRY_BYTES + 1024);
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.compression(), CompressionMethod::Stored);
        assert_eq!(entry.size(), ENTRY_BYTES as u64);
    }

    #[test]
    fn the_create_body_carries_the_package_in_base64() {
        let body = create_function_body("f1", b"PK").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["FunctionName"], "f1");
        assert_eq!(json["Runtime"], "python3.12");
        assert_eq!(json["Handler"], "app.handler");
        assert_eq!(json["Code"]["ZipFile"], "UEs=");
    }
}
