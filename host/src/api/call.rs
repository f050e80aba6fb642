//! `redis:module/call`: `RedisModule_Call` and call replies.
//!
//! Every call runs in script mode (`S`), as the calling user (`C`, unless the command came from
//! the master or the AOF, which have no user), respecting `deny-oom` (`M`), refusing writes from
//! commands not flagged `write` (`W`), and replicating its effects (`!`). Keys are suspended
//! around the call (see `scope.rs`).

use wasmtime::component::Resource;

use super::bindings::redis::module::call::{CallError, CallFlags, Host, HostCallReply, ReplyType};
use crate::ffi::{CallRefusal, ReplyKind, ctx_flags};
use crate::scope::{MAX_HANDLES, ReplyHandle, ReplyRes};
use crate::state::GuestState;

type R<T> = wasmtime::Result<T>;

fn modifiers(flags: CallFlags, may_write: bool, verbatim: bool, ctx_flags_now: u32) -> String {
    let mut m = String::from("SM");
    if ctx_flags_now & (ctx_flags::REPLICATED | ctx_flags::LOADING) == 0 {
        m.push('C');
    }
    if !may_write || flags.contains(CallFlags::NO_WRITES) {
        m.push('W');
    } else if !verbatim {
        m.push('!');
    }
    if flags.contains(CallFlags::NO_AOF) {
        m.push('A');
    }
    if flags.contains(CallFlags::NO_REPLICAS) {
        m.push('R');
    }
    if flags.contains(CallFlags::RESP3) {
        m.push('3');
    } else if flags.contains(CallFlags::RESP_AUTO) {
        m.push('0');
    }
    m
}

fn refusal(refusal: CallRefusal, command: &str, oom: bool) -> CallError {
    match refusal {
        CallRefusal::UnknownCommand => {
            CallError::UnknownCommand(format!("ERR unknown command '{command}'"))
        }
        CallRefusal::WrongArity => CallError::WrongArity(format!(
            "ERR wrong number of arguments for '{command}' command"
        )),
        CallRefusal::NotAllowed => CallError::NotAllowed(format!(
            "ERR command '{command}' is not allowed here (not from scripts or guests, or writes are refused: read-only replica, disk error, too few replicas)"
        )),
        CallRefusal::NoSpace if oom => CallError::OutOfMemory(
            "OOM command not allowed when used memory > 'maxmemory'.".to_owned(),
        ),
        CallRefusal::NoSpace => CallError::WriteNotAllowed(format!(
            "ERR write command '{command}' called from a command not flagged 'write'"
        )),
        CallRefusal::NoPermission => CallError::NoPermission(format!(
            "NOPERM this user has no permissions to run the '{command}' command or its keys"
        )),
        CallRefusal::NonLocalKey => CallError::NonLocalKey(
            "ERR Attempted to access a non local key in a cluster node".to_owned(),
        ),
        CallRefusal::ClusterDown => {
            CallError::ClusterDown("CLUSTERDOWN the cluster is down".to_owned())
        }
        CallRefusal::Other(errno) => CallError::Other(format!(
            "ERR the call of '{command}' failed (errno {errno})"
        )),
    }
}

impl Host for GuestState {
    fn call(
        &mut self,
        command: String,
        args: Vec<Vec<u8>>,
        flags: CallFlags,
    ) -> R<Result<Resource<ReplyRes>, CallError>> {
        let rep = self.new_handle()?;
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(CallError::Other(format!("ERR call is {why}")))),
        };
        if scope.handle_count() >= MAX_HANDLES {
            return Ok(Err(CallError::Other(format!(
                "ERR a command may hold at most {MAX_HANDLES} handles"
            ))));
        }
        let now = scope.ctx.flags();
        let modifiers = modifiers(flags, scope.may_write, scope.effects.verbatim, now);
        let resp3 = flags.contains(CallFlags::RESP3)
            || (flags.contains(CallFlags::RESP_AUTO) && now & ctx_flags::RESP3 != 0);
        scope.suspend_keys();
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        match scope.ctx.call(&command, &argv, &modifiers) {
            Ok(reply) => {
                if modifiers.contains('!') {
                    scope.effects.calls_replicated = true;
                    if reply.kind() != ReplyKind::Error {
                        scope
                            .effects
                            .wrote
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                scope.replies.insert(rep, ReplyHandle { reply, resp3 });
                Ok(Ok(Resource::new_own(rep)))
            }
            Err(why) => {
                let oom = scope.ctx.flags() & ctx_flags::OOM != 0;
                Ok(Err(refusal(why, &command.to_ascii_lowercase(), oom)))
            }
        }
    }
}

impl GuestState {
    /// The call reply behind a handle; `None` once released.
    fn reply(&mut self, handle: &Resource<ReplyRes>) -> Option<&ReplyHandle> {
        self.command().ok()?.replies.get(&handle.rep())
    }

