//! One SQLite connection, opened in WAL mode with the schema migrated, whose calls run on
//! tokio's blocking pool. Each store (functions, logs, async queue) holds its own, so their
//! writes never queue behind each other inside the process.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappa_core::store::StoreError;
use rusqlite::Connection;

use crate::migrations;

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss; for everything acknowledged to callers.
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process; for batched logs.
    Normal,
}

#[derive(Debug, thiserror::Error)]
pub enum SqliteStoreError {
    #[error("opening the database")]
    Open(#[source] rusqlite::Error),
    #[error("migrating the schema")]
    Migrate(#[source] rusqlite::Error),
    #[error("sealing the environment variables stored in plaintext by an earlier release")]
    SealPlaintext(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Every sealed row failed to open: the key is not the one the data was written with.
    #[error(
        "the data key does not open the environment variables stored for {count} function(s), e.g. {example}: it is not the key this data directory was written with"
    )]
    WrongDataKey { count: usize, example: String },
}

#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    pub fn open(path: &Path, durability: Durability) -> Result<Self, SqliteStoreError> {
        let mut conn = Connection::open(path).map_err(SqliteStoreError::Open)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(SqliteStoreError::Open)?;
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(SqliteStoreError::Open)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(SqliteStoreError::Open)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(SqliteStoreError::Open)?;
        migrations::migrate(&mut conn).map_err(SqliteStoreError::Migrate)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on this thread; for work at open, before serving.
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, SqliteStoreError>,
    ) -> Result<T, SqliteStoreError> {
        // Called right after open: no other call can have panicked while holding the lock.
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Run `f` with the connection on the blocking pool.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| {
                StoreError::backend(std::io::Error::other("a store call panicked earlier"))
            })?;
            f(&mut guard)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

pub fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::backend(err)
}

/// A transaction holding the write lock from its start. One that reads first and writes later
/// fails at once with `SQLITE_BUSY` (no busy wait) when another connection, such as the log
/// writer's, committed in between.
pub fn write_transaction(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)
}
