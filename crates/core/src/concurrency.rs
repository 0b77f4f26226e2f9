//! The account's concurrency, in memory: reserved concurrency per function and the unreserved
//! pool the other functions share, checked on every invoke without a store read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::ServiceError;
use crate::store::StoreError;

/// Concurrency that must stay unreserved, for the functions without a reservation (accounts
/// whose whole limit is lower keep all of it unreserved, as AWS reports "[10]" or "[50]" there).
pub const MIN_UNRESERVED_CONCURRENCY: u32 = 100;

/// Why an invocation was throttled: the `Reason` of `TooManyRequestsException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's reserved concurrency is in use.
    Reserved,
    /// The unreserved pool (account limit minus every reservation) is in use.
    Unreserved,
}

impl Throttle {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Reserved => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Self::Unreserved => "ConcurrentInvocationLimitExceeded",
        }
    }
}

impl From<Throttle> for ServiceError {
    fn from(throttle: Throttle) -> Self {
        ServiceError::TooManyRequests {
            reason: throttle.reason(),
            message: "Rate Exceeded.".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    reserved: HashMap<String, u32>,
    total_reserved: u64,
    /// Invocations running under a function's reservation, by function.
    running_reserved: HashMap<String, u32>,
    running_unreserved: u64,
}

/// Reservations and running invocations. One per server, shared by the control plane and the
/// invoke path.
#[derive(Debug)]
pub struct ConcurrencyLimits {
    account_limit: u32,
    state: Mutex<State>,
    /// Held across a reservation change (check, store write, memory update) so that two
    /// changes cannot both pass the unreserved minimum, and a delete cannot interleave.
    changes: tokio::sync::Mutex<()>,
}

/// A running invocation's share of the concurrency; given back when dropped.
#[derive(Debug)]
pub struct ConcurrencySlot {
    limits: Arc<ConcurrencyLimits>,
    /// The function whose reservation it came from; `None` for the unreserved pool.
    reserved_for: Option<String>,
}

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        let mut state = self.limits.state();
        match self.reserved_for.take() {
            Some(function) => {
                if let Some(running) = state.running_reserved.get_mut(&function) {
                    *running = running.saturating_sub(1);
                    if *running == 0 {
                        state.running_reserved.remove(&function);
                    }
                }
            }
            None => state.running_unreserved = state.running_unreserved.saturating_sub(1),
        }
    }
}

