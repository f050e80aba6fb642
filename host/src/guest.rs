//! A loaded guest: its compiled code, its metadata and its long-lived instance.
//!
//! Each guest is compiled once ([`Program`]) and runs in one long-lived instance ([`Live`]),
//! reused across calls. A trap poisons a component instance, so after any trap the instance is
//! dropped and the next call makes a fresh one, re-running the guest's `init` with the same load
//! arguments (which must register the same commands).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use wasmtime::component::{Component, ComponentExportIndex, Func, InstancePre, TypedFunc};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use crate::engine;
use crate::ffi::{Args, Ctx};
use crate::registry::{CommandSpec, ModuleInfo, Route};
use crate::state::{CommandScope, GuestState, InitScope, Phase};

/// Largest linear memory a guest instance may grow to.
pub const MAX_GUEST_MEMORY: usize = 256 << 20;

type InitFunc<'a> = TypedFunc<(&'a [&'a [u8]],), (Result<(), String>,)>;
type InvokeFunc<'a> = TypedFunc<(u32, &'a [&'a [u8]]), (Result<(), String>,)>;

/// A compiled guest, ready to instantiate.
pub struct Program {
    pre: InstancePre<GuestState>,
    init: ComponentExportIndex,
    invoke: ComponentExportIndex,
}

impl Program {
    /// Links a compiled component against the host's world and finds its exports.
    pub fn new(component: &Component, guest_export: &str) -> Result<Program, String> {
        let pre = engine::linker()
            .instantiate_pre(component)
            .map_err(|e| format!("cannot link the guest: {e:#}"))?;
        let interface = component
            .get_export_index(None, guest_export)
            .ok_or_else(|| format!("the guest does not export '{guest_export}'"))?;
        let find = |name: &str| {
            component
                .get_export_index(Some(&interface), name)
                .ok_or_else(|| {
                    format!("the guest's '{guest_export}' export has no function '{name}'")
                })
        };
        Ok(Program {
            init: find("init")?,
            invoke: find("invoke")?,
            pre,
        })
    }
}

/// A running instance of a guest.
pub struct Live {
    store: Store<GuestState>,
    init: Func,
    invoke: Func,
}

impl Live {
    fn new(program: &Program, label: &str) -> Result<Live, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MAX_GUEST_MEMORY)
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(false)
            .build();
        let mut store = Store::new(engine::engine(), GuestState::new(label.into(), limits));
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
        let instance = program.pre.instantiate(&mut store).map_err(|e| {
            format!("cannot instantiate the guest: {e:#}").replace(['\r', '\n'], " ")
        })?;
        let func = |store: &mut Store<GuestState>, index: &ComponentExportIndex, name: &str| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| format!("the guest export '{name}' is not a function"))
        };
        let init = func(&mut store, &program.init, "init")?;
        let invoke = func(&mut store, &program.invoke, "invoke")?;
        // Check the signatures once; calls then use `new_unchecked` (see `call_init`/`invoke`).
        init.typed::<(&[&[u8]],), (Result<(), String>,)>(&store)
            .map_err(|e| format!("the guest's init export has the wrong type: {e}"))?;
        invoke
            .typed::<(u32, &[&[u8]]), (Result<(), String>,)>(&store)
            .map_err(|e| format!("the guest's invoke export has the wrong type: {e}"))?;
        Ok(Live {
            store,
            init,
            invoke,
        })
    }

    /// Runs the guest's `init` export and returns what it registered.
    fn run_init(&mut self, ctx: Option<Ctx>, args: &[Vec<u8>]) -> Result<InitScope, String> {
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let state = self.store.data_mut();
        state.phase = Phase::Init(InitScope {
            ctx,
            ..InitScope::default()
        });
        state.panic_message = None;
        self.store.set_epoch_deadline(1);
        // SAFETY: the signature was checked with `typed` in `Live::new`.
        let init = unsafe { InitFunc::new_unchecked(self.init) };
        let result = init.call(&mut self.store, (&argv,));
        let state = self.store.data_mut();
        let label = state.label.clone();
        state.output.flush(&label);
        let Phase::Init(scope) = std::mem::replace(&mut state.phase, Phase::Idle) else {
            unreachable!("only this function sets the init phase")
        };
        match result {
            Ok((Ok(()),)) => {}
            Ok((Err(message),)) => return Err(format!("init failed: {message}")),
            Err(e) => {
                return Err(format!(
                    "init {}",
                    describe_trap(&e, state.panic_message.take())
                ));
            }
        }
        if let Some(mistake) = state.reply.error() {
            let mistake = mistake.to_owned();
            state.reply.clear();
            return Err(format!("init failed: {mistake}"));
        }
        if scope.module.is_none() {
            return Err("init did not call init-module".to_owned());
        }
        Ok(scope)
    }
}

/// Explains a trap or instantiation error in one line, with the guest's panic message if any.
fn describe_trap(error: &wasmtime::Error, panic_message: Option<String>) -> String {
    if let Some(message) = panic_message {
        return format!("panicked: {message}");
    }
    let what = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".to_owned(),
        Some(Trap::UnreachableCodeReached) => {
            "unreachable instruction executed (an abort or panic)".to_owned()
        }
        Some(trap) => trap.to_string(),
        None => format!("{error:#}").replace(['\r', '\n'], " "),
    };
    format!("trapped: {what}")
}

