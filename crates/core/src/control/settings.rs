//! Validating function settings and turning a request into stored settings.
//!
//! Constraint violations of modelled members (lengths, ranges, patterns, enums) are collected and
//! reported together as one `ValidationException`, as AWS does; rule violations that Lambda itself
//! checks (reserved environment keys, the 4 KB environment limit, unsupported runtimes) come after
//! as `InvalidParameterValueException`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::requests::{
    CreateFunctionInput, DeadLetterConfigInput, EnvironmentInput, LoggingConfigInput,
    UpdateFunctionConfigurationInput, VpcConfigInput,
};
use crate::error::{ServiceError, constraint_violation};
use crate::function::{FunctionSettings, LoggingSettings};
use crate::runtime;

pub const MIN_MEMORY_MB: i64 = 128;
pub const MAX_MEMORY_MB: i64 = 10_240;
pub const MIN_TIMEOUT_S: i64 = 1;
pub const MAX_TIMEOUT_S: i64 = 900;
pub const MIN_EPHEMERAL_MB: i64 = 512;
pub const MAX_EPHEMERAL_MB: i64 = 10_240;
pub const MAX_HANDLER_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Largest JSON encoding of the environment variables map.
pub const MAX_ENVIRONMENT_BYTES: usize = 4096;
pub const MAX_LAYERS: usize = 5;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

const DEFAULT_TIMEOUT_S: u32 = 3;
const DEFAULT_MEMORY_MB: u32 = 128;
const DEFAULT_EPHEMERAL_MB: u32 = 512;

/// Names Lambda sets itself; a function may not set them.
pub const RESERVED_ENVIRONMENT_KEYS: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

const ROLE_PATTERN: &str = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+";
const HANDLER_PATTERN: &str = r"[^\s]+";
const ENV_NAME_PATTERN: &str = r"[a-zA-Z]([a-zA-Z0-9_])+";
const ARN_OR_EMPTY_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()";
const LOG_GROUP_PATTERN: &str = r"[\.\-_/#A-Za-z0-9]+";
const LAYER_ARN_PATTERN: &str =
    r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+";

fn whole(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("the model's patterns are valid regexes")
}

static ROLE: LazyLock<Regex> = LazyLock::new(|| whole(ROLE_PATTERN));
static HANDLER: LazyLock<Regex> = LazyLock::new(|| whole(HANDLER_PATTERN));
static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| whole(ENV_NAME_PATTERN));
static ARN_OR_EMPTY: LazyLock<Regex> = LazyLock::new(|| whole(ARN_OR_EMPTY_PATTERN));
static LOG_GROUP: LazyLock<Regex> = LazyLock::new(|| whole(LOG_GROUP_PATTERN));
static LAYER_ARN: LazyLock<Regex> = LazyLock::new(|| whole(LAYER_ARN_PATTERN));

/// Constraint violations found so far, reported together.
#[derive(Debug, Default)]
struct Violations(Vec<String>);

impl Violations {
    fn push(&mut self, value: impl std::fmt::Display, member: &str, constraint: &str) {
        self.0.push(constraint_violation(value, member, constraint));
    }

