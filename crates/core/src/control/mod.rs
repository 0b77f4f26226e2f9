//! The control plane: the Lambda API's function operations over the store.

pub mod concurrency;
pub mod event_invoke_config;
mod layer_policy;
pub mod layer_requests;
mod layers;
pub mod requests;
mod service;
pub mod settings;

pub use layer_policy::{AddedLayerPermission, LayerPolicyText};
pub use layers::{LayerListPage, LayerVersionListPage};
pub use service::{
    AccountLimits, AccountSettings, AliasConfiguration, AliasListPage, CreateAliasInput,
    FunctionListPage, FunctionService, FunctionWithCode, ProvisionedConcurrencyConfig,
    ProvisionedConcurrencyList, PublishVersionInput, PutProvisionedConcurrencyInput,
    RoutingConfigInput, UpdateAliasInput, VersionListPage, is_alias_name,
};
