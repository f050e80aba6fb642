//! Per-guest store state: what host functions see while a guest runs.

use std::sync::Arc;

use wasmtime::StoreLimits;

use crate::ffi::Ctx;
use crate::registry::{CommandSpec, ModuleInfo};
use crate::reply::ReplyBuffer;

/// The data of a guest's `Store`. Host functions get `&mut GuestState`.
pub struct GuestState {
    /// The guest's name for log lines and errors (a placeholder until `init-module`).
    pub label: Arc<str>,
    pub phase: Phase,
    pub reply: ReplyBuffer,
    /// Set by the guest's panic hook just before it aborts.
    pub panic_message: Option<String>,
    pub limits: StoreLimits,
    /// What the guest printed (WASI stdout/stderr), on its way to the Redis log.
    pub output: crate::wasi::Output,
}

/// What the guest is doing, which decides which host functions it may call.
pub enum Phase {
    Idle,
    Init(InitScope),
    Command(CommandScope),
}

/// Collected while `init` runs; committed to the registry only if the whole load succeeds.
#[derive(Default)]
pub struct InitScope {
    pub module: Option<ModuleInfo>,
    pub commands: Vec<CommandSpec>,
    /// The context of the load, when there is one (not for background re-instantiation).
    pub ctx: Option<Ctx>,
}

/// One running command.
pub struct CommandScope {
    pub ctx: Ctx,
    pub command: Arc<CommandSpec>,
}

impl GuestState {
    pub fn new(label: Arc<str>, limits: StoreLimits) -> Self {
        GuestState {
            label,
            phase: Phase::Idle,
            reply: ReplyBuffer::default(),
            panic_message: None,
            limits,
            output: Default::default(),
        }
    }

    /// The context of whatever is running, if any.
    pub fn ctx(&self) -> Option<Ctx> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Init(scope) => scope.ctx,
            Phase::Command(scope) => Some(scope.ctx),
        }
    }
}
