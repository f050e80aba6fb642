//! A loaded guest: its compiled code, its metadata and its long-lived instance.
//!
//! Each guest is compiled once ([`Program`]) and runs in one long-lived instance ([`Live`]),
//! reused across calls. A trap poisons a component instance, so after any trap the instance is
//! dropped and the next call makes a fresh one, re-running the guest's `init` with the same load
//! arguments (which must register the same commands). A command's arguments reach the guest
//! packed when they are short: in fourteen words when it exports `word-arguments` and they fit
//! ([`pack_words`]), else into one list when it exports `packed-arguments`
//! ([`pack_arguments`]); otherwise as a list each (`guest.invoke`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, Func, InstancePre, TypedFunc};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::blocked::Payload;
use crate::busy::{Clock, RunningEntry, RunningGuard, Stop};
use crate::ffi::{Args, Ctx, LogLevel, ThreadSafeCtx, ctx_flags, log_host, panic_text};
use crate::limits::GuestLimiter;
use crate::loader::GuestExports;
use crate::registry::{CommandSpec, ModuleInfo, Route};
use crate::reply::ReplyItem;
use crate::scope::CallPhase;
use crate::state::{CommandScope, GuestState, InitScope, Phase};

/// What a command run sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A reply (or an error reply) went to the client, now or through its block.
    Sent { error: bool },
    /// Nothing: the command blocked its client, or a callback chose not to reply yet.
    Nothing,
}
use crate::{config, engine};

/// Bytes one guest-to-host call may transfer (see `Live::start`).
const HOSTCALL_FUEL: usize = (512 + 64) << 20;

