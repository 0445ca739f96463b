//! Readiness: whether this instance is doing its job, for `/readyz` (a Kubernetes readiness
//! probe, a load balancer, a rolling deploy waiting for the new pod).
//!
//! Liveness (`/healthz`) only says the process answers; readiness says it detects storms on
//! current data: it has partitions assigned, it has read them to their end (a restarted
//! instance replaying its window is not yet up to date), its consumer lag is acceptable, and it
//! can write its alerts and DLQ records (a permanent producer error holds offsets back until
//! a restart), and is not shutting down. Each condition is one atomic flag set by the service loop and read by
//! the HTTP handler: no lock between the consumer and the probe.

use std::sync::atomic::{AtomicBool, Ordering};

/// The readiness conditions. Starts not ready (no partitions assigned, not caught up); the lag
/// is taken as acceptable until the consumer reports otherwise.
#[derive(Debug)]
pub struct Readiness {
    assigned: AtomicBool,
    caught_up: AtomicBool,
    lag_ok: AtomicBool,
    output_failed: AtomicBool,
    shutting_down: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready: nothing assigned, not caught up.
    pub const fn new() -> Self {
        Self {
            assigned: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            lag_ok: AtomicBool::new(true),
            output_failed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Whether the consumer has partitions of the input topic assigned.
    pub fn set_assigned(&self, assigned: bool) {
        self.assigned.store(assigned, Ordering::Relaxed);
    }

    /// Whether every assigned partition has been read to its end.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// Whether the consumer lag is within what the service accepts.
    pub fn set_lag_ok(&self, lag_ok: bool) {
        self.lag_ok.store(lag_ok, Ordering::Relaxed);
    }

    /// The alerts or DLQ topic refused a record for good: not ready until a restart (offsets
    /// are held at that record, so the restart makes its alert again).
    pub fn set_output_failed(&self) {
        self.output_failed.store(true, Ordering::Relaxed);
    }

    /// Marks the instance as shutting down: not ready from now on, so traffic and rollouts move
    /// on while it drains. `serve` calls this when its shutdown signal fires.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Ready, or the first reason it is not (the text `/readyz` answers with).
    pub fn check(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if !self.assigned.load(Ordering::Relaxed) {
            Err("no partitions assigned")
        } else if !self.caught_up.load(Ordering::Relaxed) {
            Err("catching up")
        } else if !self.lag_ok.load(Ordering::Relaxed) {
            Err("consumer lag too high")
        } else if self.output_failed.load(Ordering::Relaxed) {
            Err("a record could not be written to the alerts or DLQ topic; offsets held until restart")
        } else {
            Ok(())
        }
    }

    /// Whether every condition holds.
    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_is_needed_and_named() {
        let readiness = Readiness::new();
        assert_eq!(readiness.check(), Err("no partitions assigned"));
        readiness.set_assigned(true);
        assert_eq!(readiness.check(), Err("catching up"));
        readiness.set_caught_up(true);
        assert!(readiness.is_ready());
        readiness.set_lag_ok(false);
        assert_eq!(readiness.check(), Err("consumer lag too high"));
        readiness.set_lag_ok(true);
        assert_eq!(readiness.check(), Ok(()));
        readiness.set_output_failed();
        assert!(readiness
            .check()
            .is_err_and(|reason| reason.contains("offsets held")));
        readiness.set_shutting_down();
        assert_eq!(readiness.check(), Err("shutting down"));
        readiness.set_caught_up(true);
        assert!(!readiness.is_ready(), "shutting down is final");
    }
}
