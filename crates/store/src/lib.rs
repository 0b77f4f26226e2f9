//! Kappa's embedded store: function records and logs in SQLite (WAL) and code packages as
//! content-addressed files, all under the data directory.

mod blobs;
mod connection;
mod migrations;
mod sqlite;
mod sqlite_async;
mod sqlite_logs;
mod sqlite_versions;

pub use blobs::FsCodeBlobs;
pub use connection::SqliteStoreError;
pub use sqlite::SqliteStore;
pub use sqlite_async::SqliteAsyncStore;
pub use sqlite_logs::SqliteLogStore;
