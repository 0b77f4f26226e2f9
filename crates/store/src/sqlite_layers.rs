//! Layer versions in SQLite: `layers` keeps each name's last version number (never reused),
//! `layer_versions` the versions and their policies, `function_layers` the layer blobs each
//! function's `$LATEST` uses, so blob collection sees them.

use async_trait::async_trait;
use kappa_core::function::FunctionRecord;
use kappa_core::layer::{LayerPolicy, LayerVersionRecord};
use kappa_core::layer_store::LayerStore;
use kappa_core::store::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

use crate::connection::{backend, write_transaction};
use crate::sqlite::SqliteStore;

/// Replace the rows naming the layer blobs `record` uses; called inside the transaction that
/// writes the function.
pub(crate) fn write_function_layers(
    tx: &Connection,
    record: &FunctionRecord,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM function_layers WHERE function_name = ?1",
        [record.name()],
    )
    .map_err(backend)?;
    for (position, layer) in record.latest.settings.layers.iter().enumerate() {
        tx.execute(
            "INSERT INTO function_layers (function_name, position, code_sha256) VALUES (?1, ?2, ?3)",
            params![
                record.name(),
                i64::try_from(position).unwrap_or(i64::MAX),
                layer.code.sha256_hex
            ],
        )
        .map_err(backend)?;
    }
    Ok(())
}

fn decode(record: &str) -> Result<LayerVersionRecord, StoreError> {
    serde_json::from_str(record).map_err(StoreError::backend)
}

