//! The control plane: the Lambda API's function operations over the store.

pub mod event_invoke_config;
pub mod requests;
mod service;
pub mod settings;

pub use service::{
    AccountLimits, AccountSettings, AliasConfiguration, AliasListPage, CreateAliasInput,
    FunctionListPage, FunctionService, FunctionWithCode, ProvisionedConcurrencyConfig,
    ProvisionedConcurrencyList, PublishVersionInput, PutProvisionedConcurrencyInput,
    RoutingConfigInput, UpdateAliasInput, VersionListPage, is_alias_name,
};
