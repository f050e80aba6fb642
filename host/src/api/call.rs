//! `redis:module/call`: `RedisModule_Call` and call replies.
//!
//! Every call runs in script mode (`S`), as the calling user (`C`, unless the command came from
//! the master or the AOF, which have no user), respecting `deny-oom` (`M`), refusing writes from
//! commands not flagged `write` (`W`), and replicating its effects (`!`). Keys are suspended
//! around the call (see `scope.rs`). `call` itself is registered by [`define_call`], which reads
//! the command and arguments from guest memory into buffers the instance reuses.

use super::bindings::redis::module::call::{
    CallError, CallFlags, CallReply as ReplyNumber, CallReplyBatch, CallValue, ElementKind, Host,
    ReplyType,
};
use super::{MAX_BATCH_BYTES, batch_room};
use crate::ffi::{CallRefusal, CallReply, ReplyKind, ReplyRef, ctx_flags};
use crate::scope::{Capture, MAX_HANDLES, ReplyHandle};
use crate::state::GuestState;
use wasmtime::component::{Linker, WasmList, WasmStr};
use wasmtime::{AsContextMut, StoreContextMut};

type R<T> = wasmtime::Result<T>;

/// Copies of a `call`'s command and arguments, kept by the instance and reused, so reading them
/// out of guest memory allocates nothing once warm.
#[derive(Default)]
pub struct CallArgs {
    command: String,
    args: Vec<Vec<u8>>,
    /// The argument lists as the guest passed them, valid for one call.
    lists: Vec<WasmList<u8>>,
}

impl CallArgs {
    /// Copies bigger than this in all are freed after the call rather than kept.
    const KEEP_MAX: usize = 64 * 1024;

    /// Copies `command` and `args` out of guest memory (a trap if they are out of bounds or
    /// the command is not UTF-8, as bindgen's lifting would); `self.args[..args.len()]` are
    /// the arguments.
    fn read(
        &mut self,
        mut store: StoreContextMut<'_, GuestState>,
        command: &WasmStr,
        args: &WasmList<WasmList<u8>>,
    ) -> R<()> {
        self.command.clear();
        self.command.push_str(&command.to_str(&store)?);
        self.lists.clear();
        for list in args.iter(&mut store)? {
            self.lists.push(list?);
        }
        if self.args.len() < self.lists.len() {
            self.args.resize_with(self.lists.len(), Vec::new);
        }
        for (copy, list) in self.args.iter_mut().zip(&self.lists) {
            copy.clear();
            copy.extend_from_slice(list.as_le_slice(&store));
        }
        self.lists.clear();
        Ok(())
    }

    /// Frees the copies if a big call left them big.
    fn trim(&mut self) {
        let kept = self.command.capacity() + self.args.iter().map(Vec::capacity).sum::<usize>();
        if kept > Self::KEEP_MAX || self.args.len() > 1024 {
            *self = CallArgs::default();
        }
    }
}

/// Defines `call` over bindgen's version, which lifts the command and arguments into a fresh
/// `String` and `Vec<Vec<u8>>` on every call (three allocations for `INCR key`): this one reads
/// them from guest memory into the instance's [`CallArgs`]. Type checking at instantiation
/// still holds it to the WIT signature.
pub fn define_call(linker: &mut Linker<GuestState>) -> R<()> {
    let (major, minor, patch) = super::WIT_VERSION;
    let interface = format!("{}/call@{major}.{minor}.{patch}", super::WIT_PACKAGE);
    // Without shadowing this must fail, bindgen's `call` being there: otherwise the name is
    // wrong and guests would never reach this version.
    if linker
        .instance(&interface)?
        .func_wrap("call", call_from_guest_memory)
        .is_ok()
    {
        wasmtime::bail!("'{interface}' had no 'call' to replace");
    }
    linker.allow_shadowing(true);
    let defined = linker
        .instance(&interface)?
        .func_wrap("call", call_from_guest_memory);
    linker.allow_shadowing(false);
    defined
}

