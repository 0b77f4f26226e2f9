//! Versioned schema migrations, applied in order inside one transaction each.

use rusqlite::{Connection, OptionalExtension};

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
];

/// Bring the schema up to date; returns the number of migrations applied.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        [],
    )?;
    let current: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
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
}