    fn range(&mut self, value: i64, member: &str, min: i64, max: i64) {
        if value < min {
            self.push(
                value,
                member,
                &format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.push(
                value,
                member,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
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

    fn one_of(&mut self, value: &str, member: &str, allowed: &[&str]) {
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

    fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Validation(self.0))
        }
    }
}

/// The settings of a new function, from CreateFunction.
pub fn settings_for_create(input: &CreateFunctionInput) -> Result<FunctionSettings, ServiceError> {
    let mut v = Violations::default();
    match input.role.as_deref() {
        None => v.push("null", "role", "Member must not be null"),
        Some(role) => v.pattern(role, "role", &ROLE, ROLE_PATTERN),
    }
    check_common(
        &mut v,
        CommonMembers {
            handler: input.handler.as_deref(),
            description: input.description.as_deref(),
            timeout: input.timeout,
            memory_size: input.memory_size,
            ephemeral_storage: input.ephemeral_storage.as_ref().and_then(|e| e.size),
            architectures: input.architectures.as_deref(),
            tracing_mode: input
                .tracing_config
                .as_ref()
                .and_then(|t| t.mode.as_deref()),
            kms_key_arn: input.kms_key_arn.as_deref(),
            dead_letter: input.dead_letter_config.as_ref(),
            logging: input.logging_config.as_ref(),
            snap_start: input
                .snap_start
                .as_ref()
                .and_then(|s| s.apply_on.as_deref()),
            layers: input.layers.as_deref(),
            environment: input.environment.as_ref(),
        },
    );
    if let Some(package_type) = input.package_type.as_deref() {
        v.one_of(package_type, "packageType", &["Zip", "Image"]);
    }
    v.finish()?;

    if input.package_type.as_deref() == Some("Image") || input.image_config.is_some() {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa runs functions packaged as Zip; container images are not supported.".to_owned(),
        ));
    }
    let (Some(runtime), handler) = (input.runtime.as_deref(), input.handler.as_deref()) else {
        return Err(mandatory_runtime_and_handler());
    };
    if handler.is_none() && !runtime::is_custom(runtime) {
        return Err(mandatory_runtime_and_handler());
    }
    check_rules(RuleMembers {
        runtime: Some(runtime),
        environment: input.environment.as_ref(),
        layers: input.layers.as_deref(),
        vpc: input.vpc_config.as_ref(),
        file_systems: input.file_system_configs.as_deref(),
        logging: input.logging_config.as_ref(),
    })?;
    if input.code_signing_config_arn.is_some() {
        return Err(ServiceError::InvalidParameterValue(
            "Code signing configurations are not supported by Kappa yet.".to_owned(),
        ));
    }
    if let Some(tags) = &input.tags {
        check_tags(tags)?;
    }

    let logging = input.logging_config.as_ref();
    Ok(FunctionSettings {
        runtime: Some(runtime.to_owned()),
        handler: handler.map(str::to_owned),
        role: input.role.clone().unwrap_or_default(),
        description: input.description.clone().unwrap_or_default(),
        timeout: int_or(input.timeout, DEFAULT_TIMEOUT_S),
        memory_size: int_or(input.memory_size, DEFAULT_MEMORY_MB),
        ephemeral_storage: int_or(
            input.ephemeral_storage.as_ref().and_then(|e| e.size),
            DEFAULT_EPHEMERAL_MB,
        ),
        environment: input
            .environment
            .as_ref()
            .map(|e| e.variables.clone().unwrap_or_default()),
        architectures: input
            .architectures
            .clone()
            .unwrap_or_else(|| vec!["x86_64".to_owned()]),
        tracing_mode: input
            .tracing_config
            .as_ref()
            .and_then(|t| t.mode.clone())
            .unwrap_or_else(|| "PassThrough".to_owned()),
        dead_letter_target: input
            .dead_letter_config
            .as_ref()
            .and_then(|d| d.target_arn.clone())
            .filter(|arn| !arn.is_empty()),
        kms_key_arn: input.kms_key_arn.clone().filter(|arn| !arn.is_empty()),
        logging: LoggingSettings {
            log_format: logging
                .and_then(|l| l.log_format.clone())
                .unwrap_or_else(|| "Text".to_owned()),
            log_group: logging.and_then(|l| l.log_group.clone()),
            application_log_level: logging.and_then(|l| l.application_log_level.clone()),
            system_log_level: logging.and_then(|l| l.system_log_level.clone()),
        },
        snap_start_apply_on: input
            .snap_start
            .as_ref()
            .and_then(|s| s.apply_on.clone())
            .unwrap_or_else(|| "None".to_owned()),
        // Resolved against the stored layer versions by the service.
        layers: Vec::new(),
    })
}