type InitFunc<'a> = TypedFunc<(&'a [&'a [u8]],), (Result<(), String>,)>;
type InvokeFunc<'a> = TypedFunc<(u32, &'a [&'a [u8]]), (Option<i64>,)>;
type InvokePackedFunc<'a> = TypedFunc<(u32, Option<&'a [u8]>), (Option<i64>,)>;
type InvokeWordsFunc = TypedFunc<(u32, u32, Words), (Option<i64>,)>;

/// Packed arguments as `word-arguments.invoke` takes them: fourteen little-endian words
/// (with the command and the length, the sixteen values the canonical ABI passes as such).
#[rustfmt::skip]
type Words = (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);

/// The most packed bytes [`Words`] hold.
const WORDS_BYTES: usize = 14 * 8;

/// Packs `argv` as [`pack_arguments`] does, into [`Words`] and the packed length, if they fit.
/// Passed as values, they cost the guest no allocation, and wasmtime no call into the guest's
/// allocator (`cabi_realloc`) before the command's: ≈ 700 instructions less for a command
/// with a short key or two.
fn pack_words(argv: &[&[u8]]) -> Option<(u32, Words)> {
    // Each argument takes 4 bytes at least: most long commands stop here.
    if argv.len() > WORDS_BYTES / 4
        || argv.iter().map(|arg| 4 + arg.len()).sum::<usize>() > WORDS_BYTES
    {
        return None;
    }
    let mut bytes = [0u8; WORDS_BYTES];
    let mut at = 0;
    for arg in argv {
        let end = at + 4 + arg.len();
        bytes[at..at + 4].copy_from_slice(&(arg.len() as u32).to_le_bytes());
        bytes[at + 4..end].copy_from_slice(arg);
        at = end;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    #[rustfmt::skip]
    let words = (word(0), word(1), word(2), word(3), word(4), word(5), word(6),
                 word(7), word(8), word(9), word(10), word(11), word(12), word(13));
    Some((at as u32, words))
}

/// Packing arguments for `packed-arguments.invoke` costs a copy of their bytes (≈ 15–25 ns per
/// KiB) and saves a call to the guest's allocator per argument (≈ 45 ns): worth it while the
/// arguments average up to this many bytes (with their 4-byte lengths), with a margin for the
/// noise of the measurement (`BASICS.PLAIN <args>` with `wasm.time-commands`: one 16 KB
/// argument 0.82 µs as a list, 1.21 packed; 100 of 8 bytes 6.4 µs as lists, 2.1 packed).
const PACKED_BYTES_PER_ARGUMENT: usize = 1 << 10;

/// The most bytes packed for one command.
const MAX_PACKED_ARGS: usize = 1 << 20;

/// The most a thread keeps of its packing buffer between commands.
const KEPT_PACKED_CAPACITY: usize = 64 << 10;

/// Packs `argv` as the WIT's `packed-arguments.invoke` takes them (each argument's length as a
/// little-endian u32, then its bytes) into `packed`; false, leaving it empty, if they are too
/// long for packing to pay (see [`PACKED_BYTES_PER_ARGUMENT`]).
fn pack_arguments(argv: &[&[u8]], packed: &mut Vec<u8>) -> bool {
    packed.clear();
    let size = argv.iter().map(|arg| 4 + arg.len()).sum::<usize>();
    if size > MAX_PACKED_ARGS || size > argv.len() * PACKED_BYTES_PER_ARGUMENT {
        return false;
    }
    packed.reserve_exact(size);
    for arg in argv {
        // An argument under MAX_PACKED_ARGS fits in a u32.
        packed.extend_from_slice(&(arg.len() as u32).to_le_bytes());
        packed.extend_from_slice(arg);
    }
    true
}

/// A compiled guest, ready to instantiate.
pub struct Program {
    /// Bytes of compiled machine code.
    pub code_size: usize,
    pre: InstancePre<GuestState>,
    init: ComponentExportIndex,
    invoke: ComponentExportIndex,
    /// `packed-arguments.invoke`, which guests of the `module-packed` world export.
    invoke_packed: Option<ComponentExportIndex>,
    /// `word-arguments.invoke`, which guests of the `module-words` world export (0.3.5).
    invoke_words: Option<ComponentExportIndex>,
}

impl Program {
    /// Links a compiled component against the host's world and finds its exports.
    pub fn new(component: &Component, exports: &GuestExports) -> Result<Program, String> {
        let linked = if crate::wasi::imports_without_capabilities(component) {
            let mut linker = engine::linker().clone();
            crate::wasi::define_without_capabilities(&mut linker, component)
                .and_then(|()| linker.instantiate_pre(component))
        } else {
            engine::linker().instantiate_pre(component)
        };
        let pre = linked.map_err(|e| format!("cannot link the guest: {e:#}"))?;
        let find = |export: &str, name: &str| {
            let interface = component
                .get_export_index(None, export)
                .ok_or_else(|| format!("the guest does not export '{export}'"))?;
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| format!("the guest's '{export}' export has no function '{name}'"))
        };
        let image = component.image_range();
        let code_size = (image.end as usize).saturating_sub(image.start as usize);
        Ok(Program {
            code_size,
            init: find(&exports.guest, "init")?,
            invoke: find(&exports.guest, "invoke")?,
            invoke_packed: match &exports.packed_arguments {
                Some(export) => Some(find(export, "invoke")?),
                None => None,
            },
            invoke_words: match &exports.word_arguments {
                Some(export) => Some(find(export, "invoke")?),
                None => None,
            },
            pre,
        })
    }
}

/// One epoch tick of a running guest: time limits, yielding, kills (see `busy.rs`).
fn on_tick(state: &mut GuestState) -> wasmtime::Result<UpdateDeadline> {
    let GuestState {
        clock,
        phase,
        label,
        ..
    } = state;
    if let Some(clock) = clock {
        clock
            .tick(|| match phase {
                Phase::Command(scope) => {
                    scope.suspend_keys();
                    (label.to_string(), scope.command.name.clone())
                }
                _ => (label.to_string(), "init".to_owned()),
            })
            .map_err(wasmtime::Error::new)?;
    }
    Ok(UpdateDeadline::Continue(1))
}

/// Adds the integer reply `invoke` may return (instead of replying through the `reply`
/// interface) to the command's reply, with the same checks as a reply call.
fn take_returned_reply(
    state: &mut GuestState,
    result: wasmtime::Result<(Option<i64>,)>,
) -> wasmtime::Result<()> {
    if let (Some(value),) = result? {
        state.reply.push(ReplyItem::Integer(value));
    }
    Ok(())
}

/// Like [`take_returned_reply`], but an integer that is the command's whole reply (nothing was
/// replied through the `reply` interface) is returned, to be sent as it is: the buffer's checks
/// cannot fail for it.
fn take_returned_integer(
    state: &mut GuestState,
    result: wasmtime::Result<(Option<i64>,)>,
) -> wasmtime::Result<Option<i64>> {
    match result? {
        (Some(value),) if state.reply.is_empty() => Ok(Some(value)),
        returned => take_returned_reply(state, Ok(returned)).map(|()| None),
    }
}

/// A running instance of a guest.
pub struct Live {
    store: Store<GuestState>,
    init: Func,
    invoke: Func,
    invoke_packed: Option<Func>,
    invoke_words: Option<Func>,
}

thread_local! {
    /// The buffer arguments are packed into for `packed-arguments.invoke`, kept for the
    /// thread's next command (up to [`KEPT_PACKED_CAPACITY`]). Taken while a command runs: a
    /// guest command it calls packs into a buffer of its own.
    static PACKED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Live {
    /// Instantiates `program` and runs its `init` with `args`, both under one clock: a core
    /// module's start function runs during instantiation, and must not escape the time limits
    /// and `WASM.KILL` that bound the init, timed as `timing` says (with `ctx`, other clients
    /// may be let in when it is a client's command); `background` is a background job's cancel
    /// flag.
    fn start(
        program: &Program,
        label: &str,
        memory: Arc<AtomicUsize>,
        ctx: Option<Ctx>,
        timing: InitTiming,
        args: &[Vec<u8>],
        background: Option<&Arc<AtomicBool>>,
    ) -> Result<(Live, InitScope), StartFailure> {
        let may_yield = timing == InitTiming::MayYield;
        let label: Arc<str> = label.into();
        let replayed = ctx.is_some_and(|c| ctx_flags::replayed(c.flags()))
            || (background.is_none() && crate::busy::inside_replayed());
        let clock = match background {
            Some(stop) => Clock::background(stop.clone()),
            None if replayed => Clock::unlimited(),
            None => {
                let limit = config::get_ms(&config::MAX_INIT_MS).map(|d| (d, "wasm.max-init-ms"));
                match (timing, ctx) {
                    (InitTiming::MayYield, Some(ctx)) => Clock::new(limit, Some(ctx)),
                    (InitTiming::Alone, _) => Clock::new(limit, None),
                    // Nothing else runs meanwhile, not even WASM.KILL: stop at the threshold.
                    (InitTiming::CannotYield(why), _) => Clock::without_yield(limit, why),
                    (InitTiming::MayYield, None) => Clock::without_yield(limit, ENDING_A_LOAD),
                }
            }
        };
        // Background jobs are not "running" for WASM.KILL and the busy state: they do not hold
        // the main thread.
        let wrote = Arc::new(AtomicBool::new(replayed));
        let _running = background.is_none().then(|| {
            RunningGuard::enter(RunningEntry {
                guest: &label,
                command: None,
                wrote: &wrote,
                ctx,
                may_yield: may_yield && !replayed && ctx.is_some(),
                replayed,
            })
        });
        let mut state = GuestState::new(label, GuestLimiter::new(memory));
        state.limiter.unlimited = replayed;
        state.clock = Some(clock);
        let mut store = Store::new(engine::engine(), state);
        store.limiter(|state| &mut state.limiter);
        // What one host call may copy out of the guest: enough for a 512 MB argument (Redis's
        // largest bulk string), while bounding how far a guest can amplify one buffer into many
        // host copies.
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store.epoch_deadline_callback(|mut store| on_tick(store.data_mut()));
        store.set_epoch_deadline(1);
        engine::guest_entering();
        let instance = program
            .pre
            .instantiate(&mut store)
            .map_err(|e| StartFailure {
                killed: was_killed(&e),
                message: format!(
                    "cannot instantiate the guest: {}",
                    describe_trap(&e, &mut store)
                ),
            })?;
        let func = |store: &mut Store<GuestState>, index: &ComponentExportIndex, name: &str| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| format!("the guest export '{name}' is not a function"))
        };
        let init = func(&mut store, &program.init, "init")?;
        let invoke = func(&mut store, &program.invoke, "invoke")?;
        // Check the signatures once; calls then use `new_unchecked` (see `run_init`/`invoke`).
        init.typed::<(&[&[u8]],), (Result<(), String>,)>(&store)
            .map_err(|e| format!("the guest's init export has the wrong type: {e}"))?;
        invoke
            .typed::<(u32, &[&[u8]]), (Option<i64>,)>(&store)
            .map_err(|e| format!("the guest's invoke export has the wrong type: {e}"))?;
        let invoke_words = match &program.invoke_words {
            Some(index) => {
                let words = func(&mut store, index, "word-arguments.invoke")?;
                words
                    .typed::<(u32, u32, Words), (Option<i64>,)>(&store)
                    .map_err(|e| {
                        format!("the guest's word-arguments.invoke export has the wrong type: {e}")
                    })?;
                Some(words)
            }
            None => None,
        };
        let invoke_packed = match &program.invoke_packed {
            Some(index) => {
                let packed = func(&mut store, index, "packed-arguments.invoke")?;
                packed
                    .typed::<(u32, Option<&[u8]>), (Option<i64>,)>(&store)
                    .map_err(|e| {
                        format!(
                            "the guest's packed-arguments.invoke export has the wrong type: {e}"
                        )
                    })?;
                Some(packed)
            }
            None => None,
        };
        let mut live = Live {
            store,
            init,
            invoke,
            invoke_packed,
            invoke_words,
        };
        let scope = live.run_init(ctx, args)?;
        Ok((live, scope))
    }

    /// Calls the guest's command `index` with `argv`: through `word-arguments.invoke` when the
    /// guest exports it and there are arguments that fit in its words (no allocation in the
    /// guest), through `packed-arguments.invoke` when the guest exports it and the arguments are
    /// short (one allocation in the guest instead of one per argument and one more, the dearest
    /// part of passing short arguments), else through `guest.invoke`.
    fn call_invoke(&mut self, index: u32, argv: &[&[u8]]) -> wasmtime::Result<(Option<i64>,)> {
        if let Some(invoke_words) = self.invoke_words
            && !argv.is_empty()
            && let Some((length, words)) = pack_words(argv)
        {
            // SAFETY: the signature was checked with `typed` in `Live::start`.
            let invoke = unsafe { InvokeWordsFunc::new_unchecked(invoke_words) };
            return invoke.call(&mut self.store, (index, length, words));
        }
        if let Some(invoke_packed) = self.invoke_packed {
            // SAFETY: the signature was checked with `typed` in `Live::start`.
            let invoke = unsafe { InvokePackedFunc::new_unchecked(invoke_packed) };
            if argv.is_empty() {
                return invoke.call(&mut self.store, (index, None));
            }
            let mut packed = PACKED.take();
            let fits = pack_arguments(argv, &mut packed);
            let result = fits.then(|| invoke.call(&mut self.store, (index, Some(&packed[..]))));
            if packed.capacity() <= KEPT_PACKED_CAPACITY {
                PACKED.set(packed);
            }
            if let Some(result) = result {
                return result;
            }
        }
        // SAFETY: the signature was checked with `typed` in `Live::start`.
        let invoke = unsafe { InvokeFunc::new_unchecked(self.invoke) };
        invoke.call(&mut self.store, (index, argv))
    }

    /// Runs the guest's `init` export (under the clock `start` set) and returns what it
    /// registered.
    fn run_init(&mut self, ctx: Option<Ctx>, args: &[Vec<u8>]) -> Result<InitScope, StartFailure> {
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let state = self.store.data_mut();
        state.phase = Phase::Init(InitScope {
            ctx,
            ..InitScope::default()
        });
        state.panic_message = None;
        self.store.set_epoch_deadline(1);
        // SAFETY: the signature was checked with `typed` in `Live::start`.
        let init = unsafe { InitFunc::new_unchecked(self.init) };
        let result = init.call(&mut self.store, (&argv,));
        let state = self.store.data_mut();
        state.clock = None;
        state.flush_output();
        let Phase::Init(scope) = std::mem::replace(&mut state.phase, Phase::Idle) else {
            unreachable!("only this function sets the init phase")
        };
        match result {
            Ok((Ok(()),)) => {}
            Ok((Err(message),)) => return Err(format!("init failed: {message}").into()),
            Err(e) => {
                return Err(StartFailure {
                    killed: was_killed(&e),
                    message: format!("init {}", describe_trap(&e, &mut self.store)),
                });
            }
        }
        let state = self.store.data_mut();
        if let Some(mistake) = state.reply.error() {
            let mistake = mistake.to_owned();
            state.reply.clear();
            return Err(format!("init failed: {mistake}").into());
        }
        if scope.module.is_none() {
            return Err("init did not call init-module".to_owned().into());
        }
        Ok(scope)
    }
}

