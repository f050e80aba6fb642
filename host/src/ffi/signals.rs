//! Keeping wasmtime's trap handlers installed, and Redis's crash report working.
//!
//! wasmtime turns out-of-bounds guest accesses into traps with SIGSEGV/SIGBUS/SIGILL/SIGFPE
//! handlers installed when the engine is created; for faults outside wasm code it calls the
//! handler that was installed before it. Two things go wrong inside Redis (see the field notes):
//!
//! 1. `CONFIG SET crash-log-enabled` re-installs Redis's handler (or the default) over wasmtime's,
//!    and the next guest fault kills the server. Fix: after every config change, remember what
//!    Redis installed and put wasmtime's handlers back ([`after_config_change`]).
//! 2. A real host fault passed by wasmtime straight into Redis's crash reporter re-faults and
//!    loops. Fix: before the engine exists, install [`forward_to_redis`] as the "previous"
//!    handler. For a fault that is not in wasm code it restores Redis's own disposition and
//!    returns; the faulting instruction runs again and the fault reaches Redis directly, which
//!    prints its crash report and exits as usual.
//!
//! Everything here is async-signal-safe: the handler only reads atomics and calls `sigaction`.

use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// What Redis wants for each signal (updated after config changes).
static REDIS: [AtomicPtr<libc::sigaction>; 4] = [const { AtomicPtr::new(ptr::null_mut()) }; 4];
/// What wasmtime installed.
static WASMTIME: OnceLock<[libc::sigaction; 4]> = OnceLock::new();

fn slot(sig: libc::c_int) -> Option<usize> {
    SIGNALS.iter().position(|&s| s == sig)
}

fn current(sig: libc::c_int) -> libc::sigaction {
    // SAFETY: sigaction with a NULL new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, ptr::null(), &mut old);
        old
    }
}

/// Remembers Redis's current disposition of every signal. The boxes are leaked on purpose: the
/// signal handler may read an old one at any time.
fn save_redis_dispositions() {
    for (i, &sig) in SIGNALS.iter().enumerate() {
        let action = Box::into_raw(Box::new(current(sig)));
        REDIS[i].store(action, Ordering::SeqCst);
    }
}

extern "C" fn forward_to_redis(
    sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let Some(i) = slot(sig) else { return };
    let redis = REDIS[i].load(Ordering::SeqCst);
    // SAFETY: `redis` is null or a leaked, never-freed sigaction; sigaction is async-signal-safe.
    unsafe {
        if redis.is_null() {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, ptr::null_mut());
        } else {
            libc::sigaction(sig, redis, ptr::null_mut());
        }
    }
    // Returning re-executes the faulting instruction, now under Redis's own handler.
}

/// Call before creating the wasmtime engine.
pub fn before_engine() {
    save_redis_dispositions();
    for &sig in &SIGNALS {
        // SAFETY: installs a handler that is async-signal-safe (see `forward_to_redis`).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                forward_to_redis;
            action.sa_sigaction = handler as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, ptr::null_mut());
        }
    }
}

/// Call after creating the engine: remembers wasmtime's handlers.
pub fn after_engine() {
    let _ = WASMTIME.set(SIGNALS.map(current));
}

/// Call after any config change: whatever Redis installed becomes the fault target for host
/// faults, and wasmtime's handlers go back in front.
pub fn after_config_change() {
    let Some(wasmtime) = WASMTIME.get() else {
        return;
    };
    for (i, &sig) in SIGNALS.iter().enumerate() {
        let now = current(sig);
        if now.sa_sigaction != wasmtime[i].sa_sigaction {
            REDIS[i].store(Box::into_raw(Box::new(now)), Ordering::SeqCst);
            // SAFETY: re-installs exactly the action wasmtime installed itself.
            unsafe { libc::sigaction(sig, &wasmtime[i], ptr::null_mut()) };
        }
    }
}