/// Apply UpdateFunctionConfiguration to current settings; members not given stay as they are.
pub fn apply_update(
    current: &FunctionSettings,
    input: &UpdateFunctionConfigurationInput,
) -> Result<FunctionSettings, ServiceError> {
    let mut v = Violations::default();
    if let Some(role) = input.role.as_deref() {
        v.pattern(role, "role", &ROLE, ROLE_PATTERN);
    }
    check_common(
        &mut v,
        CommonMembers {
            handler: input.handler.as_deref(),
            description: input.description.as_deref(),
            timeout: input.timeout,
            memory_size: input.memory_size,
            ephemeral_storage: input.ephemeral_storage.as_ref().and_then(|e| e.size),
            architectures: None,
            tracing_mode: input
                .tracing_config
                .as_ref()
                .and_then(|t| t.mode.as_deref()),
            kms_key_arn: input.kms_key_arn.as_deref(),
            dead_letter: input.dead_letter_config.as_ref(),
            logging: input.logging_config.as_ref(),
            snap_start: input
                .snap_start
                .as_ref()
                .and_then(|s| s.apply_on.as_deref()),
            layers: input.layers.as_deref(),
            environment: input.environment.as_ref(),
        },
    );
    v.finish()?;
    if input.image_config.is_some() {
        return Err(ServiceError::InvalidParameterValue(
            "ImageConfig applies to container images, which Kappa does not run.".to_owned(),
        ));
    }
    check_rules(RuleMembers {
        runtime: input.runtime.as_deref(),
        environment: input.environment.as_ref(),
        layers: input.layers.as_deref(),
        vpc: input.vpc_config.as_ref(),
        file_systems: input.file_system_configs.as_deref(),
        logging: input.logging_config.as_ref(),
    })?;

    let mut next = current.clone();
    if let Some(runtime) = &input.runtime {
        next.runtime = Some(runtime.clone());
    }
    if let Some(handler) = &input.handler {
        next.handler = Some(handler.clone());
    }
    if let Some(role) = &input.role {
        next.role = role.clone();
    }
    if let Some(description) = &input.description {
        next.description = description.clone();
    }
    if input.timeout.is_some() {
        next.timeout = int_or(input.timeout, next.timeout);
    }
    if input.memory_size.is_some() {
        next.memory_size = int_or(input.memory_size, next.memory_size);
    }
    if let Some(size) = input.ephemeral_storage.as_ref().and_then(|e| e.size) {
        next.ephemeral_storage = int_or(Some(size), next.ephemeral_storage);
    }
    if let Some(environment) = &input.environment {
        next.environment = Some(environment.variables.clone().unwrap_or_default());
    }
    if let Some(mode) = input.tracing_config.as_ref().and_then(|t| t.mode.clone()) {
        next.tracing_mode = mode;
    }
    if let Some(dead_letter) = &input.dead_letter_config {
        next.dead_letter_target = dead_letter.target_arn.clone().filter(|arn| !arn.is_empty());
    }
    if let Some(kms) = &input.kms_key_arn {
        next.kms_key_arn = Some(kms.clone()).filter(|arn| !arn.is_empty());
    }
    if let Some(apply_on) = input.snap_start.as_ref().and_then(|s| s.apply_on.clone()) {
        next.snap_start_apply_on = apply_on;
    }
    if let Some(logging) = &input.logging_config {
        if let Some(format) = &logging.log_format {
            next.logging.log_format = format.clone();
        }
        if logging.log_group.is_some() {
            next.logging.log_group = logging.log_group.clone();
        }
        if logging.application_log_level.is_some() {
            next.logging.application_log_level = logging.application_log_level.clone();
        }
        if logging.system_log_level.is_some() {
            next.logging.system_log_level = logging.system_log_level.clone();
        }
    }
    if next.handler.is_none()
        && next
            .runtime
            .as_deref()
            .is_some_and(|r| !runtime::is_custom(r))
    {
        return Err(mandatory_runtime_and_handler());
    }
    Ok(next)
}

/// Check the `Architectures` member of UpdateFunctionCode.
pub fn check_architectures(architectures: &[String]) -> Result<(), ServiceError> {
    let mut v = Violations::default();
    architectures_constraints(&mut v, architectures);
    v.finish()
}

