//! Environment variables sealed at rest: the one pair of functions that turns a
//! `FunctionVersion` into the text the store keeps and back.
//!
//! The stored text is the version's JSON with `settings.environment` set to null and the
//! variables in `settings.sealed_environment`: `v1.` then base64 of a random 96-bit nonce followed
//! by the ChaCha20-Poly1305 ciphertext and tag of the variables' JSON. The associated data binds
//! the ciphertext to the function name and version, so sealed variables copied onto another
//! function or version do not open. Rows written before sealing existed (plaintext
//! `environment`) still read; the store seals them at start (`sqlite_sealing.rs`).

use std::collections::BTreeMap;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use kappa_core::function::FunctionVersion;
use serde_json::Value;

use crate::data_key::DataKey;

const ENVELOPE_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;
/// The member of `settings` that holds the sealed variables.
pub(crate) const SEALED_MEMBER: &str = "sealed_environment";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("encoding the function version")]
    Encode(#[source] serde_json::Error),
    #[error("decoding the stored function version")]
    Decode(#[source] serde_json::Error),
    #[error("no random bytes for a nonce")]
    Random(#[source] getrandom::Error),
    #[error("the sealed environment of function {function} version {version} is malformed")]
    Malformed { function: String, version: String },
    /// Tampered bytes, a row copied from another function, or another data key.
    #[error(
        "the sealed environment of function {function} version {version} does not open with this data key"
    )]
    Unopenable { function: String, version: String },
}

/// Seals and opens environment variables with the data key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &DataKey) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key.bytes())),
        }
    }

    /// The stored form of `version`: its JSON with the environment sealed.
    pub fn seal_version(&self, version: &FunctionVersion) -> Result<String, SealError> {
        let mut value = serde_json::to_value(version).map_err(SealError::Encode)?;
        if let Some(variables) = &version.settings.environment {
            let plaintext = serde_json::to_vec(variables).map_err(SealError::Encode)?;
            let sealed = self.seal(&plaintext, &version.name, &version.version)?;
            if let Some(settings) = value.get_mut("settings").and_then(Value::as_object_mut) {
                settings.insert("environment".to_owned(), Value::Null);
                settings.insert(SEALED_MEMBER.to_owned(), Value::String(sealed));
            }
        }
        serde_json::to_string(&value).map_err(SealError::Encode)
    }

    /// A version from its stored form; plaintext rows of earlier releases read as they are.
    pub fn open_version(&self, stored: &str) -> Result<FunctionVersion, SealError> {
        let mut value: Value = serde_json::from_str(stored).map_err(SealError::Decode)?;
        let sealed = value
            .get_mut("settings")
            .and_then(Value::as_object_mut)
            .and_then(|settings| settings.remove(SEALED_MEMBER));
        let mut version: FunctionVersion =
            serde_json::from_value(value).map_err(SealError::Decode)?;
        if let Some(sealed) = sealed {
            let malformed = || SealError::Malformed {
                function: version.name.clone(),
                version: version.version.clone(),
            };
            let sealed = sealed.as_str().ok_or_else(malformed)?;
            let plaintext = self.open(sealed, &version.name, &version.version)?;
            let variables: BTreeMap<String, String> =
                serde_json::from_slice(&plaintext).map_err(|_| malformed())?;
            version.settings.environment = Some(variables);
        }
        Ok(version)
    }

    fn seal(&self, plaintext: &[u8], function: &str, version: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        let aad = associated_data(function, version);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // Encryption fails only for messages beyond ChaCha20's 256 GiB.
            .map_err(|_| SealError::Malformed {
                function: function.to_owned(),
                version: version.to_owned(),
            })?;
        let mut envelope = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&ciphertext);
        Ok(format!(
            "{ENVELOPE_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(envelope)
        ))
    }

    fn open(&self, sealed: &str, function: &str, version: &str) -> Result<Vec<u8>, SealError> {
        let malformed = || SealError::Malformed {
            function: function.to_owned(),
            version: version.to_owned(),
        };
        let encoded = sealed.strip_prefix(ENVELOPE_PREFIX).ok_or_else(malformed)?;
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed())?;
        if envelope.len() < NONCE_LEN {
            return Err(malformed());
        }
        let (nonce, ciphertext) = envelope.split_at(NONCE_LEN);
        let aad = associated_data(function, version);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unopenable {
                function: function.to_owned(),
                version: version.to_owned(),
            })
    }
}