/// How a guest's init is timed, by who waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitTiming {
    /// A client's command: other clients are let in (`-BUSY`) while it runs; it stops at
    /// `wasm.max-init-ms`.
    MayYield,
    /// Nothing else may run meanwhile (a blocked client's callback that ends a load, EXEC, a
    /// script): it also stops at `busy-reply-threshold`, since nothing else could stop it. With
    /// where it runs, for the message (`in an init that ends a load`, `inside MULTI/EXEC`, ...).
    CannotYield(&'static str),
    /// The module's arguments (at startup, or `MODULE LOAD`), which no client waits on: it
    /// stops at `wasm.max-init-ms`.
    Alone,
}

/// Where an init runs that ends a load it cannot yield in.
pub const ENDING_A_LOAD: &str = "in an init that ends a load";

impl InitTiming {
    /// `MayYield` if `may_yield`, else `CannotYield(why_not)`.
    pub fn yielding_if(may_yield: bool, why_not: &'static str) -> InitTiming {
        match may_yield {
            true => InitTiming::MayYield,
            false => InitTiming::CannotYield(why_not),
        }
    }
}

/// Why an instance could not start.
pub struct StartFailure {
    pub message: String,
    /// `WASM.KILL` stopped its start function or init.
    pub killed: bool,
}

