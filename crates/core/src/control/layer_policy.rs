//! AddLayerVersionPermission, GetLayerVersionPolicy, RemoveLayerVersionPermission: the
//! resource-based policy of a layer version. Stored and returned as AWS does; not enforced (Kappa
//! serves one account).

use serde_json::json;

use super::layer_requests::{self, AddLayerVersionPermissionInput, LayerId, check_permission};
use super::layers::layer_version_not_found;
use super::service::{FunctionService, new_revision_id};
use crate::error::ServiceError;
use crate::layer::{LayerPolicy, LayerStatement};
use crate::store::StoreError;

/// AddLayerVersionPermission's answer: the statement (as a JSON string) and the policy revision.
#[derive(Debug, Clone)]
pub struct AddedLayerPermission {
    pub statement: String,
    pub revision_id: String,
}

/// GetLayerVersionPolicy's answer.
#[derive(Debug, Clone)]
pub struct LayerPolicyText {
    pub policy: String,
    pub revision_id: String,
}

impl FunctionService {
    pub async fn add_layer_version_permission(
        &self,
        layer_name: &str,
        version: i64,
        revision_id: Option<&str>,
        input: AddLayerVersionPermissionInput,
    ) -> Result<AddedLayerPermission, ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        check_permission(&input)?;
        let current = self.layer_policy(&layer, version).await?;
        let sid = input.statement_id.unwrap_or_default();
        if current
            .as_ref()
            .is_some_and(|p| p.statements.iter().any(|s| s.sid == sid))
        {
            return Err(ServiceError::ResourceConflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }
        check_policy_revision(revision_id, current.as_ref())?;
        let principal = input.principal.unwrap_or_default();
        let statement = LayerStatement {
            sid,
            effect: "Allow".to_owned(),
            principal: if principal == "*" {
                json!("*")
            } else if principal.starts_with("arn:") {
                json!({ "AWS": principal })
            } else {
                json!({ "AWS": format!("arn:aws:iam::{principal}:root") })
            },
            action: input.action.unwrap_or_default(),
            resource: self.account.layer_version_arn(&layer.name, version),
            condition: input
                .organization_id
                .map(|org| json!({ "StringEquals": { "aws:PrincipalOrgID": org } })),
        };
        let mut next = current.clone().unwrap_or(LayerPolicy {
            revision_id: String::new(),
            statements: Vec::new(),
        });
        next.statements.push(statement.clone());
        next.revision_id = new_revision_id();
        self.save_policy(&layer, version, current.as_ref(), Some(&next))
            .await?;
        Ok(AddedLayerPermission {
            statement: serde_json::to_string(&statement).map_err(ServiceError::internal)?,
            revision_id: next.revision_id,
        })
    }

    pub async fn get_layer_version_policy(
        &self,
        layer_name: &str,
        version: i64,
    ) -> Result<LayerPolicyText, ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        let Some(policy) = self.layer_policy(&layer, version).await? else {
            return Err(no_policy());
        };
        Ok(LayerPolicyText {
            policy: serde_json::to_string(&policy.document()).map_err(ServiceError::internal)?,
            revision_id: policy.revision_id,
        })
    }

    pub async fn remove_layer_version_permission(
        &self,
        layer_name: &str,
        version: i64,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        let current = self.layer_policy(&layer, version).await?;
        let Some(policy) = current
            .as_ref()
            .filter(|p| p.statements.iter().any(|s| s.sid == statement_id))
        else {
            return Err(ServiceError::ResourceNotFound(format!(
                "Statement {statement_id} is not found in resource policy."
            )));
        };
        check_policy_revision(revision_id, current.as_ref())?;
        let mut next = policy.clone();
        next.statements.retain(|s| s.sid != statement_id);
        next.revision_id = new_revision_id();
        let next = (!next.statements.is_empty()).then_some(next);
        self.save_policy(&layer, version, current.as_ref(), next.as_ref())
            .await
    }

    /// The version's policy; 404 if the version does not exist.
    async fn layer_policy(
        &self,
        layer: &LayerId,
        version: i64,
    ) -> Result<Option<LayerPolicy>, ServiceError> {
        if layer.foreign {
            return Err(layer_version_not_found(layer, version));
        }
        match self.layers()?.get_layer_policy(&layer.name, version).await {
            Ok(policy) => Ok(policy),
            Err(StoreError::NotFound) => Err(layer_version_not_found(layer, version)),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    async fn save_policy(
        &self,
        layer: &LayerId,
        version: i64,
        current: Option<&LayerPolicy>,
        next: Option<&LayerPolicy>,
    ) -> Result<(), ServiceError> {
        let expected = current.map(|p| p.revision_id.as_str());
        match self
            .layers()?
            .replace_layer_policy(&layer.name, version, expected, next)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(layer_version_not_found(layer, version)),
            Err(StoreError::RevisionMismatch) => Err(stale_policy()),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }
}

fn check_policy_revision(
    given: Option<&str>,
    current: Option<&LayerPolicy>,
) -> Result<(), ServiceError> {
    match given {
        Some(given) if current.is_none_or(|p| p.revision_id != given) => Err(stale_policy()),
        _ => Ok(()),
    }
}

fn stale_policy() -> ServiceError {
    ServiceError::PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the GetLayerPolicy API to retrieve the latest Revision Id"
            .to_owned(),
    )
}

fn no_policy() -> ServiceError {
    ServiceError::ResourceNotFound("No policy is associated with the given resource.".to_owned())
}
