//! Versioned schema migrations, applied in order inside one transaction each.

use rusqlite::Connection;

/// Every migration, in order. A migration is never edited once released; add a new one instead.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_functions.sql")),
    (2, include_str!("../migrations/0002_logs.sql")),
    (3, include_str!("../migrations/0003_async.sql")),
    (4, include_str!("../migrations/0004_versions_aliases.sql")),
    (
        5,
        include_str!("../migrations/0005_provisioned_concurrency.sql"),
    ),
    (6, include_str!("../migrations/0006_layers.sql")),
    (
        7,
        include_str!("../migrations/0007_reserved_concurrency.sql"),
    ),
];

/// Bring the schema up to date; returns the number of migrations applied.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    migrate_with(conn, MIGRATIONS)
}

/// Apply every migration of `migrations` not yet recorded, in order. Numbers are handed out to
/// parallel branches, so a data directory may hold a higher one (7) without a lower one (4)
/// that a later merge adds: every missing number is applied, not only those above the highest.
fn migrate_with(conn: &mut Connection, migrations: &[(i64, &str)]) -> rusqlite::Result<usize> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        [],
    )?;
    let done: std::collections::BTreeSet<i64> = {
        let mut statement = conn.prepare("SELECT version FROM schema_migrations")?;
        let rows = statement.query_map([], |row| row.get::<_, i64>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut applied = 0;
    for (version, sql) in migrations.iter().filter(|(v, _)| !done.contains(v)) {
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

    #[test]
    fn a_lower_number_added_later_is_still_applied() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first: &[(i64, &str)] = &[
            (1, "CREATE TABLE a (x INTEGER);"),
            (7, "CREATE TABLE g (x INTEGER);"),
        ];
        assert_eq!(migrate_with(&mut conn, first).unwrap(), 2);
        let merged: &[(i64, &str)] = &[
            (1, "CREATE TABLE a (x INTEGER);"),
            (4, "CREATE TABLE d (x INTEGER);"),
            (7, "CREATE TABLE g (x INTEGER);"),
        ];
        assert_eq!(migrate_with(&mut conn, merged).unwrap(), 1);
        conn.execute("INSERT INTO d (x) VALUES (1)", []).unwrap();
        assert_eq!(migrate_with(&mut conn, merged).unwrap(), 0);
    }
}
