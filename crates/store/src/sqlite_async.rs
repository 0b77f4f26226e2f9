//! The asynchronous-invocation queue and event invoke configs in SQLite, on a connection of
//! their own with full fsync on commit: a 202 is only sent after the event's commit.

use std::path::Path;

use async_trait::async_trait;
use kappa_core::async_queue::{
    AsyncEvent, AsyncQueue, EventInvokeConfig, EventInvokeConfigStore, QueueStats,
};
use kappa_core::store::StoreError;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::connection::{Database, Durability, SqliteStoreError, backend};

#[derive(Clone, Debug)]
pub struct SqliteAsyncStore {
    db: Database,
}

impl SqliteAsyncStore {
    pub fn open(path: &Path) -> Result<Self, SqliteStoreError> {
        Ok(Self {
            db: Database::open(path, Durability::Full)?,
        })
    }
}

const EVENT_COLUMNS: &str = "request_id, function_name, qualifier, invoked_arn, payload, enqueued_at, attempts, next_attempt_at, throttle_backoff_ms";

fn read_event(row: &Row<'_>) -> rusqlite::Result<AsyncEvent> {
    Ok(AsyncEvent {
        request_id: row.get(0)?,
        function_name: row.get(1)?,
        qualifier: row.get(2)?,
        invoked_arn: row.get(3)?,
        payload: row.get(4)?,
        enqueued_at: row.get(5)?,
        attempts: u32::try_from(row.get::<_, i64>(6)?).unwrap_or(u32::MAX),
        next_attempt_at: row.get(7)?,
        throttle_backoff_ms: row.get(8)?,
    })
}