impl From<String> for StartFailure {
    fn from(message: String) -> Self {
        StartFailure {
            message,
            killed: false,
        }
    }
}

fn was_killed(error: &wasmtime::Error) -> bool {
    matches!(error.downcast_ref::<Stop>(), Some(Stop::Killed))
}

/// Explains a trap or instantiation error in one line: the guest's panic message, a kill or
/// time limit, a refused memory growth, or the trap itself.
fn describe_trap(error: &wasmtime::Error, store: &mut Store<GuestState>) -> String {
    let state = store.data_mut();
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return stop.to_string();
    }
    let refused = state.limiter.refused.take();
    if let Some(message) = state.panic_message.take() {
        return match refused {
            Some(why) => format!("ran out of memory ({why}): {message}"),
            None => format!("panicked: {message}"),
        };
    }
    if let Some(why) = refused {
        return format!("ran out of memory ({why})");
    }
    let what = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".to_owned(),
        Some(Trap::UnreachableCodeReached) => {
            "unreachable instruction executed (an abort or panic)".to_owned()
        }
        Some(trap) => trap.to_string(),
        // A host fault: its messages, without the wasm backtrace wasmtime adds as context.
        None => {
            let backtrace = error
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(ToString::to_string);
            error
                .chain()
                .map(|cause| cause.to_string())
                .filter(|text| Some(text) != backtrace.as_ref())
                .collect::<Vec<_>>()
                .join(": ")
                .replace(['\r', '\n'], " ")
        }
    };
    // wasmtime's words for the copy limit set in `Live::start`: say which limit it is.
    let what = if what.contains("fuel allocated for hostcalls has been exhausted") {
        format!(
            "{what} (one host call may copy at most {} MB out of the guest)",
            HOSTCALL_FUEL >> 20
        )
    } else {
        what
    };
    format!("trapped: {what}")
}

/// Counters of one command. `INFO commandstats` has only the dispatchers, which every guest
/// command of the same flags shares; the time of each is measured here while
/// `wasm.time-commands` is on (two clock reads per call).
#[derive(Default)]
pub struct CommandStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    /// Calls made while timing was on, and their total time.
    pub timed_calls: AtomicU64,
    pub timed_nanos: AtomicU64,
}

impl CommandStats {
    /// Total measured time in microseconds, and per timed call (0 before any).
    pub fn usec(&self) -> (u64, f64) {
        let nanos = self.timed_nanos.load(Ordering::Relaxed);
        let calls = self.timed_calls.load(Ordering::Relaxed);
        let per_call = if calls == 0 {
            0.0
        } else {
            nanos as f64 / 1000.0 / calls as f64
        };
        (nanos / 1000, per_call)
    }
}

/// Counters shown by `WASM.LIST` and `INFO`.
#[derive(Default)]
pub struct GuestStats {
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub kills: AtomicU64,
    pub restarts: AtomicU64,
    /// Linear memory of the instance, in bytes.
    pub memory: Arc<AtomicUsize>,
    pub last_error: Mutex<String>,
    /// The totals it had when it left the registry (`info::retire`): what a job still winding
    /// down adds after that is added to `INFO wasm`'s totals when the guest is dropped.
    pub retired_with: std::sync::OnceLock<[u64; 5]>,
}

/// How much of a guest's last error message `WASM.LIST` keeps.
const LAST_ERROR_CHARS: usize = 512;

impl GuestStats {
    fn error(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // Kept for the guest's life and shown by WASM.LIST: a guest's 20 MB error message must
        // not stay in memory (nor make every listing 20 MB).
        let kept = match message.char_indices().nth(LAST_ERROR_CHARS) {
            Some((cut, _)) => format!("{}... ({} bytes)", &message[..cut], message.len()),
            None => message.to_owned(),
        };
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = kept;
    }
}

/// Where a guest's code came from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(String),
    Bytes,
}

/// A loaded guest.
pub struct Guest {
    pub info: ModuleInfo,
    pub commands: Vec<Arc<CommandSpec>>,
    /// The data types it declared: name and encoding version.
    pub data_types: Vec<(String, i32)>,
    pub command_stats: Vec<CommandStats>,
    pub load_args: Vec<Vec<u8>>,
    pub source: Source,
    /// The module as loaded; kept to persist and replicate the guest.
    pub wasm: Arc<[u8]>,
    pub stats: GuestStats,
    program: Program,
    /// The instance; `None` after a trap until the next call. Locked while the guest runs, so a
    /// failed `try_lock` means the guest is being re-entered (it called itself through Redis).
    live: Mutex<Option<Live>>,
    /// The last slow failed re-creation of the instance, while later ones wait (see
    /// [`FailedRestart`]). Taken under `live`'s lock.
    failed_restart: Mutex<Option<FailedRestart>>,
}

