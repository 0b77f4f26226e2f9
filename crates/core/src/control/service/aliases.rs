//! CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::versions::{check_description, page_limit};
use super::{FunctionService, new_revision_id, stale_revision};
use crate::error::{ServiceError, constraint_violation};
use crate::function::LATEST;
use crate::names::{FunctionRef, RefUse};
use crate::store::StoreError;
use crate::version_store::AliasRecord;

const ALIAS_NAME_PATTERN: &str = "(?!^[0-9]+$)([a-zA-Z0-9-_]+)";
const VERSION_PATTERN: &str = r"(\$LATEST|[0-9]+)";
const MAX_ALIAS_NAME_LEN: usize = 128;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingConfigInput {
    pub additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAliasInput {
    pub name: Option<String>,
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfigInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateAliasInput {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<RoutingConfigInput>,
    pub revision_id: Option<String>,
}

/// The `AliasConfiguration` shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasConfiguration {
    pub alias_arn: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<RoutingConfigShape>,
    pub revision_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingConfigShape {
    pub additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListPage {
    pub aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

impl FunctionService {
    pub async fn create_alias(
        &self,
        function: &str,
        input: CreateAliasInput,
    ) -> Result<AliasConfiguration, ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        let mut violations = Vec::new();
        let name = input.name.unwrap_or_default();
        check_alias_name(&name, &mut violations);
        let version = input.function_version.unwrap_or_default();
        check_version(&version, &mut violations);
        let weights = input
            .routing_config
            .and_then(|r| r.additional_version_weights)
            .unwrap_or_default();
        check_weights(&weights, &mut violations);
        if let Some(description) = &input.description {
            violations.extend(description_violation(description));
        }
        if !violations.is_empty() {
            return Err(ServiceError::Validation(violations));
        }
        check_routing_rules(&version, &weights)?;
        let alias = AliasRecord {
            name,
            function_version: version,
            description: input.description.unwrap_or_default(),
            additional_version_weights: weights,
            revision_id: new_revision_id(),
        };
        self.require_record(&reference.name).await?;
        self.require_targets(&reference.name, &alias).await?;
        match self.store.create_alias(&reference.name, &alias).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(ServiceError::ResourceConflict(format!(
                    "Alias already exists: {}",
                    self.alias_arn(&reference.name, &alias.name)
                )));
            }
            Err(StoreError::NotFound) => {
                // A version or the function went away meanwhile.
                self.require_record(&reference.name).await?;
                self.require_targets(&reference.name, &alias).await?;
                return Err(self.not_found(&reference.name, Some(&alias.function_version)));
            }
            Err(err) => return Err(ServiceError::internal(err)),
        }
        self.forget(&reference.name);
        Ok(self.alias_shape(&reference.name, &alias))
    }

    pub async fn get_alias(
        &self,
        function: &str,
        name: &str,
    ) -> Result<AliasConfiguration, ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        let alias = self.require_alias(&reference.name, name).await?;
        Ok(self.alias_shape(&reference.name, &alias))
    }

    pub async fn list_aliases(
        &self,
        function: &str,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<AliasListPage, ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        let limit = page_limit(max_items)?;
        if let Some(version) = function_version {
            let mut violations = Vec::new();
            check_version(version, &mut violations);
            if !violations.is_empty() {
                return Err(ServiceError::Validation(violations));
            }
        }
        self.require_record(&reference.name).await?;
        let aliases = self
            .store
            .list_aliases(&reference.name)
            .await
            .map_err(ServiceError::internal)?;
        let after = marker.filter(|m| !m.is_empty());
        let mut page: Vec<_> = aliases
            .iter()
            .filter(|a| function_version.is_none_or(|v| a.function_version == v))
            .filter(|a| after.is_none_or(|m| a.name.as_str() > m))
            .collect();
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|a| a.name.clone())
        } else {
            None
        };
        Ok(AliasListPage {
            aliases: page
                .into_iter()
                .map(|a| self.alias_shape(&reference.name, a))
                .collect(),
            next_marker,
        })
    }

    pub async fn update_alias(
        &self,
        function: &str,
        name: &str,
        input: UpdateAliasInput,
    ) -> Result<AliasConfiguration, ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        let mut violations = Vec::new();
        if let Some(version) = &input.function_version {
            check_version(version, &mut violations);
        }
        let weights = input
            .routing_config
            .map(|r| r.additional_version_weights.unwrap_or_default());
        if let Some(weights) = &weights {
            check_weights(weights, &mut violations);
        }
        if let Some(description) = &input.description {
            violations.extend(description_violation(description));
        }
        if !violations.is_empty() {
            return Err(ServiceError::Validation(violations));
        }
        self.require_record(&reference.name).await?;
        let current = self
            .store
            .get_alias(&reference.name, name)
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(|| {
                ServiceError::ResourceNotFound(format!(
                    "Alias not found: {}",
                    self.alias_arn(&reference.name, name)
                ))
            })?;
        if let Some(revision) = input.revision_id.as_deref()
            && revision != current.revision_id
        {
            return Err(stale_revision());
        }
        let mut next = current.clone();
        if let Some(version) = input.function_version {
            next.function_version = version;
        }
        if let Some(description) = input.description {
            next.description = description;
        }
        if let Some(weights) = weights {
            next.additional_version_weights = weights;
        }
        check_routing_rules(&next.function_version, &next.additional_version_weights)?;
        self.require_targets(&reference.name, &next).await?;
        next.revision_id = new_revision_id();
        let replaced = self
            .store
            .replace_alias(&reference.name, &next, &current.revision_id)
            .await;
        self.forget(&reference.name);
        match replaced {
            Ok(()) => Ok(self.alias_shape(&reference.name, &next)),
            Err(StoreError::RevisionMismatch) => Err(stale_revision()),
            Err(StoreError::NotFound) => {
                self.require_alias(&reference.name, name).await?;
                Err(self.not_found(&reference.name, Some(&next.function_version)))
            }
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    /// Deleting an alias that does not exist succeeds, as on Lambda.
    pub async fn delete_alias(&self, function: &str, name: &str) -> Result<(), ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        self.require_record(&reference.name).await?;
        self.store
            .delete_alias(&reference.name, name)
            .await
            .map_err(ServiceError::internal)?;
        self.forget(&reference.name);
        Ok(())
    }

    pub(super) async fn require_alias(
        &self,
        function: &str,
        name: &str,
    ) -> Result<AliasRecord, ServiceError> {
        self.store
            .get_alias(function, name)
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(|| self.alias_not_found(function, name))
    }

    /// Every version the alias routes to must be published (or `$LATEST`).
    async fn require_targets(
        &self,
        function: &str,
        alias: &AliasRecord,
    ) -> Result<(), ServiceError> {
        let targets =
            std::iter::once(&alias.function_version).chain(alias.additional_version_weights.keys());
        for target in targets {
            if target == LATEST {
                continue;
            }
            let number = target
                .parse::<u64>()
                .map_err(|_| self.not_found(function, Some(target)))?;
            if self
                .store
                .get_version(function, number)
                .await
                .map_err(ServiceError::internal)?
                .is_none()
            {
                return Err(self.not_found(function, Some(target)));
            }
        }
        Ok(())
    }

    fn alias_arn(&self, function: &str, name: &str) -> String {
        self.account.qualified_function_arn(function, name)
    }

    fn alias_not_found(&self, function: &str, name: &str) -> ServiceError {
        ServiceError::ResourceNotFound(format!(
            "Cannot find alias arn: {}",
            self.alias_arn(function, name)
        ))
    }

    fn alias_shape(&self, function: &str, alias: &AliasRecord) -> AliasConfiguration {
        AliasConfiguration {
            alias_arn: self.alias_arn(function, &alias.name),
            name: alias.name.clone(),
            function_version: alias.function_version.clone(),
            description: alias.description.clone(),
            routing_config: (!alias.additional_version_weights.is_empty()).then(|| {
                RoutingConfigShape {
                    additional_version_weights: alias.additional_version_weights.clone(),
                }
            }),
            revision_id: alias.revision_id.clone(),
        }
    }
}

