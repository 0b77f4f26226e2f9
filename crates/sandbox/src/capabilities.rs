//! Dropping every capability before the runtime starts, so that even a root runtime cannot
//! regain one across `execve` (the bounding set is emptied, which is what decides what root gets
//! on exec) and holds none while it runs.

use caps::{CapSet, Capability};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("dropping capability {capability} from the {set} set: {reason}")]
pub struct CapabilityError {
    capability: String,
    set: &'static str,
    reason: String,
}

/// Empty the bounding, ambient and inheritable sets. The permitted and effective sets are
/// recomputed from them by `execve`, so the runtime starts with none.
pub fn drop_all_capabilities() -> Result<(), CapabilityError> {
    for capability in caps::all() {
        if let Err(err) = caps::drop(None, CapSet::Bounding, capability) {
            return Err(failure(capability, "bounding", &err));
        }
    }
    for (set, name) in [
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
    ] {
        caps::clear(None, set).map_err(|err| CapabilityError {
            capability: "all".to_owned(),
            set: name,
            reason: err.to_string(),
        })?;
    }
    Ok(())
}

fn failure(
    capability: Capability,
    set: &'static str,
    err: &caps::errors::CapsError,
) -> CapabilityError {
    CapabilityError {
        capability: capability.to_string(),
        set,
        reason: err.to_string(),
    }
}
