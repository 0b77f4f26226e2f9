//! At open: seal the environment variables that releases before sealing stored in plaintext,
//! then check that the data key opens what is sealed.
//!
//! Plaintext rows are rewritten with `secure_delete` on, then the database is vacuumed (every
//! page rewritten, free pages dropped) and the WAL checkpointed and truncated, so no copy of the
//! old plaintext is left in the database file, its free pages or its WAL.

use rusqlite::{Connection, params};

use crate::connection::SqliteStoreError;
use crate::sealed::{SEALED_MEMBER, SealError, Sealer};

/// Seal plaintext rows and check the key; returns how many rows were sealed.
pub(crate) fn prepare(conn: &mut Connection, sealer: &Sealer) -> Result<usize, SqliteStoreError> {
    let sealed = seal_plaintext_rows(conn, sealer)?;
    check_key(conn, sealer)?;
    Ok(sealed)
}

fn plaintext_error(err: impl std::error::Error + Send + Sync + 'static) -> SqliteStoreError {
    SqliteStoreError::SealPlaintext(Box::new(err))
}

fn seal_plaintext_rows(conn: &mut Connection, sealer: &Sealer) -> Result<usize, SqliteStoreError> {
    let rows: Vec<(String, String)> = {
        let mut statement = conn
            .prepare(
                "SELECT name, latest FROM functions
                 WHERE json_extract(latest, '$.settings.environment') IS NOT NULL",
            )
            .map_err(plaintext_error)?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(plaintext_error)?;
        rows.collect::<Result<_, _>>().map_err(plaintext_error)?
    };
    if rows.is_empty() {
        return Ok(0);
    }
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(plaintext_error)?;
    let tx = conn.transaction().map_err(plaintext_error)?;
    for (name, latest) in &rows {
        let version = sealer.open_version(latest).map_err(plaintext_error)?;
        let stored = sealer.seal_version(&version).map_err(plaintext_error)?;
        tx.execute(
            "UPDATE functions SET latest = ?2 WHERE name = ?1",
            params![name, stored],
        )
        .map_err(plaintext_error)?;
    }
    tx.commit().map_err(plaintext_error)?;
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(plaintext_error)?;
    tracing::info!(
        functions = rows.len(),
        "sealed environment variables stored in plaintext by an earlier release"
    );
    Ok(rows.len())
}

/// Fail when no sealed row opens (another key); warn about single rows that do not.
fn check_key(conn: &Connection, sealer: &Sealer) -> Result<(), SqliteStoreError> {
    let mut statement = conn
        .prepare(&format!(
            "SELECT name, latest FROM functions
             WHERE json_extract(latest, '$.settings.{SEALED_MEMBER}') IS NOT NULL"
        ))
        .map_err(SqliteStoreError::Open)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(SqliteStoreError::Open)?;
    let mut total = 0;
    let mut failed = Vec::new();
    for row in rows {
        let (name, latest) = row.map_err(SqliteStoreError::Open)?;
        total += 1;
        if let Err(err @ (SealError::Unopenable { .. } | SealError::Malformed { .. })) =
            sealer.open_version(&latest)
        {
            failed.push((name, err));
        }
    }
    if total > 0 && failed.len() == total {
        return Err(SqliteStoreError::WrongDataKey {
            count: total,
            example: failed.swap_remove(0).0,
        });
    }
    for (function, err) in failed {
        tracing::error!(%function, error = %err, "stored environment variables do not open; invocations of this function will fail");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kappa_core::function::{FunctionRecord, FunctionVersion};
    use kappa_core::store::FunctionStore;

    use crate::{DataKey, SqliteStore, SqliteStoreError};

    use super::*;

    const SECRET: &str = "plaintext-secret-4711";

    fn version(name: &str) -> FunctionVersion {
        crate::sealed::tests::version(
            name,
            Some(BTreeMap::from([("TOKEN".to_owned(), SECRET.to_owned())])),
        )
    }

    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    }

    #[tokio::test]
    async fn plaintext_rows_of_an_earlier_release_are_sealed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kappa.db");
        {
            // What a release before sealing wrote: the version's plain JSON.
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            crate::migrations::migrate(&mut conn).unwrap();
            conn.execute(
                "INSERT INTO functions (name, revision_id, code_sha256, code_size, latest, tags, created_at)
                 VALUES ('f', 'r1', 'aa', 10, ?1, '{}', 'now')",
                [serde_json::to_string(&version("f")).unwrap()],
            )
            .unwrap();
        }
        assert!(files_contain(dir.path(), SECRET.as_bytes()));
        let sealer = Sealer::new(&DataKey::generate().unwrap());
        let store = SqliteStore::open(&path, sealer.clone()).unwrap();
        let read = store.get_function("f").await.unwrap().unwrap();
        assert_eq!(read.latest, version("f"));
        drop(store);
        assert!(
            !files_contain(dir.path(), SECRET.as_bytes()),
            "the plaintext survived in the database, its free pages or its WAL"
        );
        // Reopening with the same key is quiet; with another key it is refused.
        SqliteStore::open(&path, sealer).unwrap();
        let other = Sealer::new(&DataKey::generate().unwrap());
        let err = SqliteStore::open(&path, other).unwrap_err();
        assert!(
            matches!(err, SqliteStoreError::WrongDataKey { count: 1, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn stored_rows_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kappa.db");
        let store = SqliteStore::open(&path, Sealer::new(&DataKey::generate().unwrap())).unwrap();
        let record = FunctionRecord {
            latest: version("f"),
            tags: BTreeMap::new(),
        };
        store.create_function(&record).await.unwrap();
        let mut next = record.clone();
        next.latest.revision_id = "r2".into();
        store.replace_function(&next, "r1").await.unwrap();
        assert_eq!(store.get_function("f").await.unwrap().unwrap(), next);
        assert!(!files_contain(dir.path(), SECRET.as_bytes()));
    }
}