/// Whether `name` can name an alias: the model's pattern, which no version number matches.
pub fn is_alias_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit())
}

fn check_alias_name(name: &str, violations: &mut Vec<String>) {
    let length = name.chars().count();
    if length > MAX_ALIAS_NAME_LEN {
        violations.push(constraint_violation(
            name,
            "name",
            &format!("Member must have length less than or equal to {MAX_ALIAS_NAME_LEN}"),
        ));
    }
    if length == 0 {
        violations.push(constraint_violation(
            name,
            "name",
            "Member must have length greater than or equal to 1",
        ));
    }
    if !is_alias_name(name) {
        violations.push(constraint_violation(
            name,
            "name",
            &format!("Member must satisfy regular expression pattern: {ALIAS_NAME_PATTERN}"),
        ));
    }
}

fn check_version(version: &str, violations: &mut Vec<String>) {
    let length = version.chars().count();
    if length > 1024 {
        violations.push(constraint_violation(
            version,
            "functionVersion",
            "Member must have length less than or equal to 1024",
        ));
    }
    if length == 0 {
        violations.push(constraint_violation(
            version,
            "functionVersion",
            "Member must have length greater than or equal to 1",
        ));
    }
    let numeric = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    if version != LATEST && !numeric {
        violations.push(constraint_violation(
            version,
            "functionVersion",
            &format!("Member must satisfy regular expression pattern: {VERSION_PATTERN}"),
        ));
    }
}

