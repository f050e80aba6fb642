//! Memory limits: per guest (`wasm.max-memory`) and across all guests (`wasm.max-total-memory`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

use crate::config;

/// Linear memory of all guest instances, in bytes.
pub static TOTAL_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// wasmtime's message for a growth its memory type cannot address, which it reports to
/// `memory_grow_failed` without having called `memory_growing` (wasmtime is pinned to one
/// version; `a_failed_growth_past_a_declared_maximum_is_not_counted` covers the other case).
const GROWTH_REFUSED_BEFORE_ASKING: &str = "memory growth exceeds memory type's limits";

/// Most table elements, instances and memories one guest may have.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The limiter of one store. Refused growth makes `memory.grow` fail inside the guest (the Rust
/// allocator then aborts); the refusal is remembered to explain the trap.
pub struct GuestLimiter {
    used: usize,
    /// The growth `memory_growing` approved last: wasmtime may still fail it (past the memory's
    /// own declared maximum, or the system refusing), and then it is given back.
    approved: usize,
    /// Shared with the guest's stats, for INFO and WASM.LIST.
    pub memory: Arc<AtomicUsize>,
    /// Why the guest's last growth was refused: the limit, and the sizes it judged.
    pub refused: Option<String>,
    /// Growth is counted but not refused: the running work is replayed from the master or the
    /// AOF (see `ctx_flags::replayed`), which must not fail where the master's succeeded.
    pub unlimited: bool,
}

impl GuestLimiter {
    pub fn new(memory: Arc<AtomicUsize>) -> Self {
        GuestLimiter {
            used: 0,
            approved: 0,
            memory,
            refused: None,
            unlimited: false,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = config::get_usize(&config::MAX_MEMORY);
        if desired > limit && !self.unlimited {
            self.refused = Some(format!(
                "wasm.max-memory ({limit} bytes) refused growing to {desired} bytes"
            ));
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        let total = TOTAL_MEMORY.fetch_add(more, Ordering::SeqCst) + more;
        let total_limit = config::get_usize(&config::MAX_TOTAL_MEMORY);
        if total > total_limit && !self.unlimited {
            TOTAL_MEMORY.fetch_sub(more, Ordering::SeqCst);
            self.refused = Some(format!(
                "wasm.max-total-memory ({total_limit} bytes) refused growing to {desired} \
                 bytes: all instances would use {total} bytes"
            ));
            return Ok(false);
        }
        self.used += more;
        self.memory.fetch_add(more, Ordering::Relaxed);
        self.approved = more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // wasmtime also reports a growth it refused before asking `memory_growing` (past what
        // the memory's index type can address); nothing was approved for that one.
        if error.to_string() != GROWTH_REFUSED_BEFORE_ASKING {
            let more = std::mem::take(&mut self.approved);
            self.used -= more;
            TOTAL_MEMORY.fetch_sub(more, Ordering::SeqCst);
            self.memory.fetch_sub(more, Ordering::Relaxed);
        }
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

impl Drop for GuestLimiter {
    fn drop(&mut self) {
        TOTAL_MEMORY.fetch_sub(self.used, Ordering::SeqCst);
        self.memory.fetch_sub(self.used, Ordering::Relaxed);
    }
}