/// Check tags given to CreateFunction or TagResource.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if tags.len() > MAX_TAGS {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Number of tags exceeds resource tag limit of {MAX_TAGS}."
        )));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Tag keys must be between 1 and {MAX_TAG_KEY_LEN} characters long: {key}"
            )));
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Tag values must be at most {MAX_TAG_VALUE_LEN} characters long (key {key})"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Tag keys starting with 'aws:' are reserved for AWS use: {key}"
            )));
        }
    }
    Ok(())
}

fn mandatory_runtime_and_handler() -> ServiceError {
    ServiceError::InvalidParameterValue(
        "Runtime and Handler are mandatory parameters for functions created with deployment packages."
            .to_owned(),
    )
}

/// An integer member already range-checked, or its default.
fn int_or(value: Option<i64>, default: u32) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default)
}

struct CommonMembers<'a> {
    handler: Option<&'a str>,
    description: Option<&'a str>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    ephemeral_storage: Option<i64>,
    architectures: Option<&'a [String]>,
    tracing_mode: Option<&'a str>,
    kms_key_arn: Option<&'a str>,
    dead_letter: Option<&'a DeadLetterConfigInput>,
    logging: Option<&'a LoggingConfigInput>,
    snap_start: Option<&'a str>,
    layers: Option<&'a [String]>,
    environment: Option<&'a EnvironmentInput>,
}

/// Modelled constraints shared by CreateFunction and UpdateFunctionConfiguration.
fn check_common(v: &mut Violations, m: CommonMembers<'_>) {
    if let Some(handler) = m.handler {
        v.max_len(handler, "handler", MAX_HANDLER_LEN);
        v.pattern(handler, "handler", &HANDLER, HANDLER_PATTERN);
    }
    if let Some(description) = m.description {
        v.max_len(description, "description", MAX_DESCRIPTION_LEN);
    }
    if let Some(timeout) = m.timeout {
        v.range(timeout, "timeout", MIN_TIMEOUT_S, MAX_TIMEOUT_S);
    }
    if let Some(memory) = m.memory_size {
        v.range(memory, "memorySize", MIN_MEMORY_MB, MAX_MEMORY_MB);
    }
    if let Some(size) = m.ephemeral_storage {
        v.range(
            size,
            "ephemeralStorage.size",
            MIN_EPHEMERAL_MB,
            MAX_EPHEMERAL_MB,
        );
    }
    if let Some(architectures) = m.architectures {
        architectures_constraints(v, architectures);
    }
    if let Some(mode) = m.tracing_mode {
        v.one_of(mode, "tracingConfig.mode", &["Active", "PassThrough"]);
    }
    if let Some(kms) = m.kms_key_arn {
        v.pattern(kms, "kMSKeyArn", &ARN_OR_EMPTY, ARN_OR_EMPTY_PATTERN);
    }
    if let Some(target) = m.dead_letter.and_then(|d| d.target_arn.as_deref()) {
        v.pattern(
            target,
            "deadLetterConfig.targetArn",
            &ARN_OR_EMPTY,
            ARN_OR_EMPTY_PATTERN,
        );
    }
    if let Some(apply_on) = m.snap_start {
        v.one_of(
            apply_on,
            "snapStart.applyOn",
            &["PublishedVersions", "None"],
        );
    }
    if let Some(logging) = m.logging {
        if let Some(format) = logging.log_format.as_deref() {
            v.one_of(format, "loggingConfig.logFormat", &["JSON", "Text"]);
        }
        if let Some(level) = logging.application_log_level.as_deref() {
            v.one_of(
                level,
                "loggingConfig.applicationLogLevel",
                &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
            );
        }
        if let Some(level) = logging.system_log_level.as_deref() {
            v.one_of(
                level,
                "loggingConfig.systemLogLevel",
                &["DEBUG", "INFO", "WARN"],
            );
        }
        if let Some(group) = logging.log_group.as_deref() {
            v.max_len(group, "loggingConfig.logGroup", 512);
            v.pattern(
                group,
                "loggingConfig.logGroup",
                &LOG_GROUP,
                LOG_GROUP_PATTERN,
            );
        }
    }
    if let Some(layers) = m.layers {
        for layer in layers {
            v.max_len(layer, "layers", 140);
            v.pattern(layer, "layers", &LAYER_ARN, LAYER_ARN_PATTERN);
        }
    }
    if let Some(variables) = m.environment.and_then(|e| e.variables.as_ref()) {
        let reserved = variables
            .keys()
            .any(|k| RESERVED_ENVIRONMENT_KEYS.contains(&k.as_str()));
        if !reserved && variables.keys().any(|k| !ENV_NAME.is_match(k)) {
            v.0.push(format!(
                "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: {ENV_NAME_PATTERN}]"
            ));
        }
    }
}

