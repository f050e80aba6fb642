//! The one wasmtime engine of the server, its linker, and the epoch ticker.
//!
//! Epoch interruption gives every running guest a periodic callback (see `guest.rs`) at a cost
//! of ≈0% on tight loops; a background thread advances the epoch every [`EPOCH_TICK`] while
//! guests run, and sleeps once none has run for a while (an idle server would otherwise wake it
//! a thousand times a second for nothing).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, EngineWeak, OptLevel, ProfilingStrategy};

use crate::state::GuestState;

/// How often running guests get control back to the host.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Native stack one guest invocation's wasm may use (wasmtime's default, made explicit): a
/// guest recursing deeper traps with a stack overflow.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Native stack a guest command called by another guest needs left to start: its wasm's
/// allowance (wasmtime counts it from where each store is entered, so guests calling guests
/// add theirs up) and room for Redis's and the host's frames around it.
pub const NESTED_STACK_NEEDED: usize = MAX_WASM_STACK + (256 << 10);

/// Creates the engine and linker and starts the epoch ticker. Idempotent.
pub fn start() -> anyhow::Result<()> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.max_wasm_stack(MAX_WASM_STACK);
    if crate::config::PERF_MAP.load(Ordering::Relaxed) == 1 {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    crate::ffi::signals::before_engine();
    let engine =
        Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    // wasmtime installs its trap handlers lazily, with the first store: make one now so they are
    // in place (and remembered) before any guest runs.
    drop(wasmtime::Store::new(&engine, ()));
    crate::ffi::signals::after_engine();
    let linker =
        crate::api::linker(&engine).map_err(|e| anyhow::anyhow!("cannot build the linker: {e}"))?;
    let ticker = engine.weak();
    let thread = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || tick_while_guests_run(&ticker))
        .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
    let _ = TICKER_THREAD.set(thread.thread().clone());
    let _ = RUNTIME.set(Runtime { engine, linker });
    Ok(())
}

pub fn engine() -> &'static Engine {
    &RUNTIME.get().expect("engine::start runs in OnLoad").engine
}

pub fn linker() -> &'static Linker<GuestState> {
    &RUNTIME.get().expect("engine::start runs in OnLoad").linker
}

/// The ticker's state: [`ENTERED`] once guest code started since its last tick, [`IDLE`] when
/// not, [`PARKED`] while it sleeps.
static TICKER: AtomicU8 = AtomicU8::new(ENTERED);
const IDLE: u8 = 0;
const ENTERED: u8 = 1;
const PARKED: u8 = 2;
static TICKER_THREAD: OnceLock<Thread> = OnceLock::new();
/// Guest code running on background threads (jobs for blocked clients).
static BACKGROUND_CALLS: AtomicUsize = AtomicUsize::new(0);
/// Ticks with no guest code started, and none running, after which the ticker sleeps.
const PARK_AFTER_IDLE_TICKS: u32 = 100;

/// Called before guest code runs — on the main thread with the guest's
/// [`RunningGuard`](crate::busy::RunningGuard) entered, elsewhere inside a [`BackgroundCall`]:
/// wakes the ticker if it sleeps. One load while it ticks.
#[inline]
pub fn guest_entering() {
    // A stale ENTERED cannot hide a parked ticker: it parks only after seeing no running guard
    // through a read-modify-write of the guards' count, which this thread's guard incremented
    // after it (so this load sees the ticker's IDLE; see `busy::anything_running`).
    if TICKER.load(Ordering::Relaxed) != ENTERED {
        mark_entered();
    }
}

#[cold]
fn mark_entered() {
    if TICKER.swap(ENTERED, Ordering::SeqCst) == PARKED
        && let Some(thread) = TICKER_THREAD.get()
    {
        thread.unpark();
    }
}

/// Keeps the ticker going while a background thread runs guest code.
pub struct BackgroundCall(());

impl BackgroundCall {
    pub fn enter() -> BackgroundCall {
        BACKGROUND_CALLS.fetch_add(1, Ordering::SeqCst);
        mark_entered();
        BackgroundCall(())
    }
}

impl Drop for BackgroundCall {
    fn drop(&mut self) {
        BACKGROUND_CALLS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The epoch thread: a tick every [`EPOCH_TICK`] while guest code runs or has started lately;
/// parked after [`PARK_AFTER_IDLE_TICKS`] ticks with none, until a guest starts again.
fn tick_while_guests_run(engine: &EngineWeak) {
    let mut idle_ticks = 0u32;
    loop {
        std::thread::sleep(EPOCH_TICK);
        match engine.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
        if TICKER.swap(IDLE, Ordering::SeqCst) == ENTERED {
            idle_ticks = 0;
            continue;
        }
        idle_ticks = idle_ticks.saturating_add(1);
        // A guest still running (in a long call into Redis, say) keeps the ticks coming.
        if idle_ticks < PARK_AFTER_IDLE_TICKS
            || BACKGROUND_CALLS.load(Ordering::SeqCst) > 0
            || crate::busy::anything_running()
        {
            continue;
        }
        // Fails if a guest started since the swap above; a guest starting from here on finds
        // PARKED and unparks this thread (an unpark before the park is not lost).
        if TICKER
            .compare_exchange(IDLE, PARKED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            while TICKER.load(Ordering::SeqCst) == PARKED {
                std::thread::park();
            }
        }
        idle_ticks = 0;
    }
}
