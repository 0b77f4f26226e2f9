//! Function logs in SQLite: groups, streams and events, in the same database file as the
//! functions but on a connection of their own so log writes never wait behind the control plane.

use std::path::Path;

use async_trait::async_trait;
use kappa_core::logs::{LogBatch, LogGroupInfo, LogQuery, LogStore, LogStreamInfo, StoredLogEvent};
use kappa_core::store::StoreError;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::connection::{Database, Durability, SqliteStoreError, backend};

#[derive(Clone, Debug)]
pub struct SqliteLogStore {
    db: Database,
}

impl SqliteLogStore {
    pub fn open(path: &Path) -> Result<Self, SqliteStoreError> {
        Ok(Self {
            db: Database::open(path, Durability::Normal)?,
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn group_exists(conn: &Connection, group: &str) -> Result<bool, StoreError> {
    conn.query_row("SELECT 1 FROM log_groups WHERE name = ?1", [group], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_some())
    .map_err(backend)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl LogStore for SqliteLogStore {
    async fn append(&self, batches: &[LogBatch]) -> Result<(), StoreError> {
        let batches = batches.to_vec();
        self.db.with_conn(move |conn| {
            let now = now_ms();
            let tx = conn.transaction().map_err(backend)?;
            for batch in &batches {
                // Cached statements: every batch of every flush runs these same three.
                tx.prepare_cached(
                    "INSERT INTO log_groups (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                )
                .and_then(|mut insert| insert.execute(params![batch.group, now]))
                .map_err(backend)?;
                tx.prepare_cached(
                    "INSERT INTO log_streams (log_group, name, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (log_group, name) DO NOTHING",
                )
                .and_then(|mut insert| insert.execute(params![batch.group, batch.stream, now]))
                .map_err(backend)?;
                let mut bytes = 0i64;
                let (mut first, mut last) = (i64::MAX, i64::MIN);
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO log_events (log_group, stream, timestamp, ingestion_time, message)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(backend)?;
                    for event in &batch.events {
                        insert
                            .execute(params![batch.group, batch.stream, event.timestamp, now, event.message])
                            .map_err(backend)?;
                        bytes += i64::try_from(event.message.len()).unwrap_or(0);
                        first = first.min(event.timestamp);
                        last = last.max(event.timestamp);
                    }
                }
                if !batch.events.is_empty() {
                    tx.prepare_cached(
                        "UPDATE log_streams SET
                            first_event = COALESCE(MIN(first_event, ?3), ?3),
                            last_event = COALESCE(MAX(last_event, ?4), ?4),
                            last_ingestion = ?5,
                            stored_bytes = stored_bytes + ?6
                         WHERE log_group = ?1 AND name = ?2",
                    )
                    .and_then(|mut update| {
                        update.execute(params![batch.group, batch.stream, first, last, now, bytes])
                    })
                    .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn create_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.db.with_conn(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO log_groups (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    params![group, now_ms()],
                )
                .map_err(backend)?;
            if inserted == 0 { Err(StoreError::AlreadyExists) } else { Ok(()) }
        })
        .await
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.db
            .with_conn(move |conn| {
                let tx = conn.transaction().map_err(backend)?;
                if !group_exists(&tx, &group)? {
                    return Err(StoreError::NotFound);
                }
                tx.execute("DELETE FROM log_events WHERE log_group = ?1", [&group])
                    .map_err(backend)?;
                tx.execute("DELETE FROM log_streams WHERE log_group = ?1", [&group])
                    .map_err(backend)?;
                tx.execute("DELETE FROM log_groups WHERE name = ?1", [&group])
                    .map_err(backend)?;
                tx.commit().map_err(backend)
            })
            .await
    }

    async fn set_retention(&self, group: &str, days: Option<i64>) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.db
            .with_conn(move |conn| {
                let updated = conn
                    .execute(
                        "UPDATE log_groups SET retention_days = ?2 WHERE name = ?1",
                        params![group, days],
                    )
                    .map_err(backend)?;
                if updated == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn groups(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogGroupInfo>, StoreError> {
        let prefix = prefix.unwrap_or("").to_owned();
        let after = after.unwrap_or("").to_owned();
        self.db.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT g.name, g.created_at, g.retention_days,
                            COALESCE((SELECT SUM(stored_bytes) FROM log_streams s WHERE s.log_group = g.name), 0)
                     FROM log_groups g
                     WHERE g.name > ?1 AND substr(g.name, 1, length(?2)) = ?2
                     ORDER BY g.name LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map(params![after, prefix, sql_limit(limit)], |row| {
                    Ok(LogGroupInfo {
                        log_group_name: row.get(0)?,
                        creation_time: row.get(1)?,
                        retention_in_days: row.get(2)?,
                        stored_bytes: row.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn streams(&self, group: &str) -> Result<Option<Vec<LogStreamInfo>>, StoreError> {
        let group = group.to_owned();
        self.db
            .with_conn(move |conn| {
                if !group_exists(conn, &group)? {
                    return Ok(None);
                }
                let mut statement = conn
                .prepare_cached(
                    "SELECT name, created_at, first_event, last_event, last_ingestion, stored_bytes
                     FROM log_streams WHERE log_group = ?1 ORDER BY name",
                )
                .map_err(backend)?;
                let rows = statement
                    .query_map([&group], |row| {
                        Ok(LogStreamInfo {
                            log_stream_name: row.get(0)?,
                            creation_time: row.get(1)?,
                            first_event_timestamp: row.get(2)?,
                            last_event_timestamp: row.get(3)?,
                            last_ingestion_time: row.get(4)?,
                            stored_bytes: row.get(5)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map(Some)
                    .map_err(backend)
            })
            .await
    }

    async fn events(&self, query: &LogQuery) -> Result<Option<Vec<StoredLogEvent>>, StoreError> {
        let query = query.clone();
        self.db.with_conn(move |conn| {
            if !group_exists(conn, &query.group)? {
                return Ok(None);
            }
            let mut sql = String::from(
                "SELECT id, stream, timestamp, ingestion_time, message FROM log_events WHERE log_group = ?",
            );
            let mut values: Vec<rusqlite::types::Value> = vec![query.group.clone().into()];
            if !query.streams.is_empty() {
                sql.push_str(&format!(" AND stream IN ({})", vec!["?"; query.streams.len()].join(",")));
                values.extend(query.streams.iter().cloned().map(Into::into));
            }
            if let Some(prefix) = &query.stream_prefix {
                sql.push_str(" AND substr(stream, 1, length(?)) = ?");
                values.push(prefix.clone().into());
                values.push(prefix.clone().into());
            }
            if let Some(start) = query.start_time {
                sql.push_str(" AND timestamp >= ?");
                values.push(start.into());
            }
            if let Some(end) = query.end_time {
                sql.push_str(" AND timestamp < ?");
                values.push(end.into());
            }
            if let Some(after) = query.after_id {
                sql.push_str(" AND id > ?");
                values.push(after.into());
            }
            if let Some(before) = query.before_id {
                sql.push_str(" AND id < ?");
                values.push(before.into());
            }
            sql.push_str(if query.newest_first { " ORDER BY id DESC" } else { " ORDER BY id" });
            sql.push_str(" LIMIT ?");
            values.push(sql_limit(query.limit).into());
            let mut statement = conn.prepare(&sql).map_err(backend)?;
            let rows = statement
                .query_map(params_from_iter(values), |row| {
                    Ok(StoredLogEvent {
                        id: row.get(0)?,
                        stream: row.get(1)?,
                        timestamp: row.get(2)?,
                        ingestion_time: row.get(3)?,
                        message: row.get(4)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map(Some).map_err(backend)
        })
        .await
    }

    async fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.db.with_conn(move |conn| {
            let removed = conn
                .execute(
                    "DELETE FROM log_events WHERE id IN (
                        SELECT e.id FROM log_events e JOIN log_groups g ON g.name = e.log_group
                        WHERE g.retention_days IS NOT NULL AND e.timestamp < ?1 - g.retention_days * 86400000)",
                    [now_ms],
                )
                .map_err(backend)?;
            Ok(u64::try_from(removed).unwrap_or(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::logs::LogEvent;

    fn batch(stream: &str, messages: &[(i64, &str)]) -> LogBatch {
        LogBatch {
            group: "/aws/lambda/f".into(),
            stream: stream.into(),
            events: messages
                .iter()
                .map(|(t, m)| LogEvent {
                    timestamp: *t,
                    message: (*m).into(),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn append_then_query_groups_streams_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLogStore::open(&dir.path().join("kappa.db")).unwrap();
        store
            .append(&[
                batch("s1", &[(1, "a\n"), (2, "b\n")]),
                batch("s2", &[(3, "c\n")]),
            ])
            .await
            .unwrap();
        let groups = store.groups(Some("/aws/lambda/"), None, 50).await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].stored_bytes, 6);
        let streams = store.streams("/aws/lambda/f").await.unwrap().unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(
            (
                streams[0].first_event_timestamp,
                streams[0].last_event_timestamp
            ),
            (Some(1), Some(2))
        );
        let query = LogQuery {
            group: "/aws/lambda/f".into(),
            streams: vec!["s1".into()],
            limit: 10,
            ..LogQuery::default()
        };
        let events = store.events(&query).await.unwrap().unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
            ["a\n", "b\n"]
        );
        assert!(
            store
                .events(&LogQuery {
                    group: "/nope".into(),
                    limit: 1,
                    ..LogQuery::default()
                })
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn retention_expires_old_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLogStore::open(&dir.path().join("kappa.db")).unwrap();
        let day = 86_400_000;
        store
            .append(&[batch("s", &[(0, "old\n"), (10 * day, "new\n")])])
            .await
            .unwrap();
        store.set_retention("/aws/lambda/f", Some(1)).await.unwrap();
        assert_eq!(store.expire(10 * day + 1).await.unwrap(), 1);
        assert!(matches!(
            store.set_retention("/nope", Some(1)).await,
            Err(StoreError::NotFound)
        ));
    }
}