fn architectures_constraints(v: &mut Violations, architectures: &[String]) {
    let listed = format!("[{}]", architectures.join(", "));
    if architectures.len() != 1 {
        let bound = if architectures.is_empty() {
            "greater than or equal to 1"
        } else {
            "less than or equal to 1"
        };
        v.push(
            &listed,
            "architectures",
            &format!("Member must have length {bound}"),
        );
    }
    if architectures.iter().any(|a| a != "x86_64" && a != "arm64") {
        v.push(
            &listed,
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        );
    }
}

struct RuleMembers<'a> {
    runtime: Option<&'a str>,
    environment: Option<&'a EnvironmentInput>,
    layers: Option<&'a [String]>,
    vpc: Option<&'a VpcConfigInput>,
    file_systems: Option<&'a [serde_json::Value]>,
    logging: Option<&'a LoggingConfigInput>,
}

/// Rules Lambda enforces beyond the model, each an `InvalidParameterValueException`.
fn check_rules(m: RuleMembers<'_>) -> Result<(), ServiceError> {
    if let Some(runtime) = m.runtime
        && !runtime::is_supported(runtime)
    {
        return Err(ServiceError::InvalidParameterValue(format!(
            "The runtime parameter of {runtime} is not supported by Kappa. Supported runtimes: {}.",
            runtime::SUPPORTED_RUNTIMES.join(", ")
        )));
    }
    if let Some(variables) = m.environment.and_then(|e| e.variables.as_ref()) {
        check_environment(variables)?;
    }
    if let Some(layers) = m.layers
        && layers.len() > MAX_LAYERS
    {
        return Err(ServiceError::InvalidParameterValue(
            "Cannot reference more than 5 layers.".to_owned(),
        ));
    }
    if m.vpc.is_some_and(|vpc| {
        vpc.subnet_ids.as_ref().is_some_and(|s| !s.is_empty())
            || vpc
                .security_group_ids
                .as_ref()
                .is_some_and(|s| !s.is_empty())
    }) {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa does not attach functions to VPCs; leave VpcConfig empty.".to_owned(),
        ));
    }
    if m.file_systems.is_some_and(|f| !f.is_empty()) {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa does not mount file systems into functions; leave FileSystemConfigs empty."
                .to_owned(),
        ));
    }
    if let Some(logging) = m.logging
        && logging.log_format.as_deref() != Some("JSON")
        && (logging.application_log_level.is_some() || logging.system_log_level.is_some())
    {
        return Err(ServiceError::InvalidParameterValue(
            "Application and system log levels can only be set when LogFormat is JSON.".to_owned(),
        ));
    }
    Ok(())
}

