//! The commands of the layer operations and their modelled constraints (botocore's patterns,
//! lengths and enums, reported together as one `ValidationException`).

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use crate::error::{ServiceError, constraint_violation};
use crate::names::AccountContext;

/// Runtimes of the model's `Runtime` enum, in its order (CompatibleRuntimes may name any).
pub const MODEL_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "java8",
    "java8.al2",
    "java11",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "provided",
    "provided.al2",
    "nodejs18.x",
    "python3.10",
    "java17",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "python3.11",
    "nodejs20.x",
    "provided.al2023",
    "python3.12",
    "java21",
    "python3.13",
    "nodejs22.x",
    "nodejs24.x",
    "python3.14",
    "java25",
    "dotnet10",
];
pub const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];
pub const MAX_COMPATIBLE_RUNTIMES: usize = 15;
pub const MAX_COMPATIBLE_ARCHITECTURES: usize = 2;
pub const MAX_LICENSE_INFO_LEN: usize = 512;
pub const MAX_LAYER_DESCRIPTION_LEN: usize = 256;
pub const MAX_LAYER_NAME_LEN: usize = 140;
/// Items of one ListLayers / ListLayerVersions page at most.
pub const MAX_LAYER_LIST_ITEMS: i64 = 50;

pub const LAYER_NAME_PATTERN: &str =
    r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+";
pub const LAYER_VERSION_ARN_PATTERN: &str =
    r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+";
const STATEMENT_ID_PATTERN: &str = r"([a-zA-Z0-9-_]+)";
const ACTION_PATTERN: &str = r"lambda:GetLayerVersion";
const PRINCIPAL_PATTERN: &str = r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root";
const ORGANIZATION_ID_PATTERN: &str = r"o-[a-z0-9]{10,32}";

fn whole(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("the model's patterns are valid regexes")
}

