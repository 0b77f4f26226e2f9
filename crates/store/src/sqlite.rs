//! The embedded store: SQLite in WAL mode with full fsync on commit, so an acknowledged write
//! survives the process being killed at any moment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use async_trait::async_trait;
use kappa_core::function::{FunctionRecord, FunctionVersion};
use kappa_core::store::{FunctionStore, StoreError, StoredUsage};
use rusqlite::{Connection, OptionalExtension, params};

use crate::connection::{Database, Durability, SqliteStoreError, backend, write_transaction};
use crate::sealed::Sealer;
use crate::sqlite_layers::write_function_layers;

/// SQLite-backed function records. Every commit is fully synced: an acknowledged change survives
/// a crash at any moment. Versions are stored through `Sealer` (environment variables sealed).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) db: Database,
    /// Every table that stores a `FunctionVersion` writes and reads it through this.
    pub(crate) sealer: Sealer,
}

impl SqliteStore {
    /// Open (creating if needed) the database file, bring its schema up to date, seal what an
    /// earlier release stored in plaintext and check that `sealer`'s key opens the rest.
    pub fn open(path: &Path, sealer: Sealer) -> Result<Self, SqliteStoreError> {
        let db = Database::open(path, Durability::Full)?;
        db.blocking(|conn| crate::sqlite_sealing::prepare(conn, &sealer))?;
        Ok(Self { db, sealer })
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

fn encode_version(sealer: &Sealer, version: &FunctionVersion) -> Result<String, StoreError> {
    sealer.seal_version(version).map_err(StoreError::backend)
}

fn decode_record(sealer: &Sealer, latest: &str, tags: &str) -> Result<FunctionRecord, StoreError> {
    Ok(FunctionRecord {
        latest: sealer.open_version(latest).map_err(StoreError::backend)?,
        tags: serde_json::from_str(tags).map_err(StoreError::backend)?,
    })
}

fn read_record(
    conn: &Connection,
    sealer: &Sealer,
    name: &str,
) -> Result<Option<FunctionRecord>, StoreError> {
    let row = conn
        .query_row(
            "SELECT latest, tags FROM functions WHERE name = ?1",
            [name],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    row.map(|(latest, tags)| decode_record(sealer, &latest, &tags))
        .transpose()
}

#[async_trait]
impl FunctionStore for SqliteStore {
    async fn create_function(&self, record: &FunctionRecord) -> Result<(), StoreError> {
        let latest = encode_version(&self.sealer, &record.latest)?;
        let tags = encode(&record.tags)?;
        let record = record.clone();
        self.db.with_conn(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let inserted = tx
                .execute(
                    "INSERT INTO functions (name, revision_id, code_sha256, code_size, latest, tags, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
                    params![
                        record.name(),
                        record.revision_id(),
                        record.latest.code.sha256_hex,
                        i64::try_from(record.latest.code.size).unwrap_or(i64::MAX),
                        latest,
                        tags,
                        record.latest.last_modified,
                    ],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            write_function_layers(&tx, &record)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn get_function(&self, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        let name = name.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| read_record(conn, &sealer, &name))
            .await
    }

    async fn list_functions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT latest, tags FROM functions WHERE name > ?1 ORDER BY name LIMIT ?2",
                    )
                    .map_err(backend)?;
                let rows = statement
                    .query_map(params![after, limit], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .map_err(backend)?;
                let mut records = Vec::new();
                for row in rows {
                    let (latest, tags) = row.map_err(backend)?;
                    records.push(decode_record(&sealer, &latest, &tags)?);
                }
                Ok(records)
            })
            .await
    }

    async fn replace_function(
        &self,
        record: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError> {
        let latest = encode_version(&self.sealer, &record.latest)?;
        let record = record.clone();
        let expected = expected_revision.to_owned();
        self.db.with_conn(move |conn| {
            let tx = write_transaction(conn)?;
            let current: Option<String> = tx
                .query_row("SELECT revision_id FROM functions WHERE name = ?1", [record.name()], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            match current {
                None => return Err(StoreError::NotFound),
                Some(current) if current != expected => return Err(StoreError::RevisionMismatch),
                Some(_) => {}
            }
            tx.execute(
                "UPDATE functions SET revision_id = ?2, code_sha256 = ?3, code_size = ?4, latest = ?5 WHERE name = ?1",
                params![
                    record.name(),
                    record.revision_id(),
                    record.latest.code.sha256_hex,
                    i64::try_from(record.latest.code.size).unwrap_or(i64::MAX),
                    latest,
                ],
            )
            .map_err(backend)?;
            write_function_layers(&tx, &record)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete_function(&self, name: &str) -> Result<Option<FunctionRecord>, StoreError> {
        let name = name.to_owned();
        let sealer = self.sealer.clone();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let record = read_record(&tx, &sealer, &name)?;
                if record.is_some() {
                    tx.execute("DELETE FROM functions WHERE name = ?1", [&name])
                        .map_err(backend)?;
                    tx.execute(
                        "DELETE FROM function_layers WHERE function_name = ?1",
                        [&name],
                    )
                    .map_err(backend)?;
                    // A function's settings go with it: a new function of the same name starts clean.
                    tx.execute(
                        "DELETE FROM event_invoke_configs WHERE function_name = ?1",
                        [&name],
                    )
                    .map_err(backend)?;
                    crate::sqlite_versions::delete_all_of(&tx, &name)?;
                }
                tx.commit().map_err(backend)?;
                Ok(record)
            })
            .await
    }

    async fn update_tags(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let set = set.clone();
        let remove = remove.to_vec();
        self.db
            .with_conn(move |conn| {
                let tx = write_transaction(conn)?;
                let tags: Option<String> = tx
                    .query_row(
                        "SELECT tags FROM functions WHERE name = ?1",
                        [&name],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(tags) = tags else {
                    return Err(StoreError::NotFound);
                };
                let mut tags: BTreeMap<String, String> =
                    serde_json::from_str(&tags).map_err(StoreError::backend)?;
                tags.extend(set);
                for key in &remove {
                    tags.remove(key);
                }
                tx.execute(
                    "UPDATE functions SET tags = ?2 WHERE name = ?1",
                    params![name, encode(&tags)?],
                )
                .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn usage(&self) -> Result<StoredUsage, StoreError> {
        self.db
            .with_conn(|conn| {
                conn.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(code_size), 0)
                       + (SELECT COALESCE(SUM(code_size), 0) FROM layer_versions)
                       + (SELECT COALESCE(SUM(code_size), 0) FROM function_versions)
                     FROM functions",
                    [],
                    |row| {
                        Ok(StoredUsage {
                            function_count: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                            total_code_size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        })
                    },
                )
                .map_err(backend)
            })
            .await
    }

    async fn referenced_code(&self) -> Result<BTreeSet<String>, StoreError> {
        self.db
            .with_conn(|conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT code_sha256 FROM functions
                         UNION SELECT code_sha256 FROM function_versions
                         UNION SELECT code_sha256 FROM layer_versions
                         UNION SELECT code_sha256 FROM function_layers",
                    )
                    .map_err(backend)?;
                let rows = statement
                    .query_map([], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                let mut digests = rows.collect::<Result<BTreeSet<_>, _>>().map_err(backend)?;
                // Published versions keep the layers they were published with (only `$LATEST`'s
                // are mirrored in `function_layers`); their settings are plain JSON apart from
                // the sealed variables.
                let mut published = conn
                    .prepare_cached("SELECT config FROM function_versions")
                    .map_err(backend)?;
                let configs = published
                    .query_map([], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                for config in configs {
                    let config: serde_json::Value = serde_json::from_str(&config.map_err(backend)?)
                        .map_err(StoreError::backend)?;
                    let layers = config["settings"]["layers"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for layer in layers {
                        if let Some(digest) = layer["code"]["sha256_hex"].as_str() {
                            digests.insert(digest.to_owned());
                        }
                    }
                }
                Ok(digests)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, revision: &str, digest: &str) -> FunctionRecord {
        let mut latest = crate::sealed::tests::version(name, None);
        latest.revision_id = revision.to_owned();
        latest.code.sha256_hex = digest.to_owned();
        FunctionRecord {
            latest,
            tags: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        }
    }

    fn test_sealer() -> Sealer {
        Sealer::new(&crate::DataKey::generate().unwrap())
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("kappa.db"), test_sealer()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn create_is_exclusive_and_reads_back_whole() {
        let (_dir, store) = open();
        let f = record("f", "r1", "aa");
        store.create_function(&f).await.unwrap();
        assert!(matches!(
            store.create_function(&f).await,
            Err(StoreError::AlreadyExists)
        ));
        assert_eq!(store.get_function("f").await.unwrap(), Some(f));
        assert_eq!(store.get_function("g").await.unwrap(), None);
    }

    #[tokio::test]
    async fn replace_checks_the_revision() {
        let (_dir, store) = open();
        store
            .create_function(&record("f", "r1", "aa"))
            .await
            .unwrap();
        let next = record("f", "r2", "bb");
        assert!(matches!(
            store.replace_function(&next, "stale").await,
            Err(StoreError::RevisionMismatch)
        ));
        store.replace_function(&next, "r1").await.unwrap();
        assert_eq!(
            store
                .get_function("f")
                .await
                .unwrap()
                .unwrap()
                .revision_id(),
            "r2"
        );
        assert_eq!(
            store.referenced_code().await.unwrap(),
            BTreeSet::from(["bb".to_owned()])
        );
        let missing = record("g", "r1", "aa");
        assert!(matches!(
            store.replace_function(&missing, "r1").await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn list_pages_in_name_order() {
        let (_dir, store) = open();
        for name in ["c", "a", "b", "d"] {
            store
                .create_function(&record(name, "r", "aa"))
                .await
                .unwrap();
        }
        let names = |records: Vec<FunctionRecord>| {
            records
                .iter()
                .map(|r| r.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(store.list_functions(None, 2).await.unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            names(store.list_functions(Some("b"), 10).await.unwrap()),
            ["c", "d"]
        );
        assert_eq!(
            store.usage().await.unwrap(),
            StoredUsage {
                function_count: 4,
                total_code_size: 40
            }
        );
    }

    #[tokio::test]
    async fn tags_and_delete() {
        let (_dir, store) = open();
        store
            .create_function(&record("f", "r", "aa"))
            .await
            .unwrap();
        let set = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        store
            .update_tags("f", &set, &["team".to_owned()])
            .await
            .unwrap();
        assert_eq!(store.get_function("f").await.unwrap().unwrap().tags, set);
        assert!(matches!(
            store.update_tags("g", &set, &[]).await,
            Err(StoreError::NotFound)
        ));
        assert!(store.delete_function("f").await.unwrap().is_some());
        assert!(store.delete_function("f").await.unwrap().is_none());
        assert!(store.referenced_code().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kappa.db");
        let sealer = test_sealer();
        {
            let store = SqliteStore::open(&path, sealer.clone()).unwrap();
            store
                .create_function(&record("f", "r", "aa"))
                .await
                .unwrap();
        }
        let store = SqliteStore::open(&path, sealer).unwrap();
        assert!(store.get_function("f").await.unwrap().is_some());
    }
}
