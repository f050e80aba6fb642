//! Memory limits: per guest instance (`wasm.max-memory`) and across all instances
//! (`wasm.max-total-memory`), counting linear memories and tables.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

use crate::config;

/// Linear memory and tables of all guest instances, in bytes.
pub static TOTAL_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// wasmtime's messages for a growth it refused before asking the limiter, which it reports as
/// failed all the same: past what a memory's index type can address, a table size that
/// overflows (wasmtime is pinned to one version; `a_failed_growth_past_a_declared_maximum_is_not_counted`
/// covers the growth that fails after approval).
const MEMORY_REFUSED_BEFORE_ASKING: &str = "memory growth exceeds memory type's limits";
const TABLE_REFUSED_BEFORE_ASKING: &str = "overflow calculating new table size";

/// What the limits count for one table element (a function reference is a pointer).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Most elements one table may have.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The limiter of one store. Refused growth makes `memory.grow` fail inside the guest (the Rust
/// allocator then aborts); the refusal is remembered to explain the trap.
pub struct GuestLimiter {
    used: usize,
    /// The growth approved last: wasmtime may still fail it (past a memory's or table's own
    /// declared maximum, or the system refusing), and then it is given back.
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

impl GuestLimiter {
    /// Judges `more` bytes of growth of a memory or a table: against `wasm.max-memory` for the
    /// whole instance (all its memories and tables), and `wasm.max-total-memory` for all
    /// instances.
    fn grow(&mut self, more: usize) -> bool {
        let instance = self.used.saturating_add(more);
        let limit = config::get_usize(&config::MAX_MEMORY);
        if instance > limit && !self.unlimited {
            self.refused = Some(format!(
                "wasm.max-memory ({limit} bytes) refused growing to {instance} bytes"
            ));
            return false;
        }
        let total = TOTAL_MEMORY.fetch_add(more, Ordering::SeqCst) + more;
        let total_limit = config::get_usize(&config::MAX_TOTAL_MEMORY);
        if total > total_limit && !self.unlimited {
            TOTAL_MEMORY.fetch_sub(more, Ordering::SeqCst);
            self.refused = Some(format!(
                "wasm.max-total-memory ({total_limit} bytes) refused: all instances would use \
                 {total} bytes, this one {instance}"
            ));
            return false;
        }
        self.used = instance;
        self.memory.fetch_add(more, Ordering::Relaxed);
        self.approved = more;
        true
    }

    /// Gives back the growth approved last, which wasmtime then failed (`error`), unless
    /// wasmtime failed it before asking (`refused_before_asking`: nothing was approved).
    fn grow_failed(&mut self, error: &wasmtime::Error, refused_before_asking: &str) {
        if error.to_string() != refused_before_asking {
            let more = std::mem::take(&mut self.approved);
            self.used -= more;
            TOTAL_MEMORY.fetch_sub(more, Ordering::SeqCst);
            self.memory.fetch_sub(more, Ordering::Relaxed);
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
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed(&error, MEMORY_REFUSED_BEFORE_ASKING);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let more = desired.saturating_sub(current) * TABLE_ELEMENT_BYTES;
        Ok(self.grow(more))
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed(&error, TABLE_REFUSED_BEFORE_ASKING);
        Ok(())
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
