//! Kappa's embedded store: function records in SQLite (WAL) and code packages as
//! content-addressed files, both under the data directory.

mod blobs;
mod migrations;
mod sqlite;

pub use blobs::FsCodeBlobs;
pub use sqlite::{SqliteStore, SqliteStoreError};
