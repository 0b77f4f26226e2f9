//! Which network each function's environments get.

use kappa_core::function::FunctionVersion;
use kappa_sandbox::SandboxNetwork;

/// The function variable through which a function asks for the host's network, where the
/// server allows functions to choose (`--function-network per-function`).
pub const NETWORK_VARIABLE: &str = "KAPPA_NETWORK";

/// The server's rule for functions' networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Every function: its own network namespace with only loopback.
    Isolated,
    /// Every function: the host's network.
    Host,
    /// Isolated, unless the function's configuration sets `KAPPA_NETWORK=host`.
    PerFunction,
}

impl NetworkPolicy {
    /// The network of functions that do not choose (what pooled sandboxes are prepared with).
    pub fn default_network(self) -> SandboxNetwork {
        match self {
            Self::Host => SandboxNetwork::Host,
            Self::Isolated | Self::PerFunction => SandboxNetwork::Isolated,
        }
    }

    /// The network of `version`'s environments. A published version keeps the choice it was
    /// published with; changing it on `$LATEST` changes the revision, so running environments
    /// are replaced.
    pub fn for_function(self, version: &FunctionVersion) -> SandboxNetwork {
        let asks_for_host = version
            .settings
            .environment
            .as_ref()
            .and_then(|variables| variables.get(NETWORK_VARIABLE))
            .is_some_and(|value| value.eq_ignore_ascii_case("host"));
        match self {
            Self::PerFunction if asks_for_host => SandboxNetwork::Host,
            other => other.default_network(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(network: Option<&str>) -> FunctionVersion {
        let environment = network.map(|value| {
            std::collections::BTreeMap::from([(NETWORK_VARIABLE.to_owned(), value.to_owned())])
        });
        let mut version = crate::launch::tests::sample_version();
        version.settings.environment = environment;
        version
    }

    #[test]
    fn functions_choose_only_where_the_server_lets_them() {
        let host = version(Some("host"));
        let plain = version(None);
        assert_eq!(
            NetworkPolicy::PerFunction.for_function(&host),
            SandboxNetwork::Host
        );
        assert_eq!(
            NetworkPolicy::PerFunction.for_function(&plain),
            SandboxNetwork::Isolated
        );
        assert_eq!(
            NetworkPolicy::PerFunction.for_function(&version(Some("isolated"))),
            SandboxNetwork::Isolated
        );
        assert_eq!(
            NetworkPolicy::Isolated.for_function(&host),
            SandboxNetwork::Isolated
        );
        assert_eq!(
            NetworkPolicy::Host.for_function(&plain),
            SandboxNetwork::Host
        );
    }
}
