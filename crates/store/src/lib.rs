//! Kappa's embedded store: function records and logs in SQLite (WAL) and code packages as
//! content-addressed files, all under the data directory. Environment variables are sealed
//! with the data key before they reach SQLite (`sealed.rs`).

mod blobs;
mod connection;
mod data_key;
mod migrations;
mod sealed;
mod sqlite;
mod sqlite_async;
mod sqlite_concurrency;
mod sqlite_layers;
mod sqlite_logs;
mod sqlite_sealing;
mod sqlite_versions;

pub use blobs::FsCodeBlobs;
pub use connection::SqliteStoreError;
pub use data_key::{DataKey, DataKeyError};
pub use sealed::{SealError, Sealer};
pub use sqlite::SqliteStore;
pub use sqlite_async::SqliteAsyncStore;
pub use sqlite_logs::SqliteLogStore;
