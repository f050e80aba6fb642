//! Runaway guests: yielding to other clients, `WASM.KILL`, and time limits.
//!
//! Every running guest gets a callback each epoch tick (`engine.rs`). Once a command has run
//! longer than Redis's `busy-reply-threshold`, the callback calls `RedisModule_Yield`: other
//! clients get `-BUSY`, and commands flagged `allow-busy` (`WASM.KILL`, `SHUTDOWN`, ...)
//! run. Keys are closed before yielding, as around calls, so nothing that runs meanwhile can
//! leave a handle dangling.
//!
//! `WASM.KILL` sets a flag that makes the next tick of every running guest trap — a trap cannot
//! be caught by guest code. Like Lua's `SCRIPT KILL`, it refuses (`-UNKILLABLE`) once the
//! running command has written: killing it would leave the command half applied. Only
//! `SHUTDOWN NOSAVE NOW` (or the hard `wasm.max-call-ms` limit) stops such a command.

use std::cell::RefCell;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ffi::Ctx;
use crate::registry::CommandSpec;

/// Redis's `busy-reply-threshold` in milliseconds (kept up to date on config changes).
pub static BUSY_THRESHOLD_MS: AtomicI64 = AtomicI64::new(5000);

/// Set by `WASM.KILL`; cleared when the outermost guest call ends.
static KILL: AtomicBool = AtomicBool::new(false);

/// One guest invocation on the stack (guests can call each other through Redis).
struct Running {
    guest: Arc<str>,
    /// `None` while the guest's init runs.
    command: Option<Arc<CommandSpec>>,
    wrote: Arc<AtomicBool>,
    /// Its context (for its client), valid while it is on the stack; `None` for an init run
    /// without one (the fuzzing entry point).
    ctx: Option<Ctx>,
    /// Whether it may yield to other clients; what it calls may yield only if it may.
    may_yield: bool,
    /// Whether it replays the master's or the AOF's work; what it calls does too.
    replayed: bool,
    /// A guest command it called (directly or not) failed in the host's hands (trapped,
    /// stopped by a limit, could not start, or answered a host error) or was refused something
    /// a replica would not refuse (an ACL, a slot). A replica replaying it, with other limits or
    /// none and without a user, may not fail alike, so it must not replicate verbatim.
    inner_failed: bool,
}

impl Running {
    fn command_name(&self) -> &str {
        self.command.as_ref().map_or("init", |c| c.name.as_str())
    }

    /// Makes this (reused) entry describe another invocation, cloning only what differs.
    fn refill(&mut self, entry: &RunningEntry<'_>) {
        fn refill_arc<T: ?Sized>(slot: &mut Arc<T>, value: &Arc<T>) {
            if !Arc::ptr_eq(slot, value) {
                *slot = value.clone();
            }
        }
        refill_arc(&mut self.guest, entry.guest);
        match (&mut self.command, entry.command) {
            (Some(slot), Some(command)) => refill_arc(slot, command),
            (slot, command) => *slot = command.cloned(),
        }
        refill_arc(&mut self.wrote, entry.wrote);
        self.ctx = entry.ctx;
        self.may_yield = entry.may_yield;
        self.replayed = entry.replayed;
        self.inner_failed = false;
    }
}

/// What [`RunningGuard::enter`] records about an invocation.
pub struct RunningEntry<'a> {
    pub guest: &'a Arc<str>,
    /// `None` while the guest's init runs.
    pub command: Option<&'a Arc<CommandSpec>>,
    pub wrote: &'a Arc<AtomicBool>,
    /// Its context (for its client); `None` for an init run without one (the fuzzing entry
    /// point).
    pub ctx: Option<Ctx>,
    /// Whether it may yield to other clients.
    pub may_yield: bool,
    /// Whether it replays the master's or the AOF's work.
    pub replayed: bool,
}

/// A thread's guest invocations, innermost last: the first `depth` entries. Entries beyond it
/// are kept for reuse, so a command that runs again (the common case) enters without touching
/// a reference count.
struct RunningStack {
    entries: Vec<Running>,
    depth: usize,
}

