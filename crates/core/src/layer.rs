//! Layers: versioned zip archives extracted at `/opt` of the functions that use them, and the
//! shapes the layer operations of the Lambda API return.

use serde::{Deserialize, Serialize};

use crate::function::CodeRef;
use crate::names::AccountContext;

/// One published version of a layer, as Kappa stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersionRecord {
    pub layer_name: String,
    /// Assigned by the store: one more than any version the layer ever had.
    pub version: i64,
    pub description: String,
    pub created_date: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
    pub code: CodeRef,
}

/// The resource-based policy of one layer version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPolicy {
    pub revision_id: String,
    pub statements: Vec<LayerStatement>,
}

/// One statement, in the member order AWS writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerStatement {
    pub sid: String,
    pub effect: String,
    pub principal: serde_json::Value,
    pub action: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Value>,
}

/// The policy document as GetLayerVersionPolicy returns it (a JSON string on the wire).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerPolicyDocument<'a> {
    pub version: &'static str,
    pub id: &'static str,
    pub statement: &'a [LayerStatement],
}

impl LayerPolicy {
    pub fn document(&self) -> LayerPolicyDocument<'_> {
        LayerPolicyDocument {
            version: "2012-10-17",
            id: "default",
            statement: &self.statements,
        }
    }
}

/// A layer version a function uses, with the package it had when the function was configured:
/// the function keeps it even if the layer version is deleted later, as on Lambda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLayer {
    pub arn: String,
    pub code: CodeRef,
}

/// The `Layer` shape of a function's configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerShape {
    pub arn: String,
    pub code_size: u64,
}

/// `LayerVersionContentOutput`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerContent {
    pub location: String,
    pub code_sha256: String,
    pub code_size: u64,
}

/// PublishLayerVersion's and GetLayerVersion's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionShape {
    pub content: LayerContent,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub description: String,
    pub created_date: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
}

/// `LayerVersionsListItem`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionsListItem {
    pub layer_version_arn: String,
    pub version: i64,
    pub description: String,
    pub created_date: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
}

/// `LayersListItem`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub layer_arn: String,
    pub latest_matching_version: LayerVersionsListItem,
}

impl AccountContext {
    /// `arn:aws:lambda:<region>:<account>:layer:<name>`
    pub fn layer_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{name}",
            self.region, self.account_id
        )
    }

    pub fn layer_version_arn(&self, name: &str, version: i64) -> String {
        format!("{}:{version}", self.layer_arn(name))
    }
}

impl LayerVersionRecord {
    pub fn shape(&self, account: &AccountContext, location: String) -> LayerVersionShape {
        LayerVersionShape {
            content: LayerContent {
                location,
                code_sha256: self.code.sha256_base64.clone(),
                code_size: self.code.size,
            },
            layer_arn: account.layer_arn(&self.layer_name),
            layer_version_arn: account.layer_version_arn(&self.layer_name, self.version),
            description: self.description.clone(),
            created_date: self.created_date.clone(),
            version: self.version,
            compatible_runtimes: self.compatible_runtimes.clone(),
            license_info: self.license_info.clone(),
            compatible_architectures: self.compatible_architectures.clone(),
        }
    }

    pub fn list_item(&self, account: &AccountContext) -> LayerVersionsListItem {
        LayerVersionsListItem {
            layer_version_arn: account.layer_version_arn(&self.layer_name, self.version),
            version: self.version,
            description: self.description.clone(),
            created_date: self.created_date.clone(),
            compatible_runtimes: self.compatible_runtimes.clone(),
            license_info: self.license_info.clone(),
            compatible_architectures: self.compatible_architectures.clone(),
        }
    }

    /// Whether the version passes ListLayers' / ListLayerVersions' optional filters.
    pub fn matches(&self, runtime: Option<&str>, architecture: Option<&str>) -> bool {
        runtime.is_none_or(|r| self.compatible_runtimes.iter().any(|c| c == r))
            && architecture.is_none_or(|a| self.compatible_architectures.iter().any(|c| c == a))
    }
}
