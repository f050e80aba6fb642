//! Per-guest store state: what host functions see while a guest runs.

use std::cell::Cell;
use std::sync::Arc;

use crate::ffi::{Ctx, GuestType};
use crate::registry::{CommandSpec, ModuleInfo};
use crate::reply::ReplyBuffer;
pub use crate::scope::CommandScope;

/// The data of a guest's `Store`. Host functions get `&mut GuestState`.
pub struct GuestState {
    /// The guest's name for log lines and errors (a placeholder until `init-module`).
    pub label: Arc<str>,
    pub phase: Phase,
    pub reply: ReplyBuffer,
    /// Set by the guest's panic hook just before it aborts.
    pub panic_message: Option<String>,
    pub limiter: crate::limits::GuestLimiter,
    /// How the current call may run (time limits, yielding); `None` when idle.
    pub clock: Option<crate::busy::Clock>,
    /// What the guest printed (WASI stdout/stderr), on its way to the Redis log.
    pub output: crate::wasi::Output,
    /// The next handle number (never reused in this store's life; see `scope.rs`).
    next_handle: u32,
    /// Whether the running command has written; one flag per instance, reset for each command
    /// (a guest never runs twice at once).
    pub wrote: Arc<std::sync::atomic::AtomicBool>,
    /// The data types the guest declared in init, by index.
    pub data_types: Vec<DeclaredType>,
    /// The last command's scope, reset and reused by the next (see `CommandScope::reset`).
    pub spare_scope: Option<Box<CommandScope>>,
    /// Reused copies of `call` arguments (see `api/call.rs`).
    pub call_args: crate::api::CallArgs,
    /// A reused copy of a byte argument read from guest memory (see `api/keys.rs`).
    pub byte_arg: Vec<u8>,
}

/// A data type a guest declared in its init. A type new to the server is registered with Redis
/// only when the load is published (`registry::commit`): a load that fails leaves none behind
/// (a type on the master alone would let it take `RESTORE`s that its replicas and its AOF
/// refuse). Until then it is looked up by name.
pub struct DeclaredType {
    name: String,
    encoding_version: i32,
    registered: Cell<Option<&'static GuestType>>,
}

impl DeclaredType {
    pub fn new(name: String, encoding_version: i32) -> Self {
        let registered = Cell::new(crate::ffi::find_type(&name));
        DeclaredType {
            name,
            encoding_version,
            registered,
        }
    }

    /// The registered type, once there is one.
    fn registered(&self) -> Option<&'static GuestType> {
        if self.registered.get().is_none() {
            self.registered.set(crate::ffi::find_type(&self.name));
        }
        self.registered.get()
    }
}

/// What the guest is doing, which decides which host functions it may call.
pub enum Phase {
    Idle,
    Init(InitScope),
    /// Boxed so that starting and ending a command moves a pointer, and so the scope can be
    /// kept for the next command (`GuestState::spare_scope`).
    Command(Box<CommandScope>),
}

/// Collected while `init` runs; committed to the registry only if the whole load succeeds.
#[derive(Default)]
pub struct InitScope {
    pub module: Option<ModuleInfo>,
    pub commands: Vec<CommandSpec>,
    /// Declared data types: name and encoding version.
    pub data_types: Vec<(String, i32)>,
    /// The context of the load, when there is one (not for background re-instantiation).
    pub ctx: Option<Ctx>,
}

impl GuestState {
    pub fn new(label: Arc<str>, limiter: crate::limits::GuestLimiter) -> Self {
        GuestState {
            label,
            phase: Phase::Idle,
            reply: ReplyBuffer::default(),
            panic_message: None,
            limiter,
            clock: None,
            output: Default::default(),
            next_handle: 1,
            wrote: Arc::default(),
            data_types: Vec::new(),
            spare_scope: None,
            call_args: Default::default(),
            byte_arg: Vec::new(),
        }
    }

    /// Sends what the guest printed to the Redis log.
    pub fn flush_output(&mut self) {
        self.output.flush(&self.label);
    }

    /// A data type the guest declared, by index.
    pub fn data_type(&self, index: u32) -> Option<&'static GuestType> {
        self.data_type_with_version(index).map(|(ty, _)| ty)
    }

    /// A data type the guest declared and its encoding version.
    pub fn data_type_with_version(&self, index: u32) -> Option<(&'static GuestType, i32)> {
        let declared = self.data_types.get(index as usize)?;
        Some((declared.registered()?, declared.encoding_version))
    }

    /// Whether handle numbers are running low: the instance should be replaced (between
    /// commands, quietly) before `new_handle` can fail. Numbers are never reused, so a handle a
    /// guest kept by mistake can never alias a newer one.
    pub fn handles_running_low(&self) -> bool {
        self.next_handle > u32::MAX / 2
    }

    /// For `WASM.DEBUG HANDLES`: jumps the handle numbers ahead.
    pub fn set_next_handle(&mut self, next: u32) {
        self.next_handle = next.max(1);
    }

    /// A fresh handle number. Running out would allow an old handle to alias a new one, so it
    /// is a trap (the instance is then replaced).
    pub fn new_handle(&mut self) -> wasmtime::Result<u32> {
        let number = self.next_handle;
        self.next_handle = number
            .checked_add(1)
            .ok_or_else(|| wasmtime::Error::msg("the instance used up its handle numbers"))?;
        Ok(number)
    }

    /// The running command, or the message for a function that needs one.
    pub fn command(&mut self) -> Result<&mut CommandScope, &'static str> {
        crate::inject::maybe_panic("host-function");
        match &mut self.phase {
            Phase::Command(scope) => Ok(&mut **scope),
            _ => Err("only available while a command runs"),
        }
    }

    /// The context of whatever is running on the main thread, with a client (whose database
    /// functions such as `key-exists` use), if any: `None` in a background job (whose
    /// thread-safe context is only used under Redis's lock, by `call`) and in an init run while
    /// an RDB loads (Redis gives that context no client).
    pub fn ctx(&self) -> Option<Ctx> {
        match &self.phase {
            Phase::Init(scope) => scope.ctx.filter(|ctx| ctx.has_client()),
            _ => self.any_ctx(),
        }
    }

    /// Like [`ctx`](Self::ctx), but also a context without a client, for what needs none
    /// (context flags).
    pub fn any_ctx(&self) -> Option<Ctx> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Init(scope) => scope.ctx,
            Phase::Command(scope) if scope.in_background() => None,
            Phase::Command(scope) => Some(scope.ctx),
        }
    }
}