/// The `call` [`define_call`] registers.
fn call_from_guest_memory(
    mut store: StoreContextMut<'_, GuestState>,
    (command, args, flags): (WasmStr, WasmList<WasmList<u8>>, CallFlags),
) -> R<(Result<CallValue, CallError>,)> {
    let mut copies = std::mem::take(&mut store.data_mut().call_args);
    copies.read(store.as_context_mut(), &command, &args)?;
    let state = store.data_mut();
    let result = state.run_call(&copies.command, &copies.args[..args.len()], flags);
    copies.trim();
    state.call_args = copies;
    Ok((result?,))
}

/// `XREADGROUP` without `BLOCK`: Redis files it under `@blocking`, but it never blocks then, and
/// replicas replay it alike (a guest may not call the blocking form anyway).
fn reads_a_group_without_blocking(command: &str, args: &[Vec<u8>]) -> bool {
    command.eq_ignore_ascii_case("xreadgroup")
        && !args.iter().any(|arg| arg.eq_ignore_ascii_case(b"block"))
}

/// Whether calling `command` runs a guest command: one of a guest's names, or a dispatcher.
fn runs_a_guest(command: &str) -> bool {
    crate::flags::Variant::is_dispatcher(command.as_bytes())
        || crate::registry::with_route(command.as_bytes(), |_| ()).is_some()
}