/// A re-creation of a guest's instance that failed slowly. Each attempt runs the guest's init
/// on the main thread, up to `wasm.max-init-ms` (or `busy-reply-threshold` where it cannot let
/// other clients in): retried on every call, a guest whose init can no longer succeed in time
/// would stall the server on every call. So after a failure that took [`SLOW_RESTART`] or more,
/// the next attempt waits 1 s, and each such failure doubles the wait, up to a minute;
/// meanwhile calls answer that failure at once. A quick failure (a refused memory budget, an
/// init error) costs nothing to retry and sets no wait. The wait does not hold back work
/// replayed from the master or the AOF (it must run if it can), a caller that may let other
/// clients in after an attempt that could not (it has `wasm.max-init-ms`, not the busy
/// threshold), nor anyone after a `CONFIG SET` or a change of the loaded guests (the limit or
/// memory it failed on may have changed).
struct FailedRestart {
    message: String,
    at: Instant,
    wait: Duration,
    /// Whether the attempt could let other clients in.
    could_yield: bool,
    /// `config::CHANGES` and `registry::generation()` then.
    conditions: (u64, u64),
}

/// What a failed re-creation may have failed on: the configuration and the loaded guests.
fn restart_conditions() -> (u64, u64) {
    (
        config::CHANGES.load(Ordering::Relaxed),
        crate::registry::generation(),
    )
}

/// A failed re-creation that took this long sets a wait before the next.
const SLOW_RESTART: Duration = Duration::from_millis(10);
/// The first wait after a slow failed re-creation, and the longest.
const RESTART_WAIT_FIRST: Duration = Duration::from_secs(1);
const RESTART_WAIT_MAX: Duration = Duration::from_secs(60);

impl Drop for Guest {
    fn drop(&mut self) {
        crate::info::add_counts_after_retirement(self);
    }
}

impl Guest {
    /// Calls of all its commands.
    pub fn calls(&self) -> u64 {
        self.command_stats
            .iter()
            .map(|stats| stats.calls.load(Ordering::Relaxed))
            .sum()
    }

    /// Instantiates a compiled guest and runs its init; the result is not yet registered.
    pub fn start(
        program: Program,
        ctx: Option<Ctx>,
        timing: InitTiming,
        wasm: Arc<[u8]>,
        source: Source,
        load_args: Vec<Vec<u8>>,
    ) -> Result<Guest, String> {
        let stats = GuestStats::default();
        let (live, scope) = Live::start(
            &program,
            "(loading)",
            stats.memory.clone(),
            ctx,
            timing,
            &load_args,
            None,
        )
        .map_err(|failure| failure.message)?;
        let info = scope
            .module
            .expect("run_init checks init-module was called");
        let commands: Vec<Arc<CommandSpec>> = scope.commands.into_iter().map(Arc::new).collect();
        Ok(Guest {
            info,
            data_types: scope.data_types,
            command_stats: commands.iter().map(|_| CommandStats::default()).collect(),
            commands,
            load_args,
            source,
            wasm,
            stats,
            program,
            live: Mutex::new(Some(live)),
            failed_restart: Mutex::new(None),
        })
    }

    /// [`restart`](Self::restart), unless an earlier attempt failed slowly too recently (see
    /// [`FailedRestart`]): then that failure, and when the next attempt is due.
    fn restart_unless_waiting(
        &self,
        ctx: Ctx,
        timing: InitTiming,
        replayed: bool,
    ) -> Result<Live, String> {
        let mut failed = self
            .failed_restart
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let may_yield = timing == InitTiming::MayYield;
        let holds_back = |last: &&FailedRestart| {
            !replayed && (last.could_yield || !may_yield) && last.conditions == restart_conditions()
        };
        if let Some(last) = failed.as_ref().filter(holds_back) {
            let now = Instant::now();
            if let Some(left) = (last.at + last.wait).checked_duration_since(now) {
                return Err(format!(
                    "{} (an attempt {} ms ago; the next is due in {} ms)",
                    last.message,
                    now.duration_since(last.at).as_millis(),
                    left.as_millis().max(1)
                ));
            }
        }
        let started = Instant::now();
        let result = self.restart(ctx, timing);
        let took = started.elapsed();
        match result {
            Ok(live) => {
                *failed = None;
                Ok(live)
            }
            Err(message) if took < SLOW_RESTART => {
                *failed = None;
                Err(message)
            }
            Err(message) => {
                let wait = failed.as_ref().map_or(RESTART_WAIT_FIRST, |last| {
                    (last.wait * 2).min(RESTART_WAIT_MAX)
                });
                *failed = Some(FailedRestart {
                    message: message.clone(),
                    at: Instant::now(),
                    wait,
                    could_yield: may_yield,
                    conditions: restart_conditions(),
                });
                Err(message)
            }
        }
    }

    /// A fresh instance after a trap; its init must register exactly what the first one did.
    fn restart(&self, ctx: Ctx, timing: InitTiming) -> Result<Live, String> {
        let (live, scope) = Live::start(
            &self.program,
            &self.info.name,
            self.stats.memory.clone(),
            Some(ctx),
            timing,
            &self.load_args,
            None,
        )
        .map_err(|failure| {
            // Killed while its init ran for a command: a kill of that command, counted as such.
            if failure.killed {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                self.stats.kills.fetch_add(1, Ordering::Relaxed);
            }
            failure.message
        })?;
        self.check_same_registration(scope)?;
        // Counted once the instance exists: a failed attempt is an error reply, not a restart.
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(live)
    }