fn check_weights(weights: &BTreeMap<String, f64>, violations: &mut Vec<String>) {
    for (version, weight) in weights {
        if !(0.0..=1.0).contains(weight) {
            violations.push(constraint_violation(
                format!("{{{version}={weight}}}"),
                "routingConfig.additionalVersionWeights",
                "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]",
            ));
        }
        let numeric = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
        if !numeric || version.len() > 1024 {
            violations.push(constraint_violation(
                format!("{{{version}={weight}}}"),
                "routingConfig.additionalVersionWeights",
                "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+, Member must not be null]",
            ));
        }
    }
}

fn description_violation(description: &str) -> Option<String> {
    check_description(description)
        .err()
        .and_then(|err| match err {
            ServiceError::Validation(mut lines) => lines.pop(),
            _ => None,
        })
}

/// Lambda's rules for weighted aliases, after the model's constraints.
fn check_routing_rules(version: &str, weights: &BTreeMap<String, f64>) -> Result<(), ServiceError> {
    if weights.len() > 1 {
        return Err(ServiceError::InvalidParameterValue(
            "Number of items in AdditionalVersionWeights cannot be greater than 1".to_owned(),
        ));
    }
    if weights.contains_key(version) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Invalid function version {version}. Function version {version} is already included in routing configuration."
        )));
    }
    if !weights.is_empty() && version == LATEST {
        return Err(ServiceError::InvalidParameterValue(
            "$LATEST is not supported for an alias pointing to more than 1 version".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_cannot_be_version_numbers() {
        assert!(is_alias_name("live"));
        assert!(is_alias_name("v1"));
        assert!(is_alias_name("1-a"));
        assert!(!is_alias_name("12"));
        assert!(!is_alias_name("$LATEST"));
        assert!(!is_alias_name(""));
    }

    #[test]
    fn weighted_routing_rules() {
        let one = BTreeMap::from([("2".to_owned(), 0.3)]);
        assert!(check_routing_rules("1", &one).is_ok());
        assert!(check_routing_rules("2", &one).is_err());
        assert!(check_routing_rules(LATEST, &one).is_err());
        let two = BTreeMap::from([("2".to_owned(), 0.3), ("3".to_owned(), 0.1)]);
        assert!(check_routing_rules("1", &two).is_err());
        let mut violations = Vec::new();
        check_weights(&BTreeMap::from([("2".to_owned(), 1.5)]), &mut violations);
        assert_eq!(violations.len(), 1);
    }
}