impl RunningStack {
    fn running(&self) -> &[Running] {
        &self.entries[..self.depth]
    }
}

thread_local! {
    /// Per thread: `WASM.KILL` and the ACL checks look at the main thread's, where guests
    /// yield; a guest command run by another thread holds Redis's lock, so no other command
    /// (`WASM.KILL` included) runs meanwhile.
    static RUNNING: RefCell<RunningStack> =
        const { RefCell::new(RunningStack { entries: Vec::new(), depth: 0 }) };
}

/// Guest invocations running on any thread, for the epoch ticker.
static RUNNING_COUNT: AtomicUsize = AtomicUsize::new(0);

/// How a guest call may run: set when it starts, read by every tick.
///
/// The call's time starts at its first tick, which comes within one
/// [`EPOCH_TICK`](crate::engine::EPOCH_TICK) of its start unless the guest is then inside a
/// longer call into Redis: reading the clock on every call would cost more than a short command
/// itself. Limits are thus met to within a millisecond or so, and only ever late, never early.
pub struct Clock {
    started: Option<Instant>,
    /// A hard limit (`wasm.max-call-ms`, or `wasm.max-init-ms` for init).
    limit: Option<(Duration, &'static str)>,
    /// The context to yield with, when this call may yield.
    yield_ctx: Option<Ctx>,
    /// A call that cannot yield where it runs stops at `busy-reply-threshold` instead.
    /// Stop at `busy-reply-threshold`, saying why it cannot yield (see [`Stop::CannotYield`]).
    stop_at_threshold: Option<&'static str>,
    /// Set for a background job: its cancel flag (it ignores `WASM.KILL`, which is about the
    /// main thread).
    cancel: Option<Arc<AtomicBool>>,
}

/// Why a tick stopped the guest.
#[derive(Debug)]
pub enum Stop {
    Killed,
    TimedOut(Duration, &'static str),
    /// A background job whose client went away (timeout, disconnection, guest unloaded).
    Cancelled,
    /// Ran past `busy-reply-threshold` where it cannot yield.
    CannotYield(Duration, &'static str),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Killed => f.write_str("was killed by WASM.KILL"),
            Stop::Cancelled => f.write_str("was cancelled (its client is no longer waiting)"),
            Stop::CannotYield(threshold, why) => write!(
                f,
                "ran longer than busy-reply-threshold ({} ms) {why}, where it cannot let other \
                 clients in (raise busy-reply-threshold, or make it shorter)",
                threshold.as_millis()
            ),
            Stop::TimedOut(limit, config) => {
                write!(f, "ran longer than {} ms ({config})", limit.as_millis())
            }
        }
    }
}

impl std::error::Error for Stop {}

/// Marks a guest invocation as running until dropped.
pub struct RunningGuard {
    /// Not `Send`: it must be dropped on the thread whose stack it entered.
    _same_thread: std::marker::PhantomData<*const ()>,
}

impl RunningGuard {
    pub fn enter(entry: RunningEntry<'_>) -> RunningGuard {
        // Before the guest starts (`engine::guest_entering`): see `anything_running`.
        RUNNING_COUNT.fetch_add(1, Ordering::SeqCst);
        RUNNING.with_borrow_mut(|stack| {
            match stack.entries.get_mut(stack.depth) {
                Some(reused) => reused.refill(&entry),
                None => stack.entries.push(Running {
                    guest: entry.guest.clone(),
                    command: entry.command.cloned(),
                    wrote: entry.wrote.clone(),
                    ctx: entry.ctx,
                    may_yield: entry.may_yield,
                    replayed: entry.replayed,
                    inner_failed: false,
                }),
            }
            stack.depth += 1;
        });
        RunningGuard {
            _same_thread: std::marker::PhantomData,
        }
    }
}

/// Whether a guest invocation runs (the epoch ticker keeps ticking).
pub fn anything_running() -> bool {
    // A read-modify-write, not a load: if it comes before a guard's increment, that increment
    // reads its value and so synchronizes with it, and the entering guest's relaxed look at the
    // ticker's state (`engine::guest_entering`) sees what the ticker stored before calling this.
    RUNNING_COUNT.fetch_add(0, Ordering::SeqCst) > 0
}

/// The clients of the running guest invocations, innermost first: a guest command called by
/// another guest runs for a fake client, and the outer command's client is the one behind it.
pub fn running_clients() -> Vec<u64> {
    RUNNING.with_borrow(|stack| {
        stack
            .running()
            .iter()
            .rev()
            .filter_map(|r| r.ctx.map(Ctx::client_id))
            .collect()
    })
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.with_borrow_mut(|stack| stack.depth -= 1);
        if RUNNING_COUNT.fetch_sub(1, Ordering::SeqCst) == 1 && KILL.load(Ordering::Relaxed) {
            KILL.store(false, Ordering::SeqCst);
        }
    }
}

