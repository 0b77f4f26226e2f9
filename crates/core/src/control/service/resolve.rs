//! What a qualifier names: `$LATEST`, a published version, or an alias routing to one or two
//! versions. The invoke path keeps resolved targets in memory and picks a weighted alias's version
//! per invocation without touching the store.

use std::cell::Cell;
use std::sync::Arc;

use super::FunctionService;
use crate::error::ServiceError;
use crate::function::{FunctionRecord, FunctionVersion, LATEST};

/// The version(s) one qualifier of a function runs.
#[derive(Debug, Clone)]
pub(crate) enum InvokeTarget {
    Version(Arc<FunctionVersion>),
    /// A weighted alias: `additional` runs with probability `weight`, `primary` otherwise.
    Weighted {
        primary: Arc<FunctionVersion>,
        additional: Arc<FunctionVersion>,
        weight: f64,
    },
}

impl InvokeTarget {
    /// The version this invocation runs.
    pub(crate) fn pick(&self) -> Arc<FunctionVersion> {
        match self {
            Self::Version(version) => Arc::clone(version),
            Self::Weighted {
                primary,
                additional,
                weight,
            } => {
                if unit_random() < *weight {
                    Arc::clone(additional)
                } else {
                    Arc::clone(primary)
                }
            }
        }
    }
}

/// What a qualified reference names, for the read operations.
pub(crate) struct Resolved {
    pub record: FunctionRecord,
    pub version: FunctionVersion,
    /// Set when an alias was named: reported configurations carry the alias ARN.
    pub alias: Option<String>,
}

impl FunctionService {
    /// Load what `qualifier` of `function` names from the store.
    pub(crate) async fn load_target(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<InvokeTarget, ServiceError> {
        let missing = || self.not_found(function, Some(qualifier));
        if qualifier == LATEST {
            let record = self
                .get_record(function)
                .await?
                .ok_or_else(|| self.not_found(function, Some(qualifier)))?;
            return Ok(InvokeTarget::Version(Arc::new(record.latest)));
        }
        if qualifier.bytes().all(|b| b.is_ascii_digit()) {
            let version = self.load_version(function, qualifier).await?;
            return version
                .map(|v| InvokeTarget::Version(Arc::new(v)))
                .ok_or_else(missing);
        }
        let alias = self
            .store
            .get_alias(function, qualifier)
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(missing)?;
        let primary = Arc::new(
            self.load_version(function, &alias.function_version)
                .await?
                .ok_or_else(missing)?,
        );
        match alias.additional_version_weights.iter().next() {
            Some((extra, weight)) if *weight > 0.0 => {
                let additional = self
                    .load_version(function, extra)
                    .await?
                    .ok_or_else(missing)?;
                Ok(InvokeTarget::Weighted {
                    primary,
                    additional: Arc::new(additional),
                    weight: *weight,
                })
            }
            _ => Ok(InvokeTarget::Version(primary)),
        }
    }

    /// `$LATEST` or a published version by its number.
    async fn load_version(
        &self,
        function: &str,
        version: &str,
    ) -> Result<Option<FunctionVersion>, ServiceError> {
        if version == LATEST {
            return Ok(self.get_record(function).await?.map(|r| r.latest));
        }
        let Ok(number) = version.parse::<u64>() else {
            return Ok(None);
        };
        self.store
            .get_version(function, number)
            .await
            .map_err(ServiceError::internal)
    }

    /// The function and the version a read operation names (an alias names its primary version).
    pub(crate) async fn resolve_qualified(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Resolved, ServiceError> {
        let record = self
            .get_record(function)
            .await?
            .ok_or_else(|| self.not_found(function, qualifier))?;
        let Some(qualifier) = qualifier.filter(|q| *q != LATEST) else {
            let version = record.latest.clone();
            return Ok(Resolved {
                record,
                version,
                alias: None,
            });
        };
        let target = self.load_target(function, qualifier).await?;
        let version = match target {
            InvokeTarget::Version(v) | InvokeTarget::Weighted { primary: v, .. } => {
                FunctionVersion::clone(&v)
            }
        };
        let alias = (!qualifier.bytes().all(|b| b.is_ascii_digit())).then(|| qualifier.to_owned());
        Ok(Resolved {
            record,
            version,
            alias,
        })
    }
}

/// The modelled constraints of a `Qualifier` query parameter: 1–128 characters of
/// `(|[a-zA-Z0-9$_-]+)`.
pub(crate) fn check_query_qualifier(qualifier: Option<&str>) -> Result<(), ServiceError> {
    let Some(qualifier) = qualifier else {
        return Ok(());
    };
    let mut violations = Vec::new();
    let length = qualifier.chars().count();
    if length > 128 {
        violations.push(crate::error::constraint_violation(
            qualifier,
            "qualifier",
            "Member must have length less than or equal to 128",
        ));
    }
    if length == 0 {
        violations.push(crate::error::constraint_violation(
            qualifier,
            "qualifier",
            "Member must have length greater than or equal to 1",
        ));
    }
    if !qualifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'_' | b'-'))
    {
        violations.push(crate::error::constraint_violation(
            qualifier,
            "qualifier",
            "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)",
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(violations))
    }
}

/// A uniform number in [0, 1) from a per-thread xorshift generator seeded at random: routing
/// needs fairness, not secrecy, and must cost nothing per invoke.
fn unit_random() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn seed() -> u64 {
    let random = uuid::Uuid::new_v4().as_u128();
    (random as u64 ^ (random >> 64) as u64) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_random_is_uniform_enough() {
        let n = 100_000;
        let below = (0..n).filter(|_| unit_random() < 0.3).count();
        let share = below as f64 / n as f64;
        assert!((share - 0.3).abs() < 0.01, "share {share}");
    }
}
