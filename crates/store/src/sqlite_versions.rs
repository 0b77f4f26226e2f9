//! `VersionStore` on SQLite: published versions, aliases and provisioned concurrency configs.

use async_trait::async_trait;
use kappa_core::function::FunctionVersion;

use crate::sealed::Sealer;
use kappa_core::store::StoreError;
use kappa_core::version_store::{
    AliasRecord, ProvisionedConcurrencyRecord, Published, VersionDeletion, VersionStore,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::connection::{backend, write_transaction};
use crate::sqlite::SqliteStore;

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(StoreError::backend)
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn version_number(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Remove everything versions, aliases and provisioned concurrency keep of `function`, inside
/// the transaction that deletes the function.
pub(crate) fn delete_all_of(conn: &Connection, function: &str) -> Result<(), StoreError> {
    for table in [
        "function_versions",
        "function_version_counters",
        "function_aliases",
        "provisioned_concurrency_configs",
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE function_name = ?1"),
            [function],
        )
        .map_err(backend)?;
    }
    Ok(())
}

fn function_exists(conn: &Connection, function: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM functions WHERE name = ?1",
        [function],
        |_| Ok(()),
    )
    .optional()
    .map_err(backend)
    .map(|row| row.is_some())
}

/// A published version's stored form: its environment variables sealed, as for `$LATEST`.
fn seal(sealer: &Sealer, version: &FunctionVersion) -> Result<String, StoreError> {
    sealer.seal_version(version).map_err(StoreError::backend)
}

fn open(sealer: &Sealer, stored: &str) -> Result<FunctionVersion, StoreError> {
    sealer.open_version(stored).map_err(StoreError::backend)
}

fn version_exists(conn: &Connection, function: &str, version: i64) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM function_versions WHERE function_name = ?1 AND version = ?2",
        params![function, version],
        |_| Ok(()),
    )
    .optional()
    .map_err(backend)
    .map(|row| row.is_some())
}

fn read_version(
    conn: &Connection,
    sealer: &Sealer,
    function: &str,
    version: i64,
) -> Result<Option<FunctionVersion>, StoreError> {
    conn.query_row(
        "SELECT config FROM function_versions WHERE function_name = ?1 AND version = ?2",
        params![function, version],
        |row| row.get::<_, String>(0),
    )
    .optional()
    .map_err(backend)?
    .map(|config| open(sealer, &config))
    .transpose()
}

fn read_aliases(conn: &Connection, function: &str) -> Result<Vec<AliasRecord>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT config FROM function_aliases WHERE function_name = ?1 ORDER BY alias_name",
        )
        .map_err(backend)?;
    let rows = statement
        .query_map([function], |row| row.get::<_, String>(0))
        .map_err(backend)?;
    let mut aliases = Vec::new();
    for row in rows {
        aliases.push(decode(&row.map_err(backend)?)?);
    }
    Ok(aliases)
}