impl ConcurrencyLimits {
    pub fn new(account_limit: u32) -> Self {
        Self {
            account_limit,
            state: Mutex::default(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic elsewhere: every update is a few integers.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn account_limit(&self) -> u32 {
        self.account_limit
    }

    /// What reservations must leave unreserved: 100, or the whole limit when it is lower.
    pub fn min_unreserved(&self) -> u32 {
        MIN_UNRESERVED_CONCURRENCY.min(self.account_limit)
    }

    /// Take a slot for one invocation of `function`, or say why not.
    pub fn try_admit(self: &Arc<Self>, function: &str) -> Result<ConcurrencySlot, Throttle> {
        let mut state = self.state();
        let reserved_for = match state.reserved.get(function).copied() {
            Some(reserved) => {
                let running = state.running_reserved.get(function).copied().unwrap_or(0);
                if running >= reserved {
                    return Err(Throttle::Reserved);
                }
                *state
                    .running_reserved
                    .entry(function.to_owned())
                    .or_default() += 1;
                Some(function.to_owned())
            }
            None => {
                let pool = u64::from(self.account_limit).saturating_sub(state.total_reserved);
                if state.running_unreserved >= pool {
                    return Err(Throttle::Unreserved);
                }
                state.running_unreserved += 1;
                None
            }
        };
        Ok(ConcurrencySlot {
            limits: Arc::clone(self),
            reserved_for,
        })
    }

    /// The reservation of `function`, if it has one.
    pub fn reserved(&self, function: &str) -> Option<u32> {
        self.state().reserved.get(function).copied()
    }

    /// `UnreservedConcurrentExecutions`: the account limit minus every reservation.
    pub fn unreserved(&self) -> u32 {
        let total = self.state().total_reserved;
        u32::try_from(u64::from(self.account_limit).saturating_sub(total)).unwrap_or(0)
    }

    /// What stays unreserved if `function`'s reservation becomes `reserved`.
    pub fn unreserved_if(&self, function: &str, reserved: u32) -> i64 {
        let state = self.state();
        let current = state.reserved.get(function).copied().unwrap_or(0);
        let others = state.total_reserved - u64::from(current);
        i64::from(self.account_limit)
            - i64::try_from(others).unwrap_or(i64::MAX)
            - i64::from(reserved)
    }

    /// Serialise reservation changes; hold the guard across check, store write and `set`.
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Set (`Some`) or remove (`None`) the reservation of `function`.
    pub fn set(&self, function: &str, reserved: Option<u32>) {
        let mut state = self.state();
        let previous = match reserved {
            Some(n) => state.reserved.insert(function.to_owned(), n),
            None => state.reserved.remove(function),
        };
        state.total_reserved = state.total_reserved - u64::from(previous.unwrap_or(0))
            + u64::from(reserved.unwrap_or(0));
    }
}

/// Durable reservations, by function name. A function's reservation goes with the function.
#[async_trait]
pub trait ReservedConcurrencyStore: Send + Sync + 'static {
    /// Set the reservation; `NotFound` if the function does not exist.
    async fn put_reserved(&self, function: &str, reserved: u32) -> Result<(), StoreError>;
    async fn delete_reserved(&self, function: &str) -> Result<(), StoreError>;
    /// Every reservation, to load at start.
    async fn list_reserved(&self) -> Result<Vec<(String, u32)>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_functions_use_their_reservation_and_the_others_share_the_rest() {
        let limits = Arc::new(ConcurrencyLimits::new(110));
        limits.set("r", Some(2));
        assert_eq!(limits.unreserved(), 108);
        let a = limits.try_admit("r").unwrap();
        let _b = limits.try_admit("r").unwrap();
        assert_eq!(limits.try_admit("r").unwrap_err(), Throttle::Reserved);
        drop(a);
        let _c = limits.try_admit("r").unwrap();

        let shared: Vec<_> = (0..108).map(|_| limits.try_admit("u").unwrap()).collect();
        assert_eq!(limits.try_admit("v").unwrap_err(), Throttle::Unreserved);
        // The reserved function does not draw from the shared pool.
        assert_eq!(limits.try_admit("r").unwrap_err(), Throttle::Reserved);
        drop(shared);
        assert!(limits.try_admit("v").is_ok());
    }

    #[test]
    fn zero_throttles_everything_and_changes_apply_to_running_slots() {
        let limits = Arc::new(ConcurrencyLimits::new(200));
        let running = limits.try_admit("f").unwrap();
        limits.set("f", Some(0));
        assert_eq!(limits.try_admit("f").unwrap_err(), Throttle::Reserved);
        // A slot taken before the reservation goes back to the pool it came from.
        drop(running);
        assert_eq!(limits.unreserved(), 200);
        limits.set("f", None);
        assert!(limits.try_admit("f").is_ok());
    }

    #[test]
    fn the_unreserved_minimum_is_computed_without_the_functions_own_reservation() {
        let limits = ConcurrencyLimits::new(110);
        limits.set("a", Some(5));
        assert_eq!(limits.unreserved_if("b", 5), 100);
        assert_eq!(limits.unreserved_if("b", 6), 99);
        assert_eq!(limits.unreserved_if("a", 10), 100);
        assert_eq!(limits.unreserved_if("a", 11), 99);
        limits.set("a", Some(10));
        assert_eq!(limits.unreserved(), 100);
        limits.set("a", None);
        assert_eq!(limits.unreserved(), 110);
        assert_eq!(limits.min_unreserved(), 100);
        assert_eq!(ConcurrencyLimits::new(10).min_unreserved(), 10);
    }
}
