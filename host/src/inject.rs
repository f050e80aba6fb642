//! Fault injection for tests: `WASM.DEBUG PANIC <site>` makes the next run of that site panic,
//! to prove every entry point and host function turns a host bug into an error reply. Only
//! available with `wasm.enable-debug 1` (off by default).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Whether a panic is armed (checked first, so the common path is one relaxed load).
static ARMED: AtomicBool = AtomicBool::new(false);
static SITE: Mutex<String> = Mutex::new(String::new());

/// Sites that can be armed: entry points are named as in `ffi::catch`, guest-facing host
/// functions as `host-function`.
pub const SITES: &[&str] = &[
    "host-function",
    "wasm.list",
    "wasm.invoke-readonly",
    "wasm.invoke-write",
    "the command filter",
    "a key scan",
    "INFO",
    "the config change event",
    "saving guests to the RDB",
];

/// Sites that run in a forked child (a `BGSAVE`'s, a full sync's): the child's disarming does not
/// reach the server, which disarms them when it forks instead.
const FORKED_SITES: &[&str] = &["saving guests to the RDB"];

pub fn arm(site: &str) {
    *lock_site() = site.to_owned();
    ARMED.store(true, Ordering::SeqCst);
    if FORKED_SITES.contains(&site) {
        static FORK_HANDLER: std::sync::Once = std::sync::Once::new();
        FORK_HANDLER.call_once(|| {
            // SAFETY: registers functions of this library, which stays loaded (the host
            // refuses MODULE UNLOAD), to run on the forking thread around each fork.
            unsafe {
                libc::pthread_atfork(
                    Some(lock_before_fork),
                    Some(disarm_forked_sites),
                    Some(unlock_in_child),
                )
            };
        });
    }
}

thread_local! {
    /// The site's lock, held by the forking thread across a fork: another thread holding it at
    /// the fork (checking its own site) would leave it locked for ever in the child.
    static HELD_ACROSS_FORK: std::cell::RefCell<Option<MutexGuard<'static, String>>> =
        const { std::cell::RefCell::new(None) };
}

fn lock_site() -> MutexGuard<'static, String> {
    SITE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

extern "C" fn lock_before_fork() {
    let _ = std::panic::catch_unwind(|| {
        let guard = lock_site();
        HELD_ACROSS_FORK.with_borrow_mut(|held| *held = Some(guard));
    });
}

/// In the server, after a fork: the child has the armed site now.
extern "C" fn disarm_forked_sites() {
    let _ = std::panic::catch_unwind(|| {
        let mut armed = HELD_ACROSS_FORK
            .with_borrow_mut(Option::take)
            .unwrap_or_else(lock_site);
        if FORKED_SITES.contains(&armed.as_str()) {
            armed.clear();
            ARMED.store(false, Ordering::SeqCst);
        }
    });
}

extern "C" fn unlock_in_child() {
    let _ = std::panic::catch_unwind(|| HELD_ACROSS_FORK.with_borrow_mut(|held| drop(held.take())));
}

/// Panics if `site` is armed (once). Inlined: the command filter and every host function pass
/// here, and an unarmed check is one load.
#[inline]
pub fn maybe_panic(site: &str) {
    if ARMED.load(Ordering::Relaxed) {
        panic_if_armed(site);
    }
}

#[cold]
#[inline(never)]
fn panic_if_armed(site: &str) {
    let mut armed = lock_site();
    if *armed == site {
        armed.clear();
        ARMED.store(false, Ordering::SeqCst);
        drop(armed);
        panic!("panic injected into {site} by WASM.DEBUG");
    }
}
