//! The control plane: the Lambda API's function operations over the store.

pub mod concurrency;
pub mod event_invoke_config;
pub mod requests;
mod service;
pub mod settings;

pub use service::{
    AccountLimits, AccountSettings, FunctionListPage, FunctionService, FunctionWithCode,
};