fn size(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl LayerStore for SqliteStore {
    async fn publish_layer_version(
        &self,
        record: &LayerVersionRecord,
    ) -> Result<LayerVersionRecord, StoreError> {
        let mut record = record.clone();
        self.db
            .with_conn(move |conn| {
                let tx = conn.transaction().map_err(backend)?;
                let version: i64 = tx
                    .query_row(
                        "INSERT INTO layers (name, latest_version) VALUES (?1, 1)
                         ON CONFLICT (name) DO UPDATE SET latest_version = layers.latest_version + 1
                         RETURNING latest_version",
                        [&record.layer_name],
                        |row| row.get(0),
                    )
                    .map_err(backend)?;
                record.version = version;
                let json = serde_json::to_string(&record).map_err(StoreError::backend)?;
                tx.execute(
                    "INSERT INTO layer_versions (layer_name, version, code_sha256, code_size, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        record.layer_name,
                        version,
                        record.code.sha256_hex,
                        size(record.code.size),
                        json
                    ],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(record)
            })
            .await
    }

    async fn get_layer_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerVersionRecord>, StoreError> {
        let name = name.to_owned();
        self.db
            .with_conn(move |conn| {
                let row: Option<String> = conn
                    .query_row(
                        "SELECT record FROM layer_versions WHERE layer_name = ?1 AND version = ?2",
                        params![name, version],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                row.as_deref().map(decode).transpose()
            })
            .await
    }

    async fn list_layer_versions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError> {
        let name = name.map(str::to_owned);
        self.db
            .with_conn(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT record FROM layer_versions
                         WHERE ?1 IS NULL OR layer_name = ?1
                         ORDER BY layer_name, version DESC",
                    )
                    .map_err(backend)?;
                let rows = statement
                    .query_map([name], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                let mut records = Vec::new();
                for row in rows {
                    records.push(decode(&row.map_err(backend)?)?);
                }
                Ok(records)
            })
            .await
    }

    async fn delete_layer_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerVersionRecord>, StoreError> {
        let name = name.to_owned();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let row: Option<String> = tx
                    .query_row(
                        "SELECT record FROM layer_versions WHERE layer_name = ?1 AND version = ?2",
                        params![name, version],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if row.is_some() {
                    tx.execute(
                        "DELETE FROM layer_versions WHERE layer_name = ?1 AND version = ?2",
                        params![name, version],
                    )
                    .map_err(backend)?;
                }
                tx.commit().map_err(backend)?;
                row.as_deref().map(decode).transpose()
            })
            .await
    }

    async fn get_layer_policy(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerPolicy>, StoreError> {
        let name = name.to_owned();
        self.db
            .with_conn(move |conn| {
                let row: Option<Option<String>> = conn
                    .query_row(
                        "SELECT policy FROM layer_versions WHERE layer_name = ?1 AND version = ?2",
                        params![name, version],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                match row {
                    None => Err(StoreError::NotFound),
                    Some(policy) => policy
                        .map(|p| serde_json::from_str(&p).map_err(StoreError::backend))
                        .transpose(),
                }
            })
            .await
    }

    async fn replace_layer_policy(
        &self,
        name: &str,
        version: i64,
        expected_revision: Option<&str>,
        policy: Option<&LayerPolicy>,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let expected = expected_revision.map(str::to_owned);
        let json = policy
            .map(|p| serde_json::to_string(p).map_err(StoreError::backend))
            .transpose()?;
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let row: Option<Option<String>> = tx
                    .query_row(
                        "SELECT policy FROM layer_versions WHERE layer_name = ?1 AND version = ?2",
                        params![name, version],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(current) = row else {
                    return Err(StoreError::NotFound);
                };
                let current_revision = current
                    .map(|p| serde_json::from_str::<LayerPolicy>(&p).map_err(StoreError::backend))
                    .transpose()?
                    .map(|p| p.revision_id);
                if current_revision != expected {
                    return Err(StoreError::RevisionMismatch);
                }
                tx.execute(
                    "UPDATE layer_versions SET policy = ?3 WHERE layer_name = ?1 AND version = ?2",
                    params![name, version, json],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::function::CodeRef;

    fn draft(name: &str, digest: &str) -> LayerVersionRecord {
        LayerVersionRecord {
            layer_name: name.to_owned(),
            version: 0,
            description: String::new(),
            created_date: "2026-01-01T00:00:00.000+0000".into(),
            compatible_runtimes: vec![],
            compatible_architectures: vec![],
            license_info: None,
            code: CodeRef {
                sha256_hex: digest.to_owned(),
                sha256_base64: "b64".into(),
                size: 5,
                unzipped_size: 9,
            },
        }
    }

    #[tokio::test]
    async fn version_numbers_are_never_reused_and_blobs_stay_referenced() {
        use kappa_core::store::FunctionStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("kappa.db"),
            crate::Sealer::new(&crate::DataKey::generate().unwrap()),
        )
        .unwrap();
        let one = store
            .publish_layer_version(&draft("l", "aa"))
            .await
            .unwrap();
        let two = store
            .publish_layer_version(&draft("l", "bb"))
            .await
            .unwrap();
        assert_eq!((one.version, two.version), (1, 2));
        assert_eq!(store.usage().await.unwrap().total_code_size, 10);
        assert!(store.referenced_code().await.unwrap().contains("aa"));
        store.delete_layer_version("l", 2).await.unwrap().unwrap();
        assert!(store.delete_layer_version("l", 2).await.unwrap().is_none());
        let three = store
            .publish_layer_version(&draft("l", "cc"))
            .await
            .unwrap();
        assert_eq!(three.version, 3);
        let listed: Vec<i64> = store
            .list_layer_versions(Some("l"))
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(listed, [3, 1]);
        assert!(!store.referenced_code().await.unwrap().contains("bb"));
    }

    #[tokio::test]
    async fn policies_replace_by_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("kappa.db"),
            crate::Sealer::new(&crate::DataKey::generate().unwrap()),
        )
        .unwrap();
        store
            .publish_layer_version(&draft("l", "aa"))
            .await
            .unwrap();
        assert_eq!(store.get_layer_policy("l", 1).await.unwrap(), None);
        assert!(matches!(
            store.get_layer_policy("l", 2).await,
            Err(StoreError::NotFound)
        ));
        let policy = LayerPolicy {
            revision_id: "r1".into(),
            statements: vec![],
        };
        store
            .replace_layer_policy("l", 1, None, Some(&policy))
            .await
            .unwrap();
        assert!(matches!(
            store.replace_layer_policy("l", 1, None, None).await,
            Err(StoreError::RevisionMismatch)
        ));
        store
            .replace_layer_policy("l", 1, Some("r1"), None)
            .await
            .unwrap();
    }
}