    /// A handle for an element of a reply.
    fn element(
        &mut self,
        parent: &Resource<ReplyRes>,
        get: impl FnOnce(&crate::ffi::CallReply) -> Option<crate::ffi::CallReply>,
    ) -> R<Option<Resource<ReplyRes>>> {
        let Some((element, resp3)) = self
            .reply(parent)
            .and_then(|p| Some((get(&p.reply)?, p.resp3)))
        else {
            return Ok(None);
        };
        let rep = self.new_handle()?;
        let Ok(scope) = self.command() else {
            return Ok(None);
        };
        if scope.handle_count() >= MAX_HANDLES {
            return Err(wasmtime::Error::msg(format!(
                "the guest holds more than {MAX_HANDLES} handles"
            )));
        }
        scope.replies.insert(
            rep,
            ReplyHandle {
                reply: element,
                resp3,
            },
        );
        Ok(Some(Resource::new_own(rep)))
    }
}

impl HostCallReply for GuestState {
    fn reply_type(&mut self, this: Resource<ReplyRes>) -> R<ReplyType> {
        Ok(match self.reply(&this).map(|r| r.reply.kind()) {
            Some(ReplyKind::String) => ReplyType::String,
            Some(ReplyKind::Error) => ReplyType::Error,
            Some(ReplyKind::Integer) => ReplyType::Integer,
            Some(ReplyKind::Array) => ReplyType::Array,
            Some(ReplyKind::Null) => ReplyType::Null,
            Some(ReplyKind::Map) => ReplyType::Map,
            Some(ReplyKind::Set) => ReplyType::Set,
            Some(ReplyKind::Bool) => ReplyType::Bool,
            Some(ReplyKind::Double) => ReplyType::Double,
            Some(ReplyKind::BigNumber) => ReplyType::BigNumber,
            Some(ReplyKind::Verbatim) => ReplyType::VerbatimString,
            Some(ReplyKind::Attribute) => ReplyType::Attribute,
            Some(ReplyKind::Unknown) | None => ReplyType::Unknown,
        })
    }

    fn length(&mut self, this: Resource<ReplyRes>) -> R<u64> {
        Ok(self.reply(&this).map_or(0, |r| r.reply.length()))
    }

    fn integer(&mut self, this: Resource<ReplyRes>) -> R<i64> {
        Ok(self.reply(&this).map_or(i64::MIN, |r| r.reply.integer()))
    }

    fn string(&mut self, this: Resource<ReplyRes>) -> R<Option<Vec<u8>>> {
        Ok(self.reply(&this).and_then(|r| r.reply.string()))
    }

    fn double(&mut self, this: Resource<ReplyRes>) -> R<f64> {
        Ok(self.reply(&this).map_or(0.0, |r| {
            if r.reply.kind() == ReplyKind::Double {
                r.reply.double()
            } else {
                0.0
            }
        }))
    }

    fn bool(&mut self, this: Resource<ReplyRes>) -> R<bool> {
        Ok(self
            .reply(&this)
            .is_some_and(|r| r.reply.kind() == ReplyKind::Bool && r.reply.boolean()))
    }

    fn big_number(&mut self, this: Resource<ReplyRes>) -> R<Option<String>> {
        Ok(self.reply(&this).and_then(|r| r.reply.big_number()))
    }

    fn verbatim(&mut self, this: Resource<ReplyRes>) -> R<Option<(String, Vec<u8>)>> {
        Ok(self.reply(&this).and_then(|r| r.reply.verbatim()))
    }

    fn array_element(
        &mut self,
        this: Resource<ReplyRes>,
        index: u64,
    ) -> R<Option<Resource<ReplyRes>>> {
        self.element(&this, |r| r.array_element(index))
    }

    fn set_element(
        &mut self,
        this: Resource<ReplyRes>,
        index: u64,
    ) -> R<Option<Resource<ReplyRes>>> {
        self.element(&this, |r| r.set_element(index))
    }

    fn map_element(
        &mut self,
        this: Resource<ReplyRes>,
        index: u64,
    ) -> R<Option<(Resource<ReplyRes>, Resource<ReplyRes>)>> {
        let Some((key, value)) = self
            .reply(&this)
            .and_then(|p| p.reply.map_element(index).map(|kv| (kv, p.resp3)))
            .map(|((k, v), resp3)| {
                (
                    ReplyHandle { reply: k, resp3 },
                    ReplyHandle { reply: v, resp3 },
                )
            })
        else {
            return Ok(None);
        };
        let (kr, vr) = (self.new_handle()?, self.new_handle()?);
        let Ok(scope) = self.command() else {
            return Ok(None);
        };
        if scope.handle_count() + 1 >= MAX_HANDLES {
            return Err(wasmtime::Error::msg(format!(
                "the guest holds more than {MAX_HANDLES} handles"
            )));
        }
        scope.replies.insert(kr, key);
        scope.replies.insert(vr, value);
        Ok(Some((Resource::new_own(kr), Resource::new_own(vr))))
    }

    fn attribute(&mut self, this: Resource<ReplyRes>) -> R<Option<Resource<ReplyRes>>> {
        self.element(&this, |r| r.attribute())
    }

    fn proto(&mut self, this: Resource<ReplyRes>) -> R<Vec<u8>> {
        Ok(self
            .reply(&this)
            .map(|r| r.reply.proto())
            .unwrap_or_default())
    }

    fn drop(&mut self, this: Resource<ReplyRes>) -> R<()> {
        if let Ok(scope) = self.command() {
            scope.replies.remove(&this.rep());
        }
        Ok(())
    }
}
