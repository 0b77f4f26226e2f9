//! Kappa's execution environments and the synchronous invoke path.
//!
//! An environment is one runtime process started through `kappa __sandbox-init`, talking to its
//! own Runtime API listener; its stdout and stderr become the function's log stream. The
//! [`FunctionRuntime`] keeps idle environments per function version, starts new ones when all
//! are busy (up to the account's concurrency), and shuts idle ones down after the keep-alive.

mod async_invoke;
mod bootstraps;
mod code_cache;
mod environment;
pub mod ephemeral_storage;
mod invoker;
mod launch;
mod log_capture;
mod log_writer;
mod network_policy;
mod pool;
mod runtime_api;
mod sandbox_pool;
mod zygote;

pub use async_invoke::{AsyncSettings, Invocations};
pub use invoker::{FunctionRuntime, RuntimeSettings};
pub use kappa_sandbox::Isolation;
pub use network_policy::{NETWORK_VARIABLE, NetworkPolicy};