static LAYER_NAME: LazyLock<Regex> = LazyLock::new(|| whole(LAYER_NAME_PATTERN));
static LAYER_VERSION_ARN: LazyLock<Regex> = LazyLock::new(|| whole(LAYER_VERSION_ARN_PATTERN));
static STATEMENT_ID: LazyLock<Regex> = LazyLock::new(|| whole(STATEMENT_ID_PATTERN));
static ACTION: LazyLock<Regex> = LazyLock::new(|| whole(ACTION_PATTERN));
static PRINCIPAL: LazyLock<Regex> = LazyLock::new(|| whole(PRINCIPAL_PATTERN));
static ORGANIZATION_ID: LazyLock<Regex> = LazyLock::new(|| whole(ORGANIZATION_ID_PATTERN));

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublishLayerVersionInput {
    pub description: Option<String>,
    pub content: Option<LayerContentInput>,
    pub compatible_runtimes: Option<Vec<String>>,
    pub license_info: Option<String>,
    pub compatible_architectures: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerContentInput {
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddLayerVersionPermissionInput {
    pub statement_id: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    pub organization_id: Option<String>,
}

/// ListLayers' and ListLayerVersions' query.
#[derive(Debug, Default)]
pub struct LayerListQuery {
    pub compatible_runtime: Option<String>,
    pub compatible_architecture: Option<String>,
    pub marker: Option<String>,
    pub max_items: Option<i64>,
}

/// Constraint violations found so far, reported together.
#[derive(Debug, Default)]
pub(super) struct Violations(Vec<String>);

impl Violations {
    pub(super) fn push(&mut self, value: impl std::fmt::Display, member: &str, constraint: &str) {
        self.0.push(constraint_violation(value, member, constraint));
    }

    fn max_len(&mut self, value: &str, member: &str, max: usize) {
        if value.chars().count() > max {
            self.push(
                value,
                member,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn pattern(&mut self, value: &str, member: &str, regex: &Regex, pattern: &str) {
        if !regex.is_match(value) {
            self.push(
                value,
                member,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    fn required<'a>(&mut self, value: Option<&'a str>, member: &str) -> Option<&'a str> {
        if value.is_none() {
            self.push("null", member, "Member must not be null");
        }
        value
    }

    /// A list member: at most `max` items, each one of `allowed`.
    fn enum_list(&mut self, values: &[String], member: &str, max: usize, allowed: &[&str]) {
        let listed = format!("[{}]", values.join(", "));
        if values.len() > max {
            self.push(
                &listed,
                member,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
        if values.iter().any(|v| !allowed.contains(&v.as_str())) {
            self.push(
                &listed,
                member,
                &format!(
                    "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    allowed.join(", ")
                ),
            );
        }
    }

    pub(super) fn one_of(&mut self, value: &str, member: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.push(
                value,
                member,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            );
        }
    }

    pub(super) fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Validation(self.0))
        }
    }
}

/// A layer as a request named it: by name or by its ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerId {
    pub name: String,
    /// The ARN names another account or region: nothing of it is stored here.
    pub foreign: bool,
    /// The layer's ARN as the caller wrote it (or built from the name).
    pub arn: String,
}

impl LayerId {
    pub fn version_arn(&self, version: i64) -> String {
        format!("{}:{version}", self.arn)
    }
}

/// Check the `LayerName` member (`layerName`) and resolve it.
pub fn parse_layer_name(raw: &str, account: &AccountContext) -> Result<LayerId, ServiceError> {
    let mut v = Violations::default();
    if raw.is_empty() {
        v.push(
            raw,
            "layerName",
            "Member must have length greater than or equal to 1",
        );
    }
    v.max_len(raw, "layerName", MAX_LAYER_NAME_LEN);
    v.pattern(raw, "layerName", &LAYER_NAME, LAYER_NAME_PATTERN);
    v.finish()?;
    Ok(layer_id(raw, account))
}

/// A layer version ARN (`Layers` of a function, GetLayerVersionByArn): the layer and version.
pub fn parse_layer_version_arn(
    raw: &str,
    member: &str,
    account: &AccountContext,
) -> Result<(LayerId, i64), ServiceError> {
    let mut v = Violations::default();
    v.max_len(raw, member, MAX_LAYER_NAME_LEN);
    v.pattern(raw, member, &LAYER_VERSION_ARN, LAYER_VERSION_ARN_PATTERN);
    v.finish()?;
    split_version_arn(raw, account).ok_or_else(|| {
        ServiceError::constraint(
            raw,
            member,
            &format!("Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}"),
        )
    })
}

/// Split a layer version ARN that matched the pattern; `None` if its number does not fit.
pub fn split_version_arn(raw: &str, account: &AccountContext) -> Option<(LayerId, i64)> {
    let (layer_arn, version) = raw.rsplit_once(':')?;
    let version = version.parse::<i64>().ok()?;
    Some((layer_id(layer_arn, account), version))
}

fn layer_id(raw: &str, account: &AccountContext) -> LayerId {
    if !raw.starts_with("arn:") {
        return LayerId {
            name: raw.to_owned(),
            foreign: false,
            arn: account.layer_arn(raw),
        };
    }
    // arn:<partition>:lambda:<region>:<account>:layer:<name>, as the pattern guarantees.
    let parts: Vec<&str> = raw.splitn(7, ':').collect();
    let (region, account_id, name) = (parts[3], parts[4], parts[6]);
    LayerId {
        name: name.to_owned(),
        foreign: parts[1] != "aws" || region != account.region || account_id != account.account_id,
        arn: raw.to_owned(),
    }
}

/// Check PublishLayerVersion's members.
pub fn check_publish(input: &PublishLayerVersionInput) -> Result<(), ServiceError> {
    let mut v = Violations::default();
    if input.content.is_none() {
        v.push("null", "content", "Member must not be null");
    }
    if let Some(description) = &input.description {
        v.max_len(description, "description", MAX_LAYER_DESCRIPTION_LEN);
    }
    if let Some(license) = &input.license_info {
        v.max_len(license, "licenseInfo", MAX_LICENSE_INFO_LEN);
    }
    if let Some(runtimes) = &input.compatible_runtimes {
        v.enum_list(
            runtimes,
            "compatibleRuntimes",
            MAX_COMPATIBLE_RUNTIMES,
            MODEL_RUNTIMES,
        );
    }
    if let Some(architectures) = &input.compatible_architectures {
        v.enum_list(
            architectures,
            "compatibleArchitectures",
            MAX_COMPATIBLE_ARCHITECTURES,
            ARCHITECTURES,
        );
    }
    v.finish()
}

/// Check AddLayerVersionPermission's members.
pub fn check_permission(input: &AddLayerVersionPermissionInput) -> Result<(), ServiceError> {
    let mut v = Violations::default();
    if let Some(sid) = v.required(input.statement_id.as_deref(), "statementId") {
        if sid.is_empty() {
            v.push(
                sid,
                "statementId",
                "Member must have length greater than or equal to 1",
            );
        }
        v.max_len(sid, "statementId", 100);
        v.pattern(sid, "statementId", &STATEMENT_ID, STATEMENT_ID_PATTERN);
    }
    if let Some(action) = v.required(input.action.as_deref(), "action") {
        v.max_len(action, "action", 22);
        v.pattern(action, "action", &ACTION, ACTION_PATTERN);
    }
    if let Some(principal) = v.required(input.principal.as_deref(), "principal") {
        v.pattern(principal, "principal", &PRINCIPAL, PRINCIPAL_PATTERN);
    }
    if let Some(org) = input.organization_id.as_deref() {
        v.max_len(org, "organizationId", 34);
        v.pattern(
            org,
            "organizationId",
            &ORGANIZATION_ID,
            ORGANIZATION_ID_PATTERN,
        );
    }
    v.finish()
}

/// Check a list query's filters and page size; returns the page size.
pub fn check_list_query(query: &LayerListQuery) -> Result<usize, ServiceError> {
    let mut v = Violations::default();
    if let Some(runtime) = &query.compatible_runtime {
        v.one_of(runtime, "compatibleRuntime", MODEL_RUNTIMES);
    }
    if let Some(architecture) = &query.compatible_architecture {
        v.one_of(architecture, "compatibleArchitecture", ARCHITECTURES);
    }
    match query.max_items {
        Some(n) if n < 1 => v.push(
            n,
            "maxItems",
            "Member must have value greater than or equal to 1",
        ),
        Some(n) if n > MAX_LAYER_LIST_ITEMS => v.push(
            n,
            "maxItems",
            &format!("Member must have value less than or equal to {MAX_LAYER_LIST_ITEMS}"),
        ),
        _ => {}
    }
    v.finish()?;
    Ok(query
        .max_items
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountContext {
        AccountContext::new("us-east-1", "000000000000")
    }

    #[test]
    fn layer_names_and_arns() {
        let own = parse_layer_name("my-layer", &account()).unwrap();
        assert_eq!(
            own.arn,
            "arn:aws:lambda:us-east-1:000000000000:layer:my-layer"
        );
        assert!(!own.foreign);
        let by_arn =
            parse_layer_name("arn:aws:lambda:us-east-1:000000000000:layer:x", &account()).unwrap();
        assert_eq!((by_arn.name.as_str(), by_arn.foreign), ("x", false));
        let other =
            parse_layer_name("arn:aws:lambda:us-east-1:111111111111:layer:x", &account()).unwrap();
        assert!(other.foreign);
        assert!(matches!(
            parse_layer_name("bad name", &account()),
            Err(ServiceError::Validation(_))
        ));
        assert!(parse_layer_name(&"a".repeat(140), &account()).is_ok());
        assert!(parse_layer_name(&"a".repeat(141), &account()).is_err());
        let (id, version) = parse_layer_version_arn(
            "arn:aws:lambda:us-east-1:000000000000:layer:x:7",
            "arn",
            &account(),
        )
        .unwrap();
        assert_eq!((id.name.as_str(), version), ("x", 7));
    }

    #[test]
    fn publish_limits() {
        let input = |runtimes: usize, license: usize| PublishLayerVersionInput {
            content: Some(LayerContentInput::default()),
            compatible_runtimes: Some(vec!["python3.12".to_owned(); runtimes]),
            license_info: Some("l".repeat(license)),
            ..Default::default()
        };
        assert!(check_publish(&input(15, 512)).is_ok());
        let err = check_publish(&input(16, 513)).unwrap_err().to_string();
        assert!(err.starts_with("2 validation errors detected"), "{err}");
    }
}