fn check_environment(variables: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    let reserved: Vec<&str> = variables
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENVIRONMENT_KEYS.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    let measured = serde_json::to_string(variables).map_err(ServiceError::internal)?;
    if measured.len() > MAX_ENVIRONMENT_BYTES {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: serde_json::Value) -> Result<FunctionSettings, ServiceError> {
        let input: CreateFunctionInput = serde_json::from_value(json).unwrap();
        settings_for_create(&input)
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "FunctionName": "f",
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::000000000000:role/r",
            "Handler": "app.handler",
        })
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut json = base();
        json[key] = value;
        json
    }

    #[test]
    fn defaults_match_lambda() {
        let s = create(base()).unwrap();
        assert_eq!(
            (s.timeout, s.memory_size, s.ephemeral_storage),
            (3, 128, 512)
        );
        assert_eq!(s.architectures, vec!["x86_64"]);
        assert_eq!(s.tracing_mode, "PassThrough");
        assert_eq!(s.logging.log_format, "Text");
    }

    #[test]
    fn numeric_limits_are_inclusive() {
        for (key, lo, hi) in [("Timeout", 1, 900), ("MemorySize", 128, 10240)] {
            assert!(create(with(key, lo.into())).is_ok(), "{key}={lo}");
            assert!(create(with(key, hi.into())).is_ok(), "{key}={hi}");
            assert!(matches!(
                create(with(key, (lo - 1).into())),
                Err(ServiceError::Validation(_))
            ));
            assert!(matches!(
                create(with(key, (hi + 1).into())),
                Err(ServiceError::Validation(_))
            ));
        }
        for size in [512, 10240] {
            assert!(create(with("EphemeralStorage", serde_json::json!({"Size": size}))).is_ok());
        }
        for size in [511, 10241] {
            let err =
                create(with("EphemeralStorage", serde_json::json!({"Size": size}))).unwrap_err();
            assert!(err.to_string().contains("'ephemeralStorage.size'"), "{err}");
        }
    }

    #[test]
    fn several_violations_are_reported_together() {
        let mut json = with("Timeout", 0.into());
        json["MemorySize"] = 99_999.into();
        let err = create(json).unwrap_err();
        assert!(
            err.to_string().starts_with("2 validation errors detected"),
            "{err}"
        );
    }

    #[test]
    fn handler_limits() {
        assert!(create(with("Handler", "a".repeat(128).into())).is_ok());
        assert!(matches!(
            create(with("Handler", "a".repeat(129).into())),
            Err(ServiceError::Validation(_))
        ));
        assert!(matches!(
            create(with("Handler", "app handler".into())),
            Err(ServiceError::Validation(_))
        ));
    }

    #[test]
    fn runtimes_outside_the_supported_set_are_invalid_parameters() {
        for runtime in ["java21", "python2.7", "cobol"] {
            assert!(matches!(
                create(with("Runtime", runtime.into())),
                Err(ServiceError::InvalidParameterValue(_))
            ));
        }
    }

    #[test]
    fn environment_limit_is_4096_bytes_of_json() {
        // {"K":"vvv…"} is 8 bytes of framing plus the value.
        let fits = serde_json::json!({"Variables": {"K1": "v".repeat(4096 - 9)}});
        assert!(create(with("Environment", fits)).is_ok());
        let over = serde_json::json!({"Variables": {"K1": "v".repeat(4096 - 8)}});
        let err = create(with("Environment", over)).unwrap_err();
        assert!(err.to_string().contains("exceeded the 4KB limit"), "{err}");
    }

    #[test]
    fn reserved_environment_keys_are_refused() {
        for key in [
            "AWS_REGION",
            "_HANDLER",
            "AWS_LAMBDA_RUNTIME_API",
            "AWS_SESSION_TOKEN",
        ] {
            let env = serde_json::json!({"Variables": {key: "x"}});
            let err = create(with("Environment", env)).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn custom_runtimes_need_no_handler() {
        let mut json = with("Runtime", "provided.al2023".into());
        json.as_object_mut().unwrap().remove("Handler");
        assert!(create(json).is_ok());
        let mut json = base();
        json.as_object_mut().unwrap().remove("Handler");
        assert!(matches!(
            create(json),
            Err(ServiceError::InvalidParameterValue(_))
        ));
    }

    #[test]
    fn update_keeps_what_is_not_given() {
        let current = create(base()).unwrap();
        let input: UpdateFunctionConfigurationInput =
            serde_json::from_value(serde_json::json!({"MemorySize": 256})).unwrap();
        let next = apply_update(&current, &input).unwrap();
        assert_eq!(next.memory_size, 256);
        assert_eq!(next.handler, current.handler);
        assert_eq!(next.timeout, current.timeout);
    }
}
