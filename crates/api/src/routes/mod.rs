//! HTTP routes: each handler parses the request into a command, calls the core, and shapes the
//! answer. No business logic lives here.

pub mod account;
pub mod code;
pub mod concurrency;
pub mod event_invoke_config;
pub mod functions;
pub mod invoke;
pub mod layers;
pub mod logs;
pub mod provisioned;
pub mod tags;
pub mod versions;