impl Clock {
    /// A clock for a call on the main thread that may yield with `yield_ctx` (when given) once
    /// it runs past `busy-reply-threshold`, and stops at `limit`.
    pub fn new(limit: Option<(Duration, &'static str)>, yield_ctx: Option<Ctx>) -> Clock {
        Clock {
            started: None,
            limit,
            yield_ctx,
            stop_at_threshold: None,
            cancel: None,
        }
    }

    /// A clock for a call that cannot yield: Redis reached it from a blocked client's callback
    /// (no client of its own to protect while others run) or from another thread. It stops at
    /// `busy-reply-threshold`, since nothing else could stop it.
    pub fn without_yield(limit: Option<(Duration, &'static str)>, why: &'static str) -> Clock {
        Clock {
            stop_at_threshold: Some(why),
            ..Clock::new(limit, None)
        }
    }

    /// Whether a background job's client went away.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|cancel| cancel.load(Ordering::SeqCst))
    }

    /// A clock that never yields nor stops (loads replayed from the master or the AOF).
    pub fn unlimited() -> Clock {
        Clock::new(None, None)
    }

    /// A background job's clock: no time limit, no yielding; stops when `cancel` is set.
    pub fn background(cancel: Arc<AtomicBool>) -> Clock {
        Clock {
            cancel: Some(cancel),
            ..Clock::unlimited()
        }
    }

    /// One epoch tick. Before yielding, `suspend` closes the command's keys and says what runs
    /// (guest and command names, for the `-BUSY` message).
    pub fn tick(&mut self, suspend: impl FnOnce() -> (String, String)) -> Result<(), Stop> {
        if let Some(cancel) = &self.cancel {
            return match cancel.load(Ordering::SeqCst) {
                true => Err(Stop::Cancelled),
                false => Ok(()),
            };
        }
        if KILL.load(Ordering::SeqCst) {
            return Err(Stop::Killed);
        }
        let now = Instant::now();
        let elapsed = now.duration_since(*self.started.get_or_insert(now));
        if let Some((limit, config)) = self.limit
            && elapsed > limit
        {
            return Err(Stop::TimedOut(limit, config));
        }
        // 0 (or less) turns Redis's busy mechanism off, as for scripts: the call runs to its end
        // (or its `limit`) without letting other clients in.
        let Ok(threshold_ms @ 1..) = u64::try_from(BUSY_THRESHOLD_MS.load(Ordering::Relaxed))
        else {
            return Ok(());
        };
        let threshold = Duration::from_millis(threshold_ms);
        if let Some(why) = self.stop_at_threshold
            && elapsed > threshold
        {
            return Err(Stop::CannotYield(threshold, why));
        }
        if let Some(ctx) = self.yield_ctx
            && elapsed >= threshold
        {
            let (guest, command) = suspend();
            let message = format!(
                "Redis is busy running guest '{guest}' command '{command}'. You can only call WASM.KILL or SHUTDOWN NOSAVE NOW."
            );
            ctx.yield_to_clients(&CString::new(message).unwrap_or_default());
            if KILL.load(Ordering::SeqCst) {
                return Err(Stop::Killed);
            }
        }
        Ok(())
    }
}

/// `WASM.KILL`'s decision.
pub enum KillOutcome {
    Killed,
    NotBusy,
    Unkillable { guest: String, command: String },
}

pub fn kill() -> KillOutcome {
    RUNNING.with_borrow(|stack| {
        let running = stack.running();
        if running.is_empty() {
            return KillOutcome::NotBusy;
        }
        if let Some(writer) = running.iter().find(|r| r.wrote.load(Ordering::Acquire)) {
            return KillOutcome::Unkillable {
                guest: writer.guest.to_string(),
                command: writer.command_name().to_owned(),
            };
        }
        KILL.store(true, Ordering::SeqCst);
        KillOutcome::Killed
    })
}

thread_local! {
    /// Whether this is Redis's main thread, where guests may yield (set in `OnLoad`).
    static IS_MAIN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records the calling thread (`OnLoad`'s) as Redis's main thread.
pub fn mark_main_thread() {
    IS_MAIN_THREAD.set(true);
}

/// Whether this is Redis's main thread (a background job's call into a guest command is not).
pub fn on_main_thread() -> bool {
    IS_MAIN_THREAD.get()
}

/// Why a guest invocation that may not yield ([`may_yield_in`] false, or a callback) cannot, for
/// the message that stops it at `busy-reply-threshold`.
pub fn why_no_yield(ctx_flags: u32, is_callback: bool) -> &'static str {
    if is_callback {
        "in a blocked client's callback"
    } else if !on_main_thread() {
        "in a call from a background job"
    } else if ctx_flags & crate::ffi::ctx_flags::MULTI != 0 {
        "inside MULTI/EXEC"
    } else if ctx_flags & crate::ffi::ctx_flags::LUA != 0 {
        "inside a script or function"
    } else {
        "called by a guest invocation that cannot yield"
    }
}

/// Whether a command running with these context flags may yield to other clients: only on the
/// main thread, never inside `EXEC` or a script (Redis asserts that no other client's command
/// runs while a transaction or a script does), and only if every guest invocation it runs
/// inside may (a guest command a blocked client's callback calls must not yield either: Redis
/// does not protect that client meanwhile, and would use it freed if it disconnected).
pub fn may_yield_in(ctx_flags: u32) -> bool {
    on_main_thread()
        && ctx_flags & (crate::ffi::ctx_flags::MULTI | crate::ffi::ctx_flags::LUA) == 0
        && (!any_running_here()
            || RUNNING.with_borrow(|stack| stack.running().iter().all(|r| r.may_yield)))
}

/// Whether this thread may have guest invocations running, without reaching its stack (a
/// thread-local, which in a shared library costs a call): none run anywhere in the common
/// case. This thread's own entries are always counted in what it reads.
pub fn any_running_here() -> bool {
    RUNNING_COUNT.load(Ordering::Relaxed) != 0
}

/// Whether a guest invocation on this thread replays the master's or the AOF's work: a guest
/// command it calls replays it too, though Redis flags only the master's own client (a call
/// runs on a temporary one).
pub fn inside_replayed() -> bool {
    any_running_here() && RUNNING.with_borrow(|stack| stack.running().iter().any(|r| r.replayed))
}

/// Called by a guest invocation that failed in the host's hands, or was refused something a
/// replica would not refuse (see `Running::inner_failed`): marks every invocation it runs
/// inside. `entered` tells whether the failing invocation is on the stack itself (it failed
/// while running) or never got there (it could not start).
pub fn mark_enclosing_failed(entered: bool) {
    if !any_running_here() {
        return;
    }
    RUNNING.with_borrow_mut(|stack| {
        let enclosing = stack.depth.saturating_sub(usize::from(entered));
        for entry in stack.entries[..enclosing].iter_mut() {
            entry.inner_failed = true;
        }
    });
}

/// Whether a guest command the innermost running invocation called failed in the host's hands.
pub fn inner_failed() -> bool {
    any_running_here()
        && RUNNING.with_borrow(|stack| stack.running().last().is_some_and(|r| r.inner_failed))
}

/// Reads `busy-reply-threshold` from Redis.
pub fn refresh_threshold(ctx: Ctx) {
    if let Some(ms) = ctx.config_get_i64("busy-reply-threshold") {
        BUSY_THRESHOLD_MS.store(ms, Ordering::Relaxed);
    }
}