fn insert_events(conn: &Connection, events: &[AsyncEvent]) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(&format!(
            "INSERT INTO async_events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (request_id) DO NOTHING"
        ))
        .map_err(backend)?;
    for event in events {
        insert
            .execute(params![
                event.request_id,
                event.function_name,
                event.qualifier,
                event.invoked_arn,
                event.payload,
                event.enqueued_at,
                i64::from(event.attempts),
                event.next_attempt_at,
                event.throttle_backoff_ms,
            ])
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl AsyncQueue for SqliteAsyncStore {
    async fn enqueue(&self, events: &[AsyncEvent]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.db
            .with_conn(move |conn| {
                let tx = conn.transaction().map_err(backend)?;
                insert_events(&tx, &events)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn due(
        &self,
        now: i64,
        limit: usize,
        excluded: &[String],
    ) -> Result<Vec<AsyncEvent>, StoreError> {
        let excluded = excluded.to_vec();
        let fetch = i64::try_from(limit + excluded.len()).unwrap_or(i64::MAX);
        self.db
            .with_conn(move |conn| {
                let mut statement = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM async_events WHERE next_attempt_at <= ?1
                     ORDER BY next_attempt_at, enqueued_at LIMIT ?2"
                    ))
                    .map_err(backend)?;
                let rows = statement
                    .query_map(params![now, fetch], read_event)
                    .map_err(backend)?;
                let mut events = Vec::new();
                for row in rows {
                    let event = row.map_err(backend)?;
                    if !excluded.contains(&event.request_id) {
                        events.push(event);
                        if events.len() == limit {
                            break;
                        }
                    }
                }
                Ok(events)
            })
            .await
    }

    async fn reschedule(&self, event: &AsyncEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.db.with_conn(move |conn| {
            conn.execute(
                "UPDATE async_events SET attempts = ?2, next_attempt_at = ?3, throttle_backoff_ms = ?4
                 WHERE request_id = ?1",
                params![event.request_id, i64::from(event.attempts), event.next_attempt_at, event.throttle_backoff_ms],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn complete(
        &self,
        request_id: &str,
        follow_ups: &[AsyncEvent],
    ) -> Result<(), StoreError> {
        let request_id = request_id.to_owned();
        let follow_ups = follow_ups.to_vec();
        self.db
            .with_conn(move |conn| {
                let tx = conn.transaction().map_err(backend)?;
                tx.execute(
                    "DELETE FROM async_events WHERE request_id = ?1",
                    [&request_id],
                )
                .map_err(backend)?;
                insert_events(&tx, &follow_ups)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn stats(&self, now: i64) -> Result<QueueStats, StoreError> {
        self.db
            .with_conn(move |conn| {
                conn.query_row(
                    "SELECT COUNT(*), MIN(enqueued_at) FROM async_events",
                    [],
                    |row| {
                        let depth: i64 = row.get(0)?;
                        let oldest: Option<i64> = row.get(1)?;
                        Ok(QueueStats {
                            depth: u64::try_from(depth).unwrap_or(0),
                            oldest_age_ms: oldest.map_or(0, |t| (now - t).max(0)),
                        })
                    },
                )
                .map_err(backend)
            })
            .await
    }
}

#[async_trait]
impl EventInvokeConfigStore for SqliteAsyncStore {
    async fn put_config(
        &self,
        function: &str,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> Result<(), StoreError> {
        let (function, qualifier) = (function.to_owned(), qualifier.to_owned());
        let text = serde_json::to_string(config).map_err(StoreError::backend)?;
        let last_modified = config.last_modified;
        self.db.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO event_invoke_configs (function_name, qualifier, config, last_modified)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (function_name, qualifier) DO UPDATE SET config = excluded.config, last_modified = excluded.last_modified",
                params![function, qualifier, text, last_modified],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>, StoreError> {
        let (function, qualifier) = (function.to_owned(), qualifier.to_owned());
        self.db.with_conn(move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT config FROM event_invoke_configs WHERE function_name = ?1 AND qualifier = ?2",
                    params![function, qualifier],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            text.map(|t| serde_json::from_str(&t).map_err(StoreError::backend)).transpose()
        })
        .await
    }

    async fn delete_config(&self, function: &str, qualifier: &str) -> Result<(), StoreError> {
        let (function, qualifier) = (function.to_owned(), qualifier.to_owned());
        self.db
            .with_conn(move |conn| {
                let removed = conn
                .execute(
                    "DELETE FROM event_invoke_configs WHERE function_name = ?1 AND qualifier = ?2",
                    params![function, qualifier],
                )
                .map_err(backend)?;
                if removed == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn list_configs(
        &self,
        function: &str,
    ) -> Result<Vec<(String, EventInvokeConfig)>, StoreError> {
        let function = function.to_owned();
        self.db.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT qualifier, config FROM event_invoke_configs WHERE function_name = ?1 ORDER BY qualifier")
                .map_err(backend)?;
            let rows = statement
                .query_map([&function], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .map_err(backend)?;
            let mut configs = Vec::new();
            for row in rows {
                let (qualifier, text) = row.map_err(backend)?;
                configs.push((qualifier, serde_json::from_str(&text).map_err(StoreError::backend)?));
            }
            Ok(configs)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, due: i64) -> AsyncEvent {
        AsyncEvent {
            request_id: id.into(),
            function_name: "f".into(),
            qualifier: None,
            invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            payload: "{}".into(),
            enqueued_at: 0,
            attempts: 0,
            next_attempt_at: due,
            throttle_backoff_ms: 0,
        }
    }

    #[tokio::test]
    async fn events_are_due_in_order_and_complete_atomically_with_follow_ups() {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteAsyncStore::open(&dir.path().join("kappa.db")).unwrap();
        queue
            .enqueue(&[event("b", 20), event("a", 10), event("later", 1000)])
            .await
            .unwrap();
        let due = queue.due(100, 10, &[]).await.unwrap();
        assert_eq!(
            due.iter()
                .map(|e| e.request_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(queue.due(100, 10, &["a".into()]).await.unwrap().len(), 1);
        let mut retried = due[0].clone();
        retried.attempts = 1;
        retried.next_attempt_at = 500;
        queue.reschedule(&retried).await.unwrap();
        assert_eq!(queue.due(100, 10, &[]).await.unwrap().len(), 1);
        queue
            .complete("b", &[event("destination", 0)])
            .await
            .unwrap();
        let stats = queue.stats(100).await.unwrap();
        assert_eq!(
            stats,
            QueueStats {
                depth: 3,
                oldest_age_ms: 100
            }
        );
    }

    #[tokio::test]
    async fn configs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAsyncStore::open(&dir.path().join("kappa.db")).unwrap();
        let config = EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            maximum_event_age_in_seconds: None,
            destinations: Default::default(),
            last_modified: 5,
        };
        store.put_config("f", "$LATEST", &config).await.unwrap();
        assert_eq!(
            store.get_config("f", "$LATEST").await.unwrap(),
            Some(config)
        );
        assert_eq!(store.list_configs("f").await.unwrap().len(), 1);
        store.delete_config("f", "$LATEST").await.unwrap();
        assert!(matches!(
            store.delete_config("f", "$LATEST").await,
            Err(StoreError::NotFound)
        ));
    }
}