    /// A re-run init must register exactly what the first one did.
    fn check_same_registration(&self, scope: InitScope) -> Result<(), String> {
        let same_commands = scope.commands.len() == self.commands.len()
            && scope
                .commands
                .iter()
                .zip(&self.commands)
                .all(|(a, b)| a == &**b);
        if scope.module.as_ref() != Some(&self.info)
            || !same_commands
            || scope.data_types != self.data_types
        {
            return Err(
                "its init registered different commands or data types when run again".to_owned(),
            );
        }
        Ok(())
    }

    /// A background job (see `blocked.rs`): runs command `index` with `args` in a fresh instance
    /// on this thread, with `ctx` (thread-safe, bound to the blocked client) for its calls made
    /// as `user`. Returns what to answer the blocked client.
    pub fn run_background(
        &self,
        ctx: ThreadSafeCtx,
        user: Option<Vec<u8>>,
        id: u64,
        index: u32,
        args: &[Vec<u8>],
        stop: &Arc<AtomicBool>,
    ) -> Payload {
        let guest = &self.info.name;
        let Some(spec) = self.commands.get(index as usize).cloned() else {
            return Payload::Error(format!("ERR guest '{guest}' has no command {index}"));
        };
        let command = spec.name.clone();
        let _ticking = engine::BackgroundCall::enter();
        let _job_user = crate::scope::JobUserGuard::enter(user.clone());
        let failed = |why: String| {
            self.stats.error(&why);
            Payload::Error(why)
        };
        // Its own memory counter: a job's instance is not the guest's instance.
        let started = Live::start(
            &self.program,
            guest,
            Arc::default(),
            None,
            InitTiming::CannotYield("in a background job"),
            &self.load_args,
            Some(stop),
        )
        .map_err(|failure| failure.message)
        .and_then(|(live, scope)| self.check_same_registration(scope).map(|()| live));
        let mut live = match started {
            Ok(live) => live,
            Err(why) => return failed(format!("ERR guest '{guest}' background job: {why}")),
        };
        let mut scope = Box::new(CommandScope::idle(
            ctx.ctx(),
            spec.clone(),
            live.store.data().wrote.clone(),
        ));
        scope.reset(ctx.ctx(), &spec, index, CallPhase::Background { id });
        scope.background = Some(crate::scope::Background { ctx, user });
        let state = live.store.data_mut();
        state.phase = Phase::Command(scope);
        state.clock = Some(Clock::background(stop.clone()));
        state.reply.clear();
        live.store.set_epoch_deadline(1);
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let result = live.call_invoke(index, &argv);
        let state = live.store.data_mut();
        let result = take_returned_reply(state, result);
        state.clock = None;
        state.flush_output();
        let Phase::Command(mut scope) = std::mem::replace(&mut state.phase, Phase::Idle) else {
            unreachable!("set above")
        };
        let payload = match &result {
            Ok(()) => match state.reply.finish() {
                // Detached while the thread-safe context (which call replies point to) lives;
                // under Redis's lock like the scope's replies at the job's end (`finish`).
                Ok(()) => {
                    let _lock = scope.background.as_ref().map(|b| b.ctx.lock());
                    match std::mem::take(&mut state.reply).detach() {
                        Ok(reply) => Payload::Reply(reply),
                        Err(why) => failed(format!(
                            "ERR guest '{guest}' command '{command}' sent a bad reply: {why}"
                        )),
                    }
                }
                Err(_) if state.reply.is_empty() => Payload::Nothing,
                Err(why) => failed(format!(
                    "ERR guest '{guest}' command '{command}' sent a bad reply: {why}"
                )),
            },
            Err(_) => Payload::Nothing,
        };
        {
            let _lock = scope.background.as_ref().map(|b| b.ctx.lock());
            state.reply.clear();
        }
        scope.finish(result.is_err());
        drop(scope);
        match result {
            Ok(()) => payload,
            // Its client timed out, disconnected or was unblocked: nobody gets this, and the
            // guest did nothing wrong, so it counts as neither a trap nor an error.
            Err(error) if matches!(error.downcast_ref::<Stop>(), Some(Stop::Cancelled)) => {
                Payload::Error(format!(
                    "ERR guest '{guest}' command '{command}' background job {}",
                    Stop::Cancelled
                ))
            }
            Err(error) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                let why = describe_trap(&error, &mut live.store);
                failed(format!(
                    "ERR guest '{guest}' command '{command}' background job {why}"
                ))
            }
        }
    }

    /// Runs one command and sends its reply (or an error) through `ctx`.
    /// `flags` are the context's (`RedisModule_GetContextFlags`), read once by the dispatcher.
    pub fn invoke(&self, ctx: Ctx, flags: u32, route: &Route, args: Args<'_>) {
        self.invoke_in(ctx, flags, route, args, CallPhase::Command);
    }

    /// Runs a command in a blocked client's callback phase (see `blocked.rs`). Returns whether
    /// it replied.
    pub fn invoke_callback(
        &self,
        ctx: Ctx,
        route: &Route,
        args: Args<'_>,
        phase: CallPhase,
    ) -> bool {
        let flags = ctx.flags();
        self.invoke_in(ctx, flags, route, args, phase) != Delivery::Nothing
    }

    fn invoke_in(
        &self,
        ctx: Ctx,
        flags: u32,
        route: &Route,
        args: Args<'_>,
        phase: CallPhase,
    ) -> Delivery {
        let stats = &self.command_stats[route.index as usize];
        // A blocking command counts once, as Redis counts a blocked BLPOP: its callbacks (reply,
        // timeout) add their time and errors to the call that blocked.
        let called = matches!(phase, CallPhase::Command);
        if called {
            stats.calls.fetch_add(1, Ordering::Relaxed);
        }
        let started = (config::TIME_COMMANDS.load(Ordering::Relaxed) != 0).then(Instant::now);
        let delivery = self.run(ctx, flags, route, args, phase);
        if let Some(started) = started {
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if called {
                stats.timed_calls.fetch_add(1, Ordering::Relaxed);
            }
            stats.timed_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
        if delivery == (Delivery::Sent { error: true }) {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        delivery
    }

    /// Answers `message` as a failure of this guest: to the client, or, when the command has
    /// blocked its client, through the blocked client (the client cannot be answered directly).
    fn fail(&self, ctx: Ctx, blocked: Option<u64>, message: &str) -> Delivery {
        self.stats.error(message);
        match blocked {
            Some(id) => {
                crate::blocked::finish_blocking_command(ctx, id, Payload::Error(message.to_owned()))
            }
            None => ctx.reply_error(message),
        }
        Delivery::Sent { error: true }
    }

    /// The body of [`invoke`](Self::invoke).
    fn run(
        &self,
        ctx: Ctx,
        flags: u32,
        route: &Route,
        args: Args<'_>,
        phase: CallPhase,
    ) -> Delivery {
        let guest = &self.info.name;
        let command = &route.spec.name;
        // Called by another guest: each store's wasm may use its own stack allowance from where
        // it is entered, so a chain of guests could overflow the thread's stack (and kill the
        // server) where each one alone stays within its allowance.
        if crate::busy::any_running_here()
            && crate::ffi::stack_left().is_some_and(|left| left < engine::NESTED_STACK_NEEDED)
        {
            crate::busy::mark_enclosing_failed(false);
            return self.fail(ctx, None, &format!("ERR guest '{guest}' command '{command}' cannot start: guests calling guests have used up the native stack"));
        }
        let mut slot = match self.live.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::WouldBlock) => {
                crate::busy::mark_enclosing_failed(false);
                return self.fail(ctx, None, &format!("ERR guest '{guest}' is already running: command '{command}' cannot re-enter it"));
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                // A host panic interrupted a call: the instance may be mid-way; start afresh.
                let mut slot = poisoned.into_inner();
                *slot = None;
                self.live.clear_poison();
                slot
            }
        };
        // Yielding lets other clients run while this one is protected: only a command of a
        // client on the main thread has such a client (callbacks run from Redis's event loop
        // with none, and a background job's calls run on its thread), and not inside EXEC or a
        // script, where Redis asserts that no other client's command runs.
        let is_callback = !matches!(phase, CallPhase::Command);
        let may_yield = !is_callback && crate::busy::may_yield_in(flags);
        if slot
            .as_ref()
            .is_some_and(|live| live.store.data().handles_running_low())
        {
            *slot = None; // a fresh instance starts its handle numbers again
        }
        // Commands from the master or the AOF must run to the end: replicas must not diverge. A
        // blocked client's callback is never replayed work, though Redis flags the whole server
        // as loading while an RDB loads (a `CLIENT UNBLOCK` can run its timeout phase then): it
        // stays under its user's ACL and the limits.
        let replayed = (matches!(phase, CallPhase::Command) && ctx_flags::replayed(flags))
            || crate::busy::inside_replayed();
        if slot.is_none() {
            let timing =
                InitTiming::yielding_if(may_yield, crate::busy::why_no_yield(flags, is_callback));
            match self.restart_unless_waiting(ctx, timing, replayed) {
                Ok(live) => *slot = Some(live),
                Err(why) => {
                    // Limits differ between servers: a replica may well restart it.
                    crate::busy::mark_enclosing_failed(false);
                    return self.fail(
                        ctx,
                        None,
                        &format!(
                            "ERR guest '{guest}' command '{command}' cannot run: the guest could \
                             not restart (its instance is made anew after a trap, a kill or \
                             running low on handles): {why}"
                        ),
                    );
                }
            }
        }
        let live = slot.as_mut().expect("instance ensured above");
        let state = live.store.data_mut();
        let mut scope = state.spare_scope.take().unwrap_or_else(|| {
            Box::new(CommandScope::idle(
                ctx,
                route.spec.clone(),
                state.wrote.clone(),
            ))
        });
        // Callbacks get no arguments: every key they open is checked.
        let declared = match phase {
            CallPhase::Command => Some(route.spec.key_positions(args.len() + 1)),
            _ => None,
        };
        let declared = declared
            .into_iter()
            .flatten()
            .filter_map(|pos| args.get(pos - 1));
        // Redis routed a client's command to this node by its declared keys; callbacks come
        // back to the node that blocked the client.
        let routed = flags & ctx_flags::CLUSTER != 0 && matches!(phase, CallPhase::Command);
        scope.acl.prepare(replayed, routed, declared);
        let captured = matches!(phase, CallPhase::Command) && crate::scope::Capture::claim();
        scope.reset(ctx, &route.spec, route.index, phase);
        scope.effects.captured = captured;
        if replayed {
            scope.effects.mark_wrote();
        }
        let _running = RunningGuard::enter(RunningEntry {
            guest: &state.label,
            command: Some(&route.spec),
            wrote: &scope.effects.wrote,
            ctx: Some(ctx),
            may_yield: may_yield && !replayed,
            replayed,
        });
        state.clock = Some(if replayed {
            Clock::unlimited()
        } else {
            let limit = config::get_ms(&config::MAX_CALL_MS).map(|d| (d, "wasm.max-call-ms"));
            match may_yield {
                true => Clock::new(limit, Some(ctx)),
                false => Clock::without_yield(limit, crate::busy::why_no_yield(flags, is_callback)),
            }
        });
        state.phase = Phase::Command(scope);
        state.reply.clear();
        state.reply.unlimited = replayed;
        state.panic_message = None;
        state.limiter.refused = None;
        state.limiter.unlimited = replayed;
        live.store.set_epoch_deadline(1);
        engine::guest_entering();
        // A panic in a host function unwinds through here: catch it so the command's keys are
        // closed while its context is still valid, then drop the instance.
        let result = catch_unwind(AssertUnwindSafe(|| {
            args.with_slices(|argv| live.call_invoke(route.index, argv))
        }));
        let state = live.store.data_mut();
        let result = result.map(|result| take_returned_integer(state, result));
        state.clock = None;
        let mut scope = match std::mem::replace(&mut state.phase, Phase::Idle) {
            Phase::Command(scope) => scope,
            _ => unreachable!("only this function sets the command phase"),
        };
        state.flush_output();
        let blocked = scope.blocked;
        let result = match result {
            Ok(result) => result,
            Err(panic) => {
                scope.finish(true);
                crate::busy::mark_enclosing_failed(true);
                *slot = None;
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                log_host(
                    LogLevel::Warning,
                    &format!(
                        "host panic in guest '{guest}' command '{command}': {}",
                        panic_text(&*panic)
                    ),
                );
                return self.fail(ctx, blocked, &format!("ERR internal error in redis-wasm while running guest '{guest}' command '{command}' (see the server log)"));
            }
        };
        // Read before `finish`, which clears it.
        let refused_here = scope.effects.refused_here;
        scope.finish(result.is_err());
        if result.is_err() || refused_here || live.store.data().reply.error().is_some() {
            crate::busy::mark_enclosing_failed(true);
        }
        live.store.data_mut().spare_scope = Some(scope);
        match result {
            Ok(Some(value)) if blocked.is_none() => {
                ctx.reply_long_long(value);
                Delivery::Sent { error: false }
            }
            Ok(direct) => {
                let state = live.store.data_mut();
                if let Some(value) = direct {
                    // The command blocked its client: the reply goes through the block.
                    state.reply.push(ReplyItem::Integer(value));
                }
                let delivery = match state.reply.finish() {
                    Ok(()) if blocked.is_some() => {
                        // A reply from a command that blocked its client goes through the block.
                        // Detached now: call replies must not outlive this command's context.
                        match std::mem::take(&mut state.reply).detach() {
                            Ok(reply) => {
                                let error = reply.top_level_error().is_some();
                                crate::blocked::finish_blocking_command(
                                    ctx,
                                    blocked.expect("checked"),
                                    Payload::Reply(reply),
                                );
                                Delivery::Sent { error }
                            }
                            Err(why) => self.fail(
                                ctx,
                                blocked,
                                &format!(
                                    "ERR guest '{guest}' command '{command}' sent a bad reply: {why}"
                                ),
                            ),
                        }
                    }
                    Ok(()) => {
                        state.reply.send(ctx);
                        match state.reply.top_level_error() {
                            Some(message) => {
                                self.stats.error(&message);
                                Delivery::Sent { error: true }
                            }
                            None => Delivery::Sent { error: false },
                        }
                    }
                    // Blocked, or serving a blocked client that stays blocked: no reply yet.
                    Err(_) if state.reply.is_empty() && (blocked.is_some() || is_callback) => {
                        Delivery::Nothing
                    }
                    Err(why) => self.fail(
                        ctx,
                        blocked,
                        &format!("ERR guest '{guest}' command '{command}' sent a bad reply: {why}"),
                    ),
                };
                live.store.data_mut().reply.clear();
                delivery
            }
            Err(error) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                if was_killed(&error) {
                    self.stats.kills.fetch_add(1, Ordering::Relaxed);
                }
                let why = describe_trap(&error, &mut live.store);
                *slot = None;
                self.fail(
                    ctx,
                    blocked,
                    &format!("ERR guest '{guest}' command '{command}' {why}"),
                )
            }
        }
    }

    /// Bytes of compiled machine code.
    pub fn code_size(&self) -> usize {
        self.program.code_size
    }

    /// The WIT world the guest targets, as its exports tell: `module-words` when it takes
    /// short arguments as words (`word-arguments`), `module-packed` when it takes them packed
    /// into one list (`packed-arguments`), else `module`.
    pub fn world(&self) -> &'static str {
        match (&self.program.invoke_words, &self.program.invoke_packed) {
            (Some(_), _) => "module-words",
            (None, Some(_)) => "module-packed",
            (None, None) => "module",
        }
    }

    /// For `WASM.DEBUG HANDLES`: sets the next handle number of the live instance, if any.
    pub fn debug_set_next_handle(&self, next: u32) -> bool {
        match self.live.try_lock() {
            Ok(mut slot) => match slot.as_mut() {
                Some(live) => {
                    live.store.data_mut().set_next_handle(next);
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Whether an instance exists now (it is re-created lazily after a trap).
    pub fn has_instance(&self) -> bool {
        match self.live.try_lock() {
            Ok(slot) => slot.is_some(),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `words` hold, in order.
    fn words_bytes((a, b, c, d, e, f, g, h, i, j, k, l, m, n): Words) -> Vec<u8> {
        [a, b, c, d, e, f, g, h, i, j, k, l, m, n]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    #[test]
    fn words_hold_the_packed_list_then_zeros() {
        let cases: [&[&[u8]]; 4] = [
            &[b"counter:1"],
            &[b"k", b"", b"value"],
            // 4 + 108 bytes: exactly full.
            &[&[0xff; 108]],
            &[&b"a"[..]; 22],
        ];
        for argv in cases {
            let mut packed = Vec::new();
            assert!(pack_arguments(argv, &mut packed));
            let (length, words) = pack_words(argv).expect("fits");
            assert_eq!(length as usize, packed.len());
            let bytes = words_bytes(words);
            assert_eq!(&bytes[..packed.len()], &packed[..]);
            assert!(bytes[packed.len()..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn arguments_past_the_words_are_not_packed_into_them() {
        assert!(pack_words(&[&[0; 109]]).is_none());
        assert!(pack_words(&[&b"a"[..]; 23]).is_none());
        assert!(pack_words(&[&b"12345678"[..], &[0; 97]]).is_none());
    }
}