thread_local! {
    /// How many guest `call`s are running on this thread, one inside another.
    static CALLS_RUNNING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether a command running now on this thread was called by a guest (as Lua's flag says
/// whether a script called it).
pub fn called_by_a_guest() -> bool {
    CALLS_RUNNING.get() > 0
}

/// Counts a guest's `call` as running until dropped.
struct CallRunning;

impl CallRunning {
    fn enter() -> CallRunning {
        CALLS_RUNNING.set(CALLS_RUNNING.get() + 1);
        CallRunning
    }
}

impl Drop for CallRunning {
    fn drop(&mut self) {
        CALLS_RUNNING.set(CALLS_RUNNING.get() - 1);
    }
}

/// Bulk strings up to this size are copied to the guest with the reply; longer ones stay behind
/// a handle, so forwarding one with `reply-with-call-reply` copies nothing through the guest.
const INLINE_BULK_MAX: usize = 8 * 1024;

/// What a reply is, as `call` and `call-reply-elements` hand scalars to the guest by value.
enum Scalar<'a> {
    Integer(i64),
    Bulk(&'a [u8]),
    Status(&'a [u8]),
    Error(&'a [u8]),
    Null,
    /// An aggregate, a double, ..., or a RESP3 reply with an attribute the guest may want.
    Other,
}

fn scalar(reply: &ReplyRef, resp3: bool) -> Scalar<'_> {
    let kind = reply.kind();
    if resp3 && kind != ReplyKind::Attribute && reply.has_attribute() {
        return Scalar::Other;
    }
    match kind {
        ReplyKind::Integer => Scalar::Integer(reply.integer()),
        ReplyKind::Null => Scalar::Null,
        ReplyKind::Error | ReplyKind::String => match reply.string_bytes() {
            None => Scalar::Other,
            Some(text) if kind == ReplyKind::Error => Scalar::Error(text),
            Some(text) if reply.string_is_status() => Scalar::Status(text),
            Some(text) => Scalar::Bulk(text),
        },
        _ => Scalar::Other,
    }
}

/// The reply as an inline value, when it is a small scalar (see `call-value` in the WIT).
fn inline_value(reply: &ReplyRef, resp3: bool) -> Option<CallValue> {
    match scalar(reply, resp3) {
        Scalar::Integer(n) => Some(CallValue::Integer(n)),
        Scalar::Error(text) => Some(CallValue::Error(text.to_vec())),
        Scalar::Status(text) => Some(CallValue::Status(text.to_vec())),
        Scalar::Bulk(text) if text.len() <= INLINE_BULK_MAX => Some(CallValue::Bulk(text.to_vec())),
        _ => None,
    }
}

/// Appends `element` to a batch's bytes as `call-reply-elements` lays it out (strings of any
/// length), and says what it is.
fn add_to_batch(element: &ReplyRef, resp3: bool, bytes: &mut Vec<u8>) -> ElementKind {
    let (kind, text) = match scalar(element, resp3) {
        Scalar::Integer(n) => {
            bytes.extend_from_slice(&n.to_le_bytes());
            return ElementKind::Integer;
        }
        Scalar::Null => return ElementKind::Null,
        Scalar::Other => return ElementKind::Other,
        Scalar::Bulk(text) => (ElementKind::Bulk, text),
        Scalar::Status(text) => (ElementKind::Status, text),
        Scalar::Error(text) => (ElementKind::Error, text),
    };
    bytes.extend_from_slice(text);
    kind
}

/// The modifiers of a call's `RedisModule_Call` format (`ffi::Ctx::call` adds the argument
/// specifiers), built without allocating.
struct Modifiers {
    text: [u8; 12],
    len: usize,
    /// Whether the call replicates its effects (`!`).
    replicates: bool,
    /// Whether write commands are refused (`W`).
    refuses_writes: bool,
}

impl Modifiers {
    /// `replayed`: the command replays the master's or the AOF's work (see
    /// `busy::inside_replayed`), which runs without ACL or out-of-memory checks: the master
    /// made them (and Redis's memory state then is the replaying command's, not the master's).
    fn new(flags: CallFlags, may_write: bool, verbatim: bool, replayed: bool) -> Self {
        let mut m = Modifiers {
            text: [0; 12],
            len: 0,
            replicates: false,
            refuses_writes: false,
        };
        m.push(b'S');
        if !replayed {
            m.push(b'M');
            m.push(b'C');
        }
        if !may_write || flags.contains(CallFlags::NO_WRITES) {
            m.push(b'W');
            m.refuses_writes = true;
        } else if !verbatim {
            m.push(b'!');
            m.replicates = true;
        }
        if flags.contains(CallFlags::NO_AOF) {
            m.push(b'A');
        }
        if flags.contains(CallFlags::NO_REPLICAS) {
            m.push(b'R');
        }
        if flags.contains(CallFlags::RESP3) {
            m.push(b'3');
        } else if flags.contains(CallFlags::RESP_AUTO) {
            m.push(b'0');
        }
        m
    }

    fn push(&mut self, byte: u8) {
        self.text[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }

    /// Whether the call replicates its effects (`!`).
    fn replicates(&self) -> bool {
        self.replicates
    }

    /// Whether write commands are refused (`W`).
    fn refuses_writes(&self) -> bool {
        self.refuses_writes
    }
}

/// Whether a command line may give a key an expire: the `EXPIRE` family, and the string
/// commands with a time option (`SET ... EX`, `GETEX`, `RESTORE` with a TTL, ...).
fn may_set_expire(command: &str, args: &[Vec<u8>]) -> bool {
    const ALWAYS: [&str; 7] = [
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "setex",
        "psetex",
        "restore",
    ];
    const WITH_OPTIONS: [(&str, usize); 2] = [("set", 2), ("getex", 1)];
    ALWAYS.iter().any(|name| name.eq_ignore_ascii_case(command))
        || WITH_OPTIONS
            .iter()
            .any(|&(name, plain)| name.eq_ignore_ascii_case(command) && args.len() > plain)
}

/// The error for a call Redis refused. `refuses_writes`: the call had `W`, so Redis refused
/// any write command before its script-mode checks of writes.
/// Why the command cannot write, for a write call Redis refused with `ENOSPC` (outside OOM).
#[derive(Clone, Copy)]
enum NoWrites {
    /// The guest asked for it (`NO_WRITES`).
    CallFlag,
    NotFlagged,
    BackgroundJob,
    ClientsPaused,
}

impl NoWrites {
    /// Why the command cannot write: the reason that holds whenever the call is made first.
    fn of(scope: &crate::scope::CommandScope, flags: CallFlags) -> NoWrites {
        if flags.contains(CallFlags::NO_WRITES) {
            NoWrites::CallFlag
        } else if !scope.command.flags.variant().may_write() {
            NoWrites::NotFlagged
        } else if scope.in_background() {
            NoWrites::BackgroundJob
        } else if scope.writes_paused {
            NoWrites::ClientsPaused
        } else {
            NoWrites::NotFlagged
        }
    }

    /// The error refusing `what` ("write command 'set'").
    fn refusal(self, what: &str) -> CallError {
        CallError::WriteNotAllowed(match self {
            NoWrites::CallFlag => format!("ERR {what} called with the NO_WRITES flag"),
            NoWrites::NotFlagged => {
                format!("ERR {what} called from a command not flagged 'write'")
            }
            NoWrites::BackgroundJob => format!(
                "ERR {what} called from a background job: jobs only read (write in the \
                 command's reply phase)"
            ),
            NoWrites::ClientsPaused => crate::ffi::WRITES_PAUSED.to_owned(),
        })
    }
}

/// Whether `command args` is one of Redis's commands not flagged `write` that replicate
/// themselves when they change something (`may-replicate`: `PUBLISH`, `SPUBLISH`, and `PFCOUNT`,
/// which may rewrite its key's cached count) and that scripts may run, with a valid arity.
/// `RM_Call`'s `W` refuses only `write` commands, and a call without `!` would run these without
/// replicating them: they are refused where writes are, as Lua refuses them in read-only
/// scripts. (Redis 7.0 gives modules no way to read a command's flags; another module's
/// `may-replicate` commands are not recognized.)
fn may_replicate(command: &str, args: &[Vec<u8>]) -> bool {
    let is = |name: &str| command.eq_ignore_ascii_case(name);
    ((is("publish") || is("spublish")) && args.len() == 2) || (is("pfcount") && !args.is_empty())
}

/// Whether `user` may run `command args` as Redis will check it: a guest command's line is
/// its dispatcher's (the command filter rewrites it inside `RM_Call` too).
fn user_may_run_as_routed(
    ctx: crate::ffi::Ctx,
    user: &[u8],
    command: &str,
    args: &[Vec<u8>],
) -> Option<bool> {
    match crate::registry::variant_of(command.as_bytes()) {
        Some(variant) => {
            let line: Vec<Vec<u8>> = std::iter::once(command.as_bytes().to_vec())
                .chain(args.iter().cloned())
                .collect();
            ctx.user_may_run(user, variant.command_name(), &line)
        }
        None => ctx.user_may_run(user, command, args),
    }
}

fn refusal(
    refusal: CallRefusal,
    command: &str,
    oom: bool,
    denial: Option<crate::ffi::AclDenial>,
    refuses_writes: bool,
    no_writes: NoWrites,
) -> CallError {
    match refusal {
        CallRefusal::UnknownCommand => {
            CallError::UnknownCommand(format!("ERR unknown command '{command}'"))
        }
        CallRefusal::WrongArity => CallError::WrongArity(format!(
            "ERR wrong number of arguments for '{command}' command"
        )),
        // Redis runs the call in script mode (`S`); ESPIPE is one of its script-mode refusals.
        CallRefusal::NotAllowed if refuses_writes => CallError::NotAllowed(format!(
            "ERR command '{command}' cannot be called from a guest: Redis refuses it in scripts \
             and guests"
        )),
        CallRefusal::NotAllowed => CallError::NotAllowed(format!(
            "ERR command '{command}' is refused: Redis refuses it in scripts and guests, or \
             refuses writes now (read-only replica, disk error, too few good replicas)"
        )),
        CallRefusal::NoSpace if oom => CallError::OutOfMemory(
            "OOM command not allowed when used memory > 'maxmemory'.".to_owned(),
        ),
        CallRefusal::NoSpace => no_writes.refusal(&format!("write command '{command}'")),
        CallRefusal::NoPermission => CallError::NoPermission(
            denial
                .unwrap_or(crate::ffi::AclDenial::Command)
                .message(command),
        ),
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
    /// Bindgen's lifted form, which guests never reach: [`define_call`] registers `call` over
    /// it. The trait still needs it.
    fn call(
        &mut self,
        command: String,
        args: Vec<Vec<u8>>,
        flags: CallFlags,
    ) -> R<Result<CallValue, CallError>> {
        self.run_call(&command, &args, flags)
    }

    fn call_reply_type(&mut self, handle: ReplyNumber) -> R<ReplyType> {
        Ok(match self.reply(handle).map(|r| r.reply.kind()) {
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

    fn call_reply_length(&mut self, handle: ReplyNumber) -> R<u64> {
        Ok(self.reply(handle).map_or(0, |r| r.reply.length()))
    }

    fn call_reply_integer(&mut self, handle: ReplyNumber) -> R<i64> {
        Ok(self.reply(handle).map_or(i64::MIN, |r| r.reply.integer()))
    }

    fn call_reply_string(&mut self, handle: ReplyNumber) -> R<Option<Vec<u8>>> {
        Ok(self.reply(handle).and_then(|r| r.reply.string()))
    }

    fn call_reply_double(&mut self, handle: ReplyNumber) -> R<f64> {
        Ok(self.reply(handle).map_or(0.0, |r| {
            if r.reply.kind() == ReplyKind::Double {
                r.reply.double()
            } else {
                0.0
            }
        }))
    }

    fn call_reply_bool(&mut self, handle: ReplyNumber) -> R<bool> {
        Ok(self
            .reply(handle)
            .is_some_and(|r| r.reply.kind() == ReplyKind::Bool && r.reply.boolean()))
    }

    fn call_reply_big_number(&mut self, handle: ReplyNumber) -> R<Option<String>> {
        Ok(self.reply(handle).and_then(|r| r.reply.big_number()))
    }

    fn call_reply_verbatim(&mut self, handle: ReplyNumber) -> R<Option<(String, Vec<u8>)>> {
        Ok(self.reply(handle).and_then(|r| r.reply.verbatim()))
    }

    fn call_reply_array_element(
        &mut self,
        handle: ReplyNumber,
        index: u64,
    ) -> R<Option<CallValue>> {
        self.element(handle, |r| r.array_element(index))
    }

    fn call_reply_set_element(&mut self, handle: ReplyNumber, index: u64) -> R<Option<CallValue>> {
        self.element(handle, |r| r.set_element(index))
    }

    fn call_reply_map_element(
        &mut self,
        handle: ReplyNumber,
        index: u64,
    ) -> R<Option<(CallValue, CallValue)>> {
        let Some((key, value)) = self.reply(handle).and_then(|p| {
            let (k, v) = p.reply.map_element(index)?;
            let resp3 = p.resp3;
            Some((
                ReplyHandle { reply: k, resp3 },
                ReplyHandle { reply: v, resp3 },
            ))
        }) else {
            return Ok(None);
        };
        Ok(Some((self.value_of(key)?, self.value_of(value)?)))
    }

    fn call_reply_elements(
        &mut self,
        handle: ReplyNumber,
        start: u64,
        max: u32,
    ) -> R<CallReplyBatch> {
        let mut batch = CallReplyBatch {
            kinds: Vec::new(),
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        let Some(parent) = self.reply(handle) else {
            return Ok(batch);
        };
        let (reply, resp3) = (&parent.reply, parent.resp3);
        let kind = reply.kind();
        let count = match kind {
            ReplyKind::Array | ReplyKind::Set => reply.length(),
            ReplyKind::Map => reply.length().saturating_mul(2),
            _ => 0,
        };
        let (entries, bytes) = batch_room(max, count.saturating_sub(start), 16);
        batch.kinds.reserve_exact(entries);
        batch.ends.reserve_exact(entries);
        batch.bytes.reserve(bytes);
        for index in start..start.saturating_add(u64::from(max)).min(count) {
            // The offsets count too, so a reply of many empty elements also stops.
            if batch.bytes.len() + 4 * batch.ends.len() >= MAX_BATCH_BYTES {
                break;
            }
            let bytes = &mut batch.bytes;
            let element_kind = reply
                .read_element(kind, index, |element| add_to_batch(element, resp3, bytes))
                .unwrap_or(ElementKind::Other);
            batch.kinds.push(element_kind);
            // Below MAX_BATCH_BYTES plus one element (at most 512 MB): fits in u32.
            batch.ends.push(batch.bytes.len() as u32);
        }
        Ok(batch)
    }

    fn call_reply_attribute(&mut self, handle: ReplyNumber) -> R<Option<ReplyNumber>> {
        // Always a handle: an attribute is a map the guest walks.
        let Some(attribute) = self.reply(handle).and_then(|p| {
            Some(ReplyHandle {
                reply: p.reply.attribute()?,
                resp3: p.resp3,
            })
        }) else {
            return Ok(None);
        };
        self.hold(attribute).map(Some)
    }

    fn call_reply_proto(&mut self, handle: ReplyNumber) -> R<Vec<u8>> {
        Ok(self
            .reply(handle)
            .map(|r| r.reply.proto())
            .unwrap_or_default())
    }

    fn free_call_reply(&mut self, handle: ReplyNumber) -> R<()> {
        if let Ok(scope) = self.command() {
            scope.replies.remove(&handle);
        }
        Ok(())
    }
}

impl GuestState {
    /// `call`, with the arguments borrowed (see [`define_call`]).
    fn run_call(
        &mut self,
        command: &str,
        args: &[Vec<u8>],
        flags: CallFlags,
    ) -> R<Result<CallValue, CallError>> {
        let scope = match self.command() {
            Ok(scope) => scope,
            Err(why) => return Ok(Err(CallError::Other(format!("ERR call is {why}")))),
        };
        if scope.handle_count() >= MAX_HANDLES {
            return Ok(Err(CallError::Other(format!(
                "ERR a command may hold at most {MAX_HANDLES} handles"
            ))));
        }
        // Refused as a Redis command scripts may not run is (RM_Call's script mode refuses
        // those before running them); the dispatcher could only answer an error reply.
        if crate::registry::with_route(command.as_bytes(), |r| r.spec.flags.deny_script)
            .unwrap_or(false)
        {
            return Ok(Err(CallError::NotAllowed(format!(
                "ERR command '{}' cannot be called from a guest: it is flagged deny-script",
                command.to_ascii_lowercase()
            ))));
        }
        // RM_Call's ACL check (`C`) would size a buffer by the count before checking it.
        if !crate::ffi::key_count_fits(command, args) {
            return Ok(Err(CallError::WrongArity(
                "ERR Number of keys can't be greater than number of args".to_owned(),
            )));
        }
        scope.suspend_keys();
        let ctx = scope.ctx;
        // A background job calls from its own thread: under Redis's lock, as the blocked
        // client's user.
        let lock = scope
            .background
            .as_ref()
            .map(|b| (b.ctx.lock(), b.user.as_deref()));
        // The context's flags, read only when needed: on the main thread, whether the command
        // replays the master's or the AOF's work is what the scope was prepared with (the
        // same flags and running stack, see `Guest::run`); a job's thread asks its own context.
        let now = || ctx.flags();
        // A guest command a replayed one calls runs on RM_Call's client, which Redis does not
        // flag as the master's, and which has no user to check (a `C` call would fail).
        let replayed = match lock {
            None => scope.acl.replayed(),
            Some(_) => ctx_flags::replayed(now()) || crate::busy::inside_replayed(),
        };
        // Redis deletes a key given an expire that has passed at once, but a replica replaying
        // the command only sets that expire and keeps the key: a verbatim command's call that
        // may set one replicates itself, and the command its effects from here on.
        if scope.effects.records_calls() && may_set_expire(command, args) {
            scope.effects.stop_replicating_verbatim(ctx);
        }
        let records_calls = scope.effects.records_calls();
        let modifiers = Modifiers::new(flags, scope.may_write, records_calls, replayed);
        if modifiers.refuses_writes() && may_replicate(command, args) {
            let what = format!(
                "command '{}', which may replicate like a write,",
                command.to_ascii_lowercase()
            );
            return Ok(Err(NoWrites::of(scope, flags).refusal(&what)));
        }
        let resp3 = flags.contains(CallFlags::RESP3)
            || (flags.contains(CallFlags::RESP_AUTO) && now() & ctx_flags::RESP3 != 0);
        let db = if lock.is_none() { ctx.selected_db() } else { 0 };
        // A call made unreplicated is recorded to be replicated later if need be; a guest
        // command called so hands its effects back instead (see `scope::Capture`).
        let recorded = records_calls && scope.may_write && !modifiers.refuses_writes();
        let runs_a_guest = recorded && runs_a_guest(command);
        // Its line must be one replicas can replay: a blocking command (replayed, it would
        // block the replica's link), or one that only acts on the connection (SELECT would move
        // the link to another database) cannot be. Those that may write are refused, the others
        // are not recorded.
        let replayable = !recorded
            || runs_a_guest
            || crate::ffi::replicable(command, args)
            || reads_a_group_without_blocking(command, args);
        if !replayable && crate::ffi::command_may_write(command, args) {
            return Ok(Err(CallError::NotAllowed(format!(
                "ERR command '{}' cannot be called by a command replicated verbatim (or by a \
                 guest command it calls): it may block, and replicas could not replay it; call \
                 its non-blocking form (XREADGROUP without BLOCK)",
                command.to_ascii_lowercase()
            ))));
        }
        let capture = runs_a_guest.then(Capture::open);
        let running = CallRunning::enter();
        let called = match &lock {
            None => ctx.call(command, args, modifiers.as_bytes()),
            // Redis 7.0 crashes logging an ACL denial for a context user (it reads the fake
            // client's user, which is NULL): ask first, about the line Redis will check.
            Some((lock, Some(user))) => match user_may_run_as_routed(ctx, user, command, args) {
                Some(true) => ctx
                    .as_user(lock, user, || ctx.call(command, args, modifiers.as_bytes()))
                    .unwrap_or(Err(CallRefusal::NoPermission)),
                _ => Err(CallRefusal::NoPermission),
            },
            Some((_, None)) => Err(CallRefusal::NoPermission),
        };
        // For a refused call's message: whether Redis is out of memory, read while a job still
        // holds Redis's lock (the flags read server state).
        let flags_now = if called.is_err() { now() } else { 0 };
        let oom = flags_now & ctx_flags::OOM != 0;
        let on_replica = flags_now & ctx_flags::SLAVE != 0;
        let denial = matches!(called, Err(CallRefusal::NoPermission))
            .then(|| scope.acl.denial(ctx, command, args));
        // Redis 7.0's RM_Call names neither an unknown subcommand nor the subcommand whose
        // arity is wrong: tell them as Redis tells its clients (asked while a job still holds
        // Redis's lock).
        let about_subcommand = match (&called, args.first()) {
            (Err(refused @ (CallRefusal::UnknownCommand | CallRefusal::WrongArity)), Some(sub))
                if crate::ffi::has_subcommands(command) =>
            {
                Some(match refused {
                    CallRefusal::UnknownCommand => CallError::UnknownCommand(format!(
                        "ERR unknown subcommand '{}'. Try {} HELP.",
                        crate::ffi::shown(sub),
                        command.to_ascii_uppercase()
                    )),
                    _ => CallError::WrongArity(format!(
                        "ERR wrong number of arguments for '{}|{}' command",
                        command.to_ascii_lowercase(),
                        String::from_utf8_lossy(sub).to_ascii_lowercase()
                    )),
                })
            }
            _ => None,
        };
        drop(running);
        drop(lock);
        if let Some(capture) = capture {
            capture.close(&mut scope.effects);
        }
        match called {
            Ok(reply) => {
                let succeeded = reply.kind() != ReplyKind::Error;
                if modifiers.replicates() {
                    scope.effects.propagated = true;
                    if succeeded {
                        scope.effects.mark_wrote();
                    }
                } else if records_calls && scope.may_write && succeeded {
                    // Not replicated now: the verbatim command replays it. It may have written
                    // (so the command is no longer killable), and if the command traps, the
                    // call goes out instead (a guest command's captured effects, which cannot
                    // be replaced by its line).
                    scope.effects.mark_wrote();
                    if !runs_a_guest && replayable {
                        let target = match (
                            flags.contains(CallFlags::NO_AOF),
                            flags.contains(CallFlags::NO_REPLICAS),
                        ) {
                            (false, false) => "",
                            (true, false) => "A",
                            (false, true) => "R",
                            (true, true) => "AR",
                        };
                        scope.effects.record_call(db, command, args, target);
                    }
                }
                // Most replies go back inline and are freed here: only one kept behind a handle
                // is shared (reference-counted, for its elements).
                if let Some(value) = inline_value(&reply, resp3) {
                    return Ok(Ok(value));
                }
                let reply = reply.share();
                self.hold(ReplyHandle { reply, resp3 })
                    .map(|number| Ok(CallValue::Reply(number)))
            }
            Err(_) if let Some(refusal) = about_subcommand => Ok(Err(refusal)),
            Err(why) => {
                // Refusals a replica replaying the command would not make (it has no user,
                // skips cluster, memory and script-mode checks for its master): it must not.
                if !matches!(why, CallRefusal::UnknownCommand | CallRefusal::WrongArity) {
                    scope.effects.refused_here = true;
                }
                Ok(Err(refusal(
                    why,
                    &command.to_ascii_lowercase(),
                    oom,
                    denial,
                    modifiers.refuses_writes() && !on_replica,
                    NoWrites::of(scope, flags),
                )))
            }
        }
    }

    /// The call reply behind a handle; `None` once released.
    fn reply(&mut self, handle: ReplyNumber) -> Option<&ReplyHandle> {
        self.command().ok()?.replies.get(&handle)
    }

    /// A reply as the guest receives it: small scalars inline, anything else behind a new
    /// handle.
    fn value_of(&mut self, reply: ReplyHandle) -> R<CallValue> {
        if let Some(value) = inline_value(&reply.reply, reply.resp3) {
            return Ok(value);
        }
        self.hold(reply).map(CallValue::Reply)
    }

    /// Keeps a reply for the guest under a new number (a trap past `MAX_HANDLES`: the guest is
    /// leaking them).
    fn hold(&mut self, reply: ReplyHandle) -> R<ReplyNumber> {
        let number = self.new_handle()?;
        let scope = self.command().map_err(wasmtime::Error::msg)?;
        if scope.handle_count() >= MAX_HANDLES {
            return Err(wasmtime::Error::msg(format!(
                "the guest holds more than {MAX_HANDLES} handles"
            )));
        }
        scope.replies.insert(number, reply);
        Ok(number)
    }

    /// An element of a reply, as a value.
    fn element(
        &mut self,
        parent: ReplyNumber,
        get: impl FnOnce(&CallReply) -> Option<CallReply>,
    ) -> R<Option<CallValue>> {
        let Some(element) = self.reply(parent).and_then(|p| {
            Some(ReplyHandle {
                reply: get(&p.reply)?,
                resp3: p.resp3,
            })
        }) else {
            return Ok(None);
        };
        self.value_of(element).map(Some)
    }
}