/// Every version an alias routes to exists (`$LATEST` always does while the function does).
fn alias_targets_exist(
    conn: &Connection,
    function: &str,
    alias: &AliasRecord,
) -> Result<bool, StoreError> {
    let targets =
        std::iter::once(&alias.function_version).chain(alias.additional_version_weights.keys());
    for target in targets {
        if target == kappa_core::function::LATEST {
            continue;
        }
        let Ok(number) = target.parse::<i64>() else {
            return Ok(false);
        };
        if !version_exists(conn, function, number)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Two snapshots publish the same thing when code and settings match.
fn same_content(a: &FunctionVersion, b: &FunctionVersion) -> bool {
    a.code.sha256_hex == b.code.sha256_hex && a.settings == b.settings
}

#[async_trait]
impl VersionStore for SqliteStore {
    async fn publish_version(
        &self,
        candidate: &FunctionVersion,
        expected_latest_revision: &str,
    ) -> Result<Published, StoreError> {
        let mut candidate = candidate.clone();
        let expected = expected_latest_revision.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let revision: Option<String> = tx
                    .query_row(
                        "SELECT revision_id FROM functions WHERE name = ?1",
                        [&candidate.name],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                match revision {
                    None => return Err(StoreError::NotFound),
                    Some(current) if current != expected => {
                        return Err(StoreError::RevisionMismatch);
                    }
                    Some(_) => {}
                }
                let newest: Option<i64> = tx
                    .query_row(
                        "SELECT MAX(version) FROM function_versions WHERE function_name = ?1",
                        [&candidate.name],
                        |row| row.get(0),
                    )
                    .map_err(backend)?;
                if let Some(newest) = newest {
                    let (config, source): (String, String) = tx
                        .query_row(
                            "SELECT config, source_revision FROM function_versions
                             WHERE function_name = ?1 AND version = ?2",
                            params![candidate.name, newest],
                            |row| Ok((row.get(0)?, row.get(1)?)),
                        )
                        .map_err(backend)?;
                    let last = open(&sealer, &config)?;
                    if source == expected || same_content(&last, &candidate) {
                        return Ok(Published::Unchanged(last));
                    }
                }
                let last_number: i64 = tx
                    .query_row(
                        "SELECT last_version FROM function_version_counters WHERE function_name = ?1",
                        [&candidate.name],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?
                    .unwrap_or(0);
                let number = last_number + 1;
                candidate.version = number.to_string();
                tx.execute(
                    "INSERT INTO function_version_counters (function_name, last_version) VALUES (?1, ?2)
                     ON CONFLICT (function_name) DO UPDATE SET last_version = excluded.last_version",
                    params![candidate.name, number],
                )
                .map_err(backend)?;
                tx.execute(
                    "INSERT INTO function_versions (function_name, version, code_sha256, code_size, config, source_revision)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        candidate.name,
                        number,
                        candidate.code.sha256_hex,
                        size(candidate.code.size),
                        seal(&sealer, &candidate)?,
                        expected,
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(Published::New(candidate))
            })
            .await
    }

    async fn get_version(
        &self,
        function: &str,
        version: u64,
    ) -> Result<Option<FunctionVersion>, StoreError> {
        let function = function.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| read_version(conn, &sealer, &function, version_number(version)))
            .await
    }

    async fn list_versions(&self, function: &str) -> Result<Vec<FunctionVersion>, StoreError> {
        let function = function.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT config FROM function_versions WHERE function_name = ?1 ORDER BY version",
                    )
                    .map_err(backend)?;
                let rows = statement
                    .query_map([&function], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                let mut versions = Vec::new();
                for row in rows {
                    versions.push(open(&sealer, &row.map_err(backend)?)?);
                }
                Ok(versions)
            })
            .await
    }

    async fn delete_version(
        &self,
        function: &str,
        version: u64,
    ) -> Result<VersionDeletion, StoreError> {
        let function = function.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let number = version_number(version);
                let Some(found) = read_version(&tx, &sealer, &function, number)? else {
                    return Ok(VersionDeletion::NotFound);
                };
                let users: Vec<String> = read_aliases(&tx, &function)?
                    .into_iter()
                    .filter(|alias| alias.references(&found.version))
                    .map(|alias| alias.name)
                    .collect();
                if !users.is_empty() {
                    return Ok(VersionDeletion::ReferencedBy(users));
                }
                tx.execute(
                    "DELETE FROM function_versions WHERE function_name = ?1 AND version = ?2",
                    params![function, number],
                )
                .map_err(backend)?;
                for table in ["provisioned_concurrency_configs", "event_invoke_configs"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE function_name = ?1 AND qualifier = ?2"),
                        params![function, found.version],
                    )
                    .map_err(backend)?;
                }
                tx.commit().map_err(backend)?;
                Ok(VersionDeletion::Deleted(Box::new(found)))
            })
            .await
    }

    async fn create_alias(&self, function: &str, alias: &AliasRecord) -> Result<(), StoreError> {
        let function = function.to_owned();
        let alias = alias.clone();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                if !function_exists(&tx, &function)? || !alias_targets_exist(&tx, &function, &alias)? {
                    return Err(StoreError::NotFound);
                }
                let inserted = tx
                    .execute(
                        "INSERT INTO function_aliases (function_name, alias_name, config) VALUES (?1, ?2, ?3)
                         ON CONFLICT (function_name, alias_name) DO NOTHING",
                        params![function, alias.name, encode(&alias)?],
                    )
                    .map_err(backend)?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists);
                }
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn get_alias(
        &self,
        function: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let function = function.to_owned();
        let name = name.to_owned();
        self.db
            .with_conn(move |conn| {
                conn.query_row(
                    "SELECT config FROM function_aliases WHERE function_name = ?1 AND alias_name = ?2",
                    params![function, name],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map_err(backend)?
                .map(|config| decode(&config))
                .transpose()
            })
            .await
    }

    async fn list_aliases(&self, function: &str) -> Result<Vec<AliasRecord>, StoreError> {
        let function = function.to_owned();
        self.db
            .with_conn(move |conn| read_aliases(conn, &function))
            .await
    }

    async fn replace_alias(
        &self,
        function: &str,
        alias: &AliasRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError> {
        let function = function.to_owned();
        let alias = alias.clone();
        let expected = expected_revision.to_owned();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let current: Option<String> = tx
                    .query_row(
                        "SELECT config FROM function_aliases WHERE function_name = ?1 AND alias_name = ?2",
                        params![function, alias.name],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(current) = current else {
                    return Err(StoreError::NotFound);
                };
                let current: AliasRecord = decode(&current)?;
                if current.revision_id != expected {
                    return Err(StoreError::RevisionMismatch);
                }
                if !alias_targets_exist(&tx, &function, &alias)? {
                    return Err(StoreError::NotFound);
                }
                tx.execute(
                    "UPDATE function_aliases SET config = ?3 WHERE function_name = ?1 AND alias_name = ?2",
                    params![function, alias.name, encode(&alias)?],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn delete_alias(&self, function: &str, name: &str) -> Result<bool, StoreError> {
        let function = function.to_owned();
        let name = name.to_owned();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let deleted = tx
                    .execute(
                        "DELETE FROM function_aliases WHERE function_name = ?1 AND alias_name = ?2",
                        params![function, name],
                    )
                    .map_err(backend)?;
                for table in ["provisioned_concurrency_configs", "event_invoke_configs"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE function_name = ?1 AND qualifier = ?2"),
                        params![function, name],
                    )
                    .map_err(backend)?;
                }
                tx.commit().map_err(backend)?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn put_provisioned_concurrency(
        &self,
        config: &ProvisionedConcurrencyRecord,
    ) -> Result<(), StoreError> {
        let config = config.clone();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                if !function_exists(&tx, &config.function_name)? {
                    return Err(StoreError::NotFound);
                }
                tx.execute(
                    "INSERT INTO provisioned_concurrency_configs (function_name, qualifier, requested, last_modified)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (function_name, qualifier)
                     DO UPDATE SET requested = excluded.requested, last_modified = excluded.last_modified",
                    params![
                        config.function_name,
                        config.qualifier,
                        i64::from(config.requested),
                        config.last_modified,
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn list_provisioned_concurrency(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<ProvisionedConcurrencyRecord>, StoreError> {
        let function = function.map(str::to_owned);
        self.db
            .with_conn(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT function_name, qualifier, requested, last_modified
                         FROM provisioned_concurrency_configs
                         WHERE ?1 IS NULL OR function_name = ?1
                         ORDER BY function_name, qualifier",
                    )
                    .map_err(backend)?;
                let rows = statement
                    .query_map([&function], |row| {
                        Ok(ProvisionedConcurrencyRecord {
                            function_name: row.get(0)?,
                            qualifier: row.get(1)?,
                            requested: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                            last_modified: row.get(3)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn delete_provisioned_concurrency(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let function = function.to_owned();
        let qualifier = qualifier.to_owned();
        self.db
            .with_conn(move |conn| {
                let deleted = conn
                    .execute(
                        "DELETE FROM provisioned_concurrency_configs WHERE function_name = ?1 AND qualifier = ?2",
                        params![function, qualifier],
                    )
                    .map_err(backend)?;
                Ok(deleted > 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kappa_core::function::FunctionRecord;
    use kappa_core::store::FunctionStore;

    use super::*;

    fn latest(name: &str, revision: &str, digest: &str) -> FunctionVersion {
        serde_json::from_value(serde_json::json!({
            "name": name, "version": "$LATEST", "revision_id": revision,
            "last_modified": "2026-01-01T00:00:00.000+0000",
            "code": {"sha256_hex": digest, "sha256_base64": "b64", "size": 10, "unzipped_size": 20},
            "settings": {
                "runtime": "python3.12", "handler": "app.handler", "role": "r", "description": "",
                "timeout": 3, "memory_size": 128, "ephemeral_storage": 512, "environment": null,
                "architectures": ["x86_64"], "tracing_mode": "PassThrough",
                "dead_letter_target": null, "kms_key_arn": null, "snap_start_apply_on": "None",
                "logging": {"log_format": "Text", "log_group": null,
                            "application_log_level": null, "system_log_level": null}
            }
        }))
        .unwrap()
    }

    async fn store_with(name: &str) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("kappa.db"),
            crate::Sealer::new(&crate::DataKey::generate().unwrap()),
        )
        .unwrap();
        let record = FunctionRecord {
            latest: latest(name, "r1", "aa"),
            tags: BTreeMap::new(),
        };
        store.create_function(&record).await.unwrap();
        (dir, store)
    }

    async fn replace(store: &SqliteStore, from: &str, to: &str, digest: &str) {
        let record = FunctionRecord {
            latest: latest("f", to, digest),
            tags: BTreeMap::new(),
        };
        store.replace_function(&record, from).await.unwrap();
    }

    fn number(published: Published) -> String {
        match published {
            Published::New(v) | Published::Unchanged(v) => v.version,
        }
    }

    #[tokio::test]
    async fn numbers_are_never_reused_and_unchanged_latest_publishes_nothing() {
        let (_dir, store) = store_with("f").await;
        let first = store
            .publish_version(&latest("f", "r1", "aa"), "r1")
            .await
            .unwrap();
        assert!(matches!(&first, Published::New(v) if v.version == "1"));
        let again = store
            .publish_version(&latest("f", "r1", "aa"), "r1")
            .await
            .unwrap();
        assert!(matches!(again, Published::Unchanged(_)));
        replace(&store, "r1", "r2", "bb").await;
        assert_eq!(
            number(
                store
                    .publish_version(&latest("f", "r2", "bb"), "r2")
                    .await
                    .unwrap()
            ),
            "2"
        );
        assert!(matches!(
            store.delete_version("f", 2).await.unwrap(),
            VersionDeletion::Deleted(_)
        ));
        replace(&store, "r2", "r3", "cc").await;
        assert_eq!(
            number(
                store
                    .publish_version(&latest("f", "r3", "cc"), "r3")
                    .await
                    .unwrap()
            ),
            "3"
        );
        assert!(matches!(
            store
                .publish_version(&latest("f", "r3", "cc"), "stale")
                .await,
            Err(StoreError::RevisionMismatch)
        ));
        let versions: Vec<_> = store
            .list_versions("f")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, ["1", "3"]);
        // Both versions' code stays referenced.
        let referenced = store.referenced_code().await.unwrap();
        assert!(
            referenced.contains("aa") && referenced.contains("cc") && !referenced.contains("bb")
        );
    }

    #[tokio::test]
    async fn aliases_protect_their_versions_and_go_with_the_function() {
        let (_dir, store) = store_with("f").await;
        store
            .publish_version(&latest("f", "r1", "aa"), "r1")
            .await
            .unwrap();
        let alias = AliasRecord {
            name: "live".into(),
            function_version: "1".into(),
            description: String::new(),
            additional_version_weights: BTreeMap::new(),
            revision_id: "a1".into(),
        };
        store.create_alias("f", &alias).await.unwrap();
        assert!(matches!(
            store.create_alias("f", &alias).await,
            Err(StoreError::AlreadyExists)
        ));
        let dangling = AliasRecord {
            name: "x".into(),
            function_version: "9".into(),
            ..alias.clone()
        };
        assert!(matches!(
            store.create_alias("f", &dangling).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store.delete_version("f", 1).await.unwrap(),
            VersionDeletion::ReferencedBy(vec!["live".into()])
        );
        assert!(matches!(
            store.replace_alias("f", &alias, "stale").await,
            Err(StoreError::RevisionMismatch)
        ));
        store.delete_function("f").await.unwrap();
        assert!(store.list_aliases("f").await.unwrap().is_empty());
        assert!(store.list_versions("f").await.unwrap().is_empty());
    }
}
