//! Kappa's core: the domain of functions and the control-plane operations, free of HTTP and of
//! any particular database.

pub mod async_queue;
pub mod code_package;
pub mod concurrency;
pub mod control;
pub mod error;
pub mod function;
pub mod invoke;
pub mod layer;
pub mod layer_store;
pub mod logs;
pub mod logs_service;
pub mod names;
pub mod provisioned;
pub mod runtime;
pub mod store;
pub mod version_store;

pub use error::ServiceError;
