//! A function as Kappa stores it, and the `FunctionConfiguration` shape the API returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::layer::{FunctionLayer, LayerShape};
use crate::names::AccountContext;

/// The qualifier of the unpublished, mutable version of every function.
pub const LATEST: &str = "$LATEST";

/// Where a function's code package is kept: its SHA-256 (hex, the blob key) and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    pub sha256_hex: String,
    /// Base64 of the SHA-256 digest, as Lambda reports `CodeSha256`.
    pub sha256_base64: String,
    pub size: u64,
    pub unzipped_size: u64,
}

/// Every setting of one function version that the API reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSettings {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: String,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub ephemeral_storage: u32,
    pub environment: Option<BTreeMap<String, String>>,
    pub architectures: Vec<String>,
    pub tracing_mode: String,
    pub dead_letter_target: Option<String>,
    pub kms_key_arn: Option<String>,
    pub logging: LoggingSettings,
    pub snap_start_apply_on: String,
    /// The layers at `/opt`, in order; absent in records written before layers existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<FunctionLayer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingSettings {
    pub log_format: String,
    pub log_group: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
}

/// One function version: its name, settings, code and revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    pub name: String,
    pub version: String,
    pub settings: FunctionSettings,
    pub code: CodeRef,
    pub revision_id: String,
    pub last_modified: String,
}

/// A function: its `$LATEST` version and its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRecord {
    pub latest: FunctionVersion,
    pub tags: BTreeMap<String, String>,
}

impl FunctionRecord {
    pub fn name(&self) -> &str {
        &self.latest.name
    }

    pub fn revision_id(&self) -> &str {
        &self.latest.revision_id
    }
}

/// The `FunctionConfiguration` shape of the Lambda API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerShape>>,
    #[serde(rename = "KMSKeyArn", skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub tracing_config: TracingConfig,
    pub revision_id: String,
    pub state: &'static str,
    pub last_update_status: &'static str,
    pub package_type: &'static str,
    pub architectures: Vec<String>,
    pub ephemeral_storage: EphemeralStorage,
    pub snap_start: SnapStartResponse,
    pub logging_config: LoggingConfig,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingConfig {
    pub mode: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapStartResponse {
    pub apply_on: String,
    pub optimization_status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    pub log_format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_log_level: Option<String>,
    pub log_group: String,
}

impl FunctionVersion {
    /// The log group a function writes to unless its `LoggingConfig` names another.
    pub fn log_group(&self) -> String {
        self.settings
            .logging
            .log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{}", self.name))
    }

    /// This version as the API's `FunctionConfiguration`.
    pub fn configuration(&self, account: &AccountContext) -> FunctionConfiguration {
        let s = &self.settings;
        let function_arn = if self.version == LATEST {
            account.function_arn(&self.name)
        } else {
            account.qualified_function_arn(&self.name, &self.version)
        };
        FunctionConfiguration {
            function_name: self.name.clone(),
            function_arn,
            runtime: s.runtime.clone(),
            role: s.role.clone(),
            handler: s.handler.clone(),
            code_size: self.code.size,
            description: s.description.clone(),
            timeout: s.timeout,
            memory_size: s.memory_size,
            last_modified: self.last_modified.clone(),
            code_sha256: self.code.sha256_base64.clone(),
            version: self.version.clone(),
            environment: s.environment.as_ref().map(|variables| EnvironmentResponse {
                variables: variables.clone(),
            }),
            dead_letter_config: s.dead_letter_target.as_ref().map(|arn| DeadLetterConfig {
                target_arn: Some(arn.clone()),
            }),
            layers: (!s.layers.is_empty()).then(|| {
                s.layers
                    .iter()
                    .map(|layer| LayerShape {
                        arn: layer.arn.clone(),
                        code_size: layer.code.size,
                    })
                    .collect()
            }),
            kms_key_arn: s.kms_key_arn.clone(),
            tracing_config: TracingConfig {
                mode: s.tracing_mode.clone(),
            },
            revision_id: self.revision_id.clone(),
            state: "Active",
            last_update_status: "Successful",
            package_type: "Zip",
            architectures: s.architectures.clone(),
            ephemeral_storage: EphemeralStorage {
                size: s.ephemeral_storage,
            },
            snap_start: SnapStartResponse {
                apply_on: s.snap_start_apply_on.clone(),
                optimization_status: "Off",
            },
            logging_config: LoggingConfig {
                log_format: s.logging.log_format.clone(),
                application_log_level: s.logging.application_log_level.clone(),
                system_log_level: s.logging.system_log_level.clone(),
                log_group: self.log_group(),
            },
        }
    }
}