/// What the ciphertext is bound to: its purpose, the function and the version.
fn associated_data(function: &str, version: &str) -> Vec<u8> {
    format!("kappa function environment v1\0{function}\0{version}").into_bytes()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kappa_core::function::{CodeRef, FunctionSettings, LATEST, LoggingSettings};

    /// A `$LATEST` with `environment`, for the store's tests.
    pub(crate) fn version(
        name: &str,
        environment: Option<BTreeMap<String, String>>,
    ) -> FunctionVersion {
        FunctionVersion {
            name: name.to_owned(),
            version: LATEST.to_owned(),
            settings: FunctionSettings {
                runtime: Some("python3.12".into()),
                handler: Some("app.handler".into()),
                role: "arn:aws:iam::000000000000:role/r".into(),
                description: String::new(),
                timeout: 3,
                memory_size: 128,
                layers: Vec::new(),
                ephemeral_storage: 512,
                environment,
                architectures: vec!["x86_64".into()],
                tracing_mode: "PassThrough".into(),
                dead_letter_target: None,
                kms_key_arn: None,
                logging: LoggingSettings {
                    log_format: "Text".into(),
                    log_group: None,
                    application_log_level: None,
                    system_log_level: None,
                },
                snap_start_apply_on: "None".into(),
            },
            code: CodeRef {
                sha256_hex: "aa".into(),
                sha256_base64: "b64".into(),
                size: 10,
                unzipped_size: 20,
            },
            revision_id: "r1".into(),
            last_modified: "2026-01-01T00:00:00.000+0000".into(),
        }
    }

    fn secret_env() -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(
            "API_TOKEN".to_owned(),
            "very-secret-value-123".to_owned(),
        )]))
    }

    fn sealer() -> Sealer {
        Sealer::new(&DataKey::generate().unwrap())
    }

    #[test]
    fn sealed_versions_round_trip_and_hide_the_variables() {
        let sealer = sealer();
        let original = version("f", secret_env());
        let stored = sealer.seal_version(&original).unwrap();
        assert!(!stored.contains("very-secret-value-123"), "{stored}");
        assert!(!stored.contains("API_TOKEN"), "{stored}");
        assert_eq!(sealer.open_version(&stored).unwrap(), original);
        // A fresh nonce each time: the same variables never seal to the same bytes.
        assert_ne!(stored, sealer.seal_version(&original).unwrap());
        let without = version("f", None);
        let stored = sealer.seal_version(&without).unwrap();
        assert!(!stored.contains(SEALED_MEMBER));
        assert_eq!(sealer.open_version(&stored).unwrap(), without);
        let empty = version("f", Some(BTreeMap::new()));
        let stored = sealer.seal_version(&empty).unwrap();
        assert_eq!(sealer.open_version(&stored).unwrap(), empty);
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_garbage() {
        let sealer = sealer();
        let stored = sealer.seal_version(&version("f", secret_env())).unwrap();
        let value: Value = serde_json::from_str(&stored).unwrap();
        let sealed = value["settings"][SEALED_MEMBER].as_str().unwrap();
        let mut envelope = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(ENVELOPE_PREFIX).unwrap())
            .unwrap();
        for position in [0, NONCE_LEN, envelope.len() - 1] {
            envelope[position] ^= 0x01;
            let tampered = format!(
                "{ENVELOPE_PREFIX}{}",
                base64::engine::general_purpose::STANDARD.encode(&envelope)
            );
            envelope[position] ^= 0x01;
            let mut row = value.clone();
            row["settings"][SEALED_MEMBER] = Value::String(tampered);
            let err = sealer.open_version(&row.to_string()).unwrap_err();
            assert!(matches!(err, SealError::Unopenable { .. }), "{err:?}");
            assert!(!err.to_string().contains("secret"));
        }
        let mut row = value.clone();
        row["settings"][SEALED_MEMBER] = Value::String("v1.!!".into());
        assert!(matches!(
            sealer.open_version(&row.to_string()),
            Err(SealError::Malformed { .. })
        ));
    }

    #[test]
    fn sealed_variables_are_bound_to_their_function_and_key() {
        let sealer = sealer();
        let stored = sealer.seal_version(&version("f", secret_env())).unwrap();
        let mut moved: Value = serde_json::from_str(&stored).unwrap();
        moved["name"] = Value::String("g".into());
        assert!(matches!(
            sealer.open_version(&moved.to_string()),
            Err(SealError::Unopenable { .. })
        ));
        let mut republished: Value = serde_json::from_str(&stored).unwrap();
        republished["version"] = Value::String("1".into());
        assert!(sealer.open_version(&republished.to_string()).is_err());
        assert!(matches!(
            self::sealer().open_version(&stored),
            Err(SealError::Unopenable { .. })
        ));
    }

    #[test]
    fn plaintext_rows_of_earlier_releases_still_read() {
        let original = version("f", secret_env());
        let legacy = serde_json::to_string(&original).unwrap();
        assert_eq!(sealer().open_version(&legacy).unwrap(), original);
    }
}
