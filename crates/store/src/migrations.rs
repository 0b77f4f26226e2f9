//! Versioned schema migrations, applied in order inside one transaction each.

use rusqlite::Connection;

/// Every migration, in order. A migration is never edited once released; add a new one instead.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_functions.sql")),
    (2, include_str!("../migrations/0002_logs.sql")),
    (3, include_str!("../migrations/0003_async.sql")),
    (6, include_str!("../migrations/0006_layers.sql")),
];

/// Bring the schema up to date; returns the number of migrations applied.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        [],
    )?;
    // Numbers are assigned to parallel branches ahead of time, so a database may hold a later
    // number without an earlier one: apply every migration not yet recorded, in order.
    let done: std::collections::BTreeSet<i64> = conn
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !done.contains(v)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, datetime('now'))",
            [version],
        )?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&mut conn).unwrap(), 0);
    }

    #[test]
    fn a_missing_earlier_migration_is_still_applied() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch("DROP TABLE event_invoke_configs; DROP TABLE async_events; DELETE FROM schema_migrations WHERE version = 3")
            .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'async_events'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }
}
