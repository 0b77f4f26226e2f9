//! PublishVersion, ListVersionsByFunction and the deletion of one version.

use serde::{Deserialize, Serialize};

use super::{FunctionService, MAX_LIST_PAGE, new_revision_id, now_timestamp, stale_revision};
use crate::error::ServiceError;
use crate::function::{FunctionConfiguration, FunctionVersion, LATEST};
use crate::names::{FunctionRef, RefUse};
use crate::store::StoreError;
use crate::version_store::{Published, VersionDeletion};

/// The longest `Description` of a version or alias.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// PublishVersion's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublishVersionInput {
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
}

/// ListVersionsByFunction's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionListPage {
    pub versions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

impl FunctionService {
    pub async fn publish_version(
        &self,
        name: &str,
        input: PublishVersionInput,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let reference = FunctionRef::parse(name, &self.account, RefUse::Read)?;
        if let Some(description) = &input.description {
            check_description(description)?;
        }
        let record = self.require_record(&reference.name).await?;
        let latest = &record.latest;
        if let Some(sha) = input.code_sha256.as_deref()
            && !sha.is_empty()
            && sha != latest.code.sha256_base64
        {
            return Err(ServiceError::InvalidParameterValue(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                latest.code.sha256_base64
            )));
        }
        if let Some(revision) = input.revision_id.as_deref()
            && revision != latest.revision_id
        {
            return Err(stale_revision());
        }
        self.publish_from(latest, input.description, input.revision_id.is_some())
            .await
    }

    /// Publish `latest` as the next version (or return the last one if nothing changed).
    pub(super) async fn publish_from(
        &self,
        latest: &FunctionVersion,
        description: Option<String>,
        caller_gave_revision: bool,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let mut candidate = latest.clone();
        if let Some(description) = description {
            candidate.settings.description = description;
        }
        candidate.revision_id = new_revision_id();
        candidate.last_modified = now_timestamp();
        let published = self
            .store
            .publish_version(&candidate, &latest.revision_id)
            .await;
        self.forget(&latest.name);
        match published {
            Ok(Published::New(version)) => {
                tracing::info!(function = %version.name, version = %version.version, "version published");
                Ok(version.configuration(&self.account))
            }
            Ok(Published::Unchanged(version)) => Ok(version.configuration(&self.account)),
            Err(StoreError::NotFound) => Err(self.not_found(&latest.name, None)),
            Err(StoreError::RevisionMismatch) if caller_gave_revision => Err(stale_revision()),
            Err(StoreError::RevisionMismatch) => Err(ServiceError::ResourceConflict(format!(
                "The operation cannot be performed at this time. An update is in progress for resource: {}",
                self.account.function_arn(&latest.name)
            ))),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    pub async fn list_versions(
        &self,
        name: &str,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<VersionListPage, ServiceError> {
        let reference = FunctionRef::parse(name, &self.account, RefUse::Read)?;
        let limit = page_limit(max_items)?;
        let record = self.require_record(&reference.name).await?;
        let published = self
            .store
            .list_versions(&reference.name)
            .await
            .map_err(ServiceError::internal)?;
        let mut all = Vec::with_capacity(published.len() + 1);
        let mut latest = record.latest.configuration(&self.account);
        latest.function_arn = self.account.qualified_function_arn(&reference.name, LATEST);
        all.push(latest);
        all.extend(published.iter().map(|v| v.configuration(&self.account)));
        let start = match marker.filter(|m| !m.is_empty()) {
            None => 0,
            Some(marker) => all
                .iter()
                .position(|c| c.version == marker)
                .map_or(all.len(), |i| i + 1),
        };
        let mut page: Vec<_> = all.into_iter().skip(start).collect();
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|c| c.version.clone())
        } else {
            None
        };
        Ok(VersionListPage {
            versions: page,
            next_marker,
        })
    }

    /// DeleteFunction with a version number as qualifier.
    pub(super) async fn delete_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(), ServiceError> {
        let Ok(number) = version.parse::<u64>() else {
            return Err(self.not_found(name, Some(version)));
        };
        self.require_record(name).await?;
        let _guard = self.code_lifecycle.lock().await;
        let deleted = self
            .store
            .delete_version(name, number)
            .await
            .map_err(ServiceError::internal)?;
        self.forget(name);
        match deleted {
            VersionDeletion::Deleted(removed) => {
                self.drop_blob_if_unreferenced(&removed.code.sha256_hex)
                    .await?;
                tracing::info!(function = %name, version, "version deleted");
                Ok(())
            }
            VersionDeletion::NotFound => Err(self.not_found(name, Some(version))),
            VersionDeletion::ReferencedBy(aliases) => Err(ServiceError::ResourceConflict(format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                aliases.join(", ")
            ))),
        }
    }
}

/// `MaxItems` of the version and alias listings: 1–10,000, pages of at most 50.
pub(super) fn page_limit(max_items: Option<i64>) -> Result<usize, ServiceError> {
    match max_items {
        None => Ok(MAX_LIST_PAGE),
        Some(n) if !(1..=10_000).contains(&n) => {
            let bound = if n < 1 {
                "Member must have value greater than or equal to 1"
            } else {
                "Member must have value less than or equal to 10000"
            };
            Err(ServiceError::constraint(n, "maxItems", bound))
        }
        Some(n) => Ok(usize::try_from(n)
            .unwrap_or(MAX_LIST_PAGE)
            .min(MAX_LIST_PAGE)),
    }
}

pub(super) fn check_description(description: &str) -> Result<(), ServiceError> {
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ServiceError::constraint(
            description,
            "description",
            &format!("Member must have length less than or equal to {MAX_DESCRIPTION_LEN}"),
        ));
    }
    Ok(())
}
