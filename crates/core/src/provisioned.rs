//! Provisioned concurrency shared between the control plane and the runtime: the configs in
//! force (a copy of the store's, refreshed on every change) and what the runtime has allocated.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use tokio::sync::Notify;

use crate::version_store::ProvisionedConcurrencyRecord;

/// `(function, qualifier)`.
pub type ConfigKey = (String, String);

/// What the runtime reports for one config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Environments initialized and kept for the config.
    pub allocated: u32,
    /// Why allocation failed (an environment's init failed); the config then stays `FAILED`
    /// until it is put again.
    pub failure: Option<String>,
    /// [`config_generation`] of the config this allocation is for.
    pub for_config: String,
}

/// Identifies one Put of a config: a new Put (even within the same second) starts allocation over.
pub fn config_generation(config: &ProvisionedConcurrencyRecord) -> String {
    format!("{}#{}", config.last_modified, config.requested)
}

#[derive(Debug, Default)]
pub struct ProvisionedRegistry {
    configs: RwLock<Option<BTreeMap<ConfigKey, ProvisionedConcurrencyRecord>>>,
    allocations: RwLock<HashMap<ConfigKey, Allocation>>,
    /// Woken on every change of configs, versions or aliases, so allocation starts at once.
    changed: Notify,
}

impl ProvisionedRegistry {
    /// The configs in force; `None` until first loaded from the store.
    pub fn configs(&self) -> Option<Vec<ProvisionedConcurrencyRecord>> {
        self.configs
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|m| m.values().cloned().collect()))
    }

    /// Replace the configs in force. Does not wake the runtime's keeper: it reloads them itself
    /// on every pass, and a wake-up from its own reload would make it loop without pause.
    pub fn replace_configs(&self, configs: Vec<ProvisionedConcurrencyRecord>) {
        let map = configs
            .into_iter()
            .map(|c| ((c.function_name.clone(), c.qualifier.clone()), c))
            .collect::<BTreeMap<_, _>>();
        if let Ok(mut allocations) = self.allocations.write() {
            allocations.retain(|key, _| map.contains_key(key));
        }
        if let Ok(mut configs) = self.configs.write() {
            *configs = Some(map);
        }
    }

    pub fn allocation(&self, key: &ConfigKey) -> Allocation {
        self.allocations
            .read()
            .ok()
            .and_then(|a| a.get(key).cloned())
            .unwrap_or_default()
    }

    pub fn set_allocation(&self, key: ConfigKey, allocation: Allocation) {
        if let Ok(mut allocations) = self.allocations.write() {
            allocations.insert(key, allocation);
        }
    }

    pub fn notify_changed(&self) {
        self.changed.notify_one();
    }

    /// Wait for the next change.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
