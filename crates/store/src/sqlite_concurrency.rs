//! Reserved concurrency in SQLite, on the functions connection: the row refers to its function
//! and is removed with it (`ON DELETE CASCADE`).

use async_trait::async_trait;
use kappa_core::concurrency::ReservedConcurrencyStore;
use kappa_core::store::StoreError;
use rusqlite::params;

use crate::SqliteStore;
use crate::connection::backend;

#[async_trait]
impl ReservedConcurrencyStore for SqliteStore {
    async fn put_reserved(&self, function: &str, reserved: u32) -> Result<(), StoreError> {
        let function = function.to_owned();
        self.db
            .with_conn(move |conn| {
                let written = conn
                    .execute(
                        "INSERT INTO reserved_concurrency (function_name, reserved)
                         SELECT name, ?2 FROM functions WHERE name = ?1
                         ON CONFLICT (function_name) DO UPDATE SET reserved = excluded.reserved",
                        params![function, i64::from(reserved)],
                    )
                    .map_err(backend)?;
                if written == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn delete_reserved(&self, function: &str) -> Result<(), StoreError> {
        let function = function.to_owned();
        self.db
            .with_conn(move |conn| {
                conn.execute(
                    "DELETE FROM reserved_concurrency WHERE function_name = ?1",
                    [function],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn list_reserved(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.db
            .with_conn(|conn| {
                let mut statement = conn
                    .prepare("SELECT function_name, reserved FROM reserved_concurrency")
                    .map_err(backend)?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        ))
                    })
                    .map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, Sealer};

    async fn store_with(functions: &[&str]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(&DataKey::generate().unwrap());
        let store = SqliteStore::open(&dir.path().join("kappa.db"), sealer).unwrap();
        let names: Vec<String> = functions.iter().map(|n| (*n).to_owned()).collect();
        store
            .db
            .with_conn(move |conn| {
                for name in names {
                    conn.execute(
                        "INSERT INTO functions (name, revision_id, code_sha256, code_size, latest, tags, created_at)
                         VALUES (?1, 'r', 'aa', 1, '{}', '{}', 'now')",
                        [name],
                    )
                    .map_err(backend)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn reservations_need_their_function_and_go_with_it() {
        let (_dir, store) = store_with(&["f", "g"]).await;
        assert!(matches!(
            store.put_reserved("missing", 1).await,
            Err(StoreError::NotFound)
        ));
        store.put_reserved("f", 5).await.unwrap();
        store.put_reserved("f", 7).await.unwrap();
        store.put_reserved("g", 0).await.unwrap();
        let mut all = store.list_reserved().await.unwrap();
        all.sort();
        assert_eq!(all, [("f".to_owned(), 7), ("g".to_owned(), 0)]);
        store.delete_reserved("g").await.unwrap();
        store.delete_reserved("g").await.unwrap();
        store
            .db
            .with_conn(|conn| {
                conn.execute("DELETE FROM functions WHERE name = 'f'", [])
                    .map_err(backend)
            })
            .await
            .unwrap();
        assert!(store.list_reserved().await.unwrap().is_empty());
    }
}