/// Counters shown by `WASM.LIST` and `INFO`.
#[derive(Default)]
pub struct GuestStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub restarts: AtomicU64,
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
    pub load_args: Vec<Vec<u8>>,
    pub source: Source,
    /// The module as loaded; kept to persist and replicate the guest.
    pub wasm: Arc<[u8]>,
    pub stats: GuestStats,
    program: Program,
    /// The instance; `None` after a trap until the next call. Locked while the guest runs, so a
    /// failed `try_lock` means the guest is being re-entered (it called itself through Redis).
    live: Mutex<Option<Live>>,
}

impl Guest {
    /// Instantiates a compiled guest and runs its init; the result is not yet registered.
    pub fn start(
        program: Program,
        ctx: Option<Ctx>,
        wasm: Arc<[u8]>,
        source: Source,
        load_args: Vec<Vec<u8>>,
    ) -> Result<Guest, String> {
        let mut live = Live::new(&program, "(loading)")?;
        let scope = live.run_init(ctx, &load_args)?;
        let info = scope
            .module
            .expect("run_init checks init-module was called");
        Ok(Guest {
            info,
            commands: scope.commands.into_iter().map(Arc::new).collect(),
            load_args,
            source,
            wasm,
            stats: GuestStats::default(),
            program,
            live: Mutex::new(Some(live)),
        })
    }

    /// A fresh instance after a trap; its init must register exactly what the first one did.
    fn restart(&self, ctx: Ctx) -> Result<Live, String> {
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        let mut live = Live::new(&self.program, &self.info.name)?;
        let scope = live.run_init(Some(ctx), &self.load_args)?;
        let same_commands = scope.commands.len() == self.commands.len()
            && scope
                .commands
                .iter()
                .zip(&self.commands)
                .all(|(a, b)| a == &**b);
        if scope.module.as_ref() != Some(&self.info) || !same_commands {
            return Err(
                "its init registered different commands when restarted after a trap".to_owned(),
            );
        }
        Ok(live)
    }

    /// Runs one command and sends its reply (or an error) through `ctx`.
    pub fn invoke(&self, ctx: Ctx, route: &Route, args: Args<'_>) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let command = &route.spec.name;
        let mut slot = match self.live.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::WouldBlock) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                ctx.reply_error(&format!(
                    "ERR guest '{}' is already running: command '{command}' cannot re-enter it",
                    self.info.name
                ));
                return;
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                // A host panic interrupted a call: the instance may be mid-way; start afresh.
                let mut slot = poisoned.into_inner();
                *slot = None;
                self.live.clear_poison();
                slot
            }
        };
        if slot.is_none() {
            match self.restart(ctx) {
                Ok(live) => *slot = Some(live),
                Err(why) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    ctx.reply_error(&format!(
                        "ERR guest '{}' could not restart: {why}",
                        self.info.name
                    ));
                    return;
                }
            }
        }
        let live = slot.as_mut().expect("instance ensured above");

        let argv: Vec<&[u8]> = args.iter().collect();
        let state = live.store.data_mut();
        state.phase = Phase::Command(CommandScope::new(ctx, route.spec.clone()));
        state.reply.clear();
        state.panic_message = None;
        live.store.set_epoch_deadline(1);
        // SAFETY: the signature was checked with `typed` in `Live::new`.
        let invoke = unsafe { InvokeFunc::new_unchecked(live.invoke) };
        // A panic in a host function unwinds through here: catch it so the command's keys are
        // closed while its context is still valid, then drop the instance.
        let result = catch_unwind(AssertUnwindSafe(|| {
            invoke.call(&mut live.store, (route.index, &argv))
        }));
        let state = live.store.data_mut();
        let mut scope = match std::mem::replace(&mut state.phase, Phase::Idle) {
            Phase::Command(scope) => scope,
            _ => unreachable!("only this function sets the command phase"),
        };
        let label = state.label.clone();
        state.output.flush(&label);
        let result = match result {
            Ok(result) => result,
            Err(panic) => {
                scope.finish(true);
                *slot = None;
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                crate::ffi::log_raw(
                    crate::ffi::LogLevel::Warning,
                    &format!(
                        "<wasm> host panic in guest '{}' command '{command}': {}",
                        self.info.name,
                        crate::ffi::panic_text(&*panic)
                    ),
                );
                ctx.reply_error(&format!("ERR internal error in redis-wasm while running guest '{}' command '{command}' (see the server log)", self.info.name));
                return;
            }
        };
        scope.finish(result.is_err());
        drop(scope);
        match result {
            Ok((Ok(()),)) => match state.reply.finish() {
                Ok(()) => state.reply.send(ctx),
                Err(why) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    ctx.reply_error(&format!(
                        "ERR guest '{}' command '{command}' sent a bad reply: {why}",
                        self.info.name
                    ));
                }
            },
            Ok((Err(message),)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                ctx.reply_error(&message);
            }
            Err(error) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                let why = describe_trap(&error, state.panic_message.take());
                *slot = None;
                ctx.reply_error(&format!(
                    "ERR guest '{}' command '{command}' {why}",
                    self.info.name
                ));
                return;
            }
        }
        state.reply.clear();
    }
}
