//! Memory limits: per guest (`wasm.max-memory`) and across all guests (`wasm.max-total-memory`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

use crate::config;

/// Linear memory of all guest instances, in bytes.
pub static TOTAL_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// Most table elements, instances and memories one guest may have.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The limiter of one store. Refused growth makes `memory.grow` fail inside the guest (the Rust
/// allocator then aborts); the refusal is remembered to explain the trap.
pub struct GuestLimiter {
    used: usize,
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
        Ok(true)
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
