//! `RedisModule_Call` and call replies.

use std::ffi::{CStr, c_char, c_int};
use std::ptr::{self, NonNull};
use std::sync::{Arc, OnceLock};

use redis_module::raw;

use super::{Ctx, OwnedString};

unsafe extern "C" {
    /// glibc's errno location: RM_Call reports why it refused a command through errno.
    fn __errno_location() -> *mut c_int;
}

fn set_errno(value: c_int) {
    // SAFETY: glibc returns a valid thread-local pointer.
    unsafe { *__errno_location() = value };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *__errno_location() }
}

/// Runs `f` with `args` as an array of `RedisModuleString` pointers, alive until `f` returns. A
/// stack array holds the usual few (this runs for every call and every replicated write).
pub(super) fn with_argv<A: AsRef<[u8]>, R>(
    args: &[A],
    f: impl FnOnce(&mut [*mut raw::RedisModuleString]) -> R,
) -> R {
    const ON_STACK: usize = 16;
    let mut stack = [const { None::<OwnedString> }; ON_STACK];
    let mut heap = Vec::new();
    let strings: &mut [Option<OwnedString>] = if args.len() <= ON_STACK {
        &mut stack[..args.len()]
    } else {
        heap.resize_with(args.len(), || None);
        &mut heap
    };
    let mut pointers = [ptr::null_mut(); ON_STACK];
    let mut pointers_heap = Vec::new();
    let argv: &mut [*mut raw::RedisModuleString] = if args.len() <= ON_STACK {
        &mut pointers[..args.len()]
    } else {
        pointers_heap.resize(args.len(), ptr::null_mut());
        &mut pointers_heap
    };
    for ((slot, pointer), arg) in strings.iter_mut().zip(argv.iter_mut()).zip(args) {
        let string = OwnedString::new(arg.as_ref());
        *pointer = string.as_ptr();
        *slot = Some(string);
    }
    f(argv)
}

/// Calls and replications with at most this many arguments pass them as `b` specifiers (a
/// pointer and a length each): Redis makes their strings into an argument vector it sizes from
/// the format. With a `v` array the host makes each string first, and Redis grows the vector
/// (a `realloc`, ≈ 5% of a guest's `call INCR`).
pub(super) const MAX_BYTE_ARGS: usize = 6;

/// A `RedisModule_Call`/`Replicate` format: the modifiers, then the argument specifiers,
/// NUL-ended.
pub(super) struct Format([u8; 24]);

impl Format {
    /// The modifiers, then `v` (an argv array and its length).
    pub(super) fn with_vector(modifiers: &[u8]) -> Self {
        Self::with_specifiers(modifiers, b'v', 1)
    }

    /// The modifiers, then a `b` for each of `count` (at most [`MAX_BYTE_ARGS`]) arguments.
    pub(super) fn with_byte_args(modifiers: &[u8], count: usize) -> Self {
        Self::with_specifiers(modifiers, b'b', count.min(MAX_BYTE_ARGS))
    }

    fn with_specifiers(modifiers: &[u8], specifier: u8, count: usize) -> Self {
        let mut text = [0u8; 24];
        let len = modifiers.len().min(text.len() - 1 - count);
        text[..len].copy_from_slice(&modifiers[..len]);
        text[len..len + count].fill(specifier);
        Format(text)
    }

    pub(super) fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

/// Runs `f` with a NUL-terminated copy of `text` (NULs replaced by spaces, as in `c_string`),
/// on the stack when it is short.
pub(super) fn with_c_str<R>(text: &[u8], f: impl FnOnce(*const c_char) -> R) -> R {
    let mut buf = [0u8; 64];
    if text.len() < buf.len() {
        for (to, &from) in buf.iter_mut().zip(text) {
            *to = if from == 0 { b' ' } else { from };
        }
        f(buf.as_ptr().cast())
    } else {
        let owned = super::c_string(text);
        f(owned.as_ptr())
    }
}

/// The type of a call reply (`REDISMODULE_REPLY_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    Unknown,
    String,
    Error,
    Integer,
    Array,
    Null,
    Map,
    Set,
    Bool,
    Double,
    BigNumber,
    Verbatim,
    Attribute,
}

/// A call reply or an element of one, as Redis's pointer: what reading it needs. Only ever
/// borrowed from the [`CallReply`] or [`FreshReply`] that keeps it alive (neither `Copy` nor
/// `Clone`, and made only here).
#[derive(Debug)]
pub struct ReplyRef(NonNull<raw::RedisModuleCallReply>);

impl ReplyRef {
    fn as_ptr(&self) -> *mut raw::RedisModuleCallReply {
        self.0.as_ptr()
    }
}

/// The top-level reply of one `RM_Call`; freed when the last reference goes.
#[derive(Debug)]
struct Root(ReplyRef);

// SAFETY: a call reply is private to the command (or background job) that made it: reading it
// parses its own buffer, and freeing it touches only the thread-safe allocator and the flags of
// the context that made it, which outlives it (replies are freed or detached before their
// context goes). So it may be used from a job's thread without Redis's lock.
unsafe impl Send for Root {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for Root {}

impl Drop for Root {
    fn drop(&mut self) {
        // SAFETY: we own the top-level reply; elements are only reachable through it.
        unsafe { super::api!(RedisModule_FreeCallReply)(self.0.as_ptr()) };
    }
}

/// A call reply or an element of one. Elements keep their root alive.
#[derive(Debug)]
pub struct CallReply {
    root: Arc<Root>,
    ptr: ReplyRef,
}

impl Clone for CallReply {
    fn clone(&self) -> Self {
        CallReply {
            root: self.root.clone(),
            ptr: ReplyRef(self.ptr.0),
        }
    }
}

// SAFETY: as for `Root`: an element belongs to its top-level reply, private to the command or job
// that made the call; reading it parses the reply's own buffer (no server state), and `root`
// keeps it alive.
unsafe impl Send for CallReply {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for CallReply {}

impl std::ops::Deref for CallReply {
    type Target = ReplyRef;

    fn deref(&self) -> &ReplyRef {
        &self.ptr
    }
}

/// The top-level reply `RM_Call` just gave, owned alone: freed when dropped. Most replies are
/// read at once (an integer, a short string); only one the guest keeps becomes a [`CallReply`]
/// ([`share`](Self::share)), whose reference count is an allocation.
#[derive(Debug)]
pub struct FreshReply(Root);

impl FreshReply {
    /// The reply as a [`CallReply`], which its elements can keep alive.
    pub fn share(self) -> CallReply {
        let ptr = ReplyRef((self.0).0.0);
        CallReply {
            root: Arc::new(self.0),
            ptr,
        }
    }
}

impl std::ops::Deref for FreshReply {
    type Target = ReplyRef;

    fn deref(&self) -> &ReplyRef {
        &(self.0).0
    }
}

fn bytes_from(p: *const c_char, len: usize) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: Redis returned a pointer to `len` bytes owned by the reply, which is alive.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec())
}

impl ReplyRef {
    pub fn kind(&self) -> ReplyKind {
        // SAFETY: `self` is borrowed from the reply that keeps it alive (see `ReplyRef`).
        let t = unsafe { super::api!(RedisModule_CallReplyType)(self.as_ptr()) } as isize;
        match t {
            raw::REDISMODULE_REPLY_STRING => ReplyKind::String,
            raw::REDISMODULE_REPLY_ERROR => ReplyKind::Error,
            raw::REDISMODULE_REPLY_INTEGER => ReplyKind::Integer,
            raw::REDISMODULE_REPLY_ARRAY => ReplyKind::Array,
            raw::REDISMODULE_REPLY_NULL => ReplyKind::Null,
            raw::REDISMODULE_REPLY_MAP => ReplyKind::Map,
            raw::REDISMODULE_REPLY_SET => ReplyKind::Set,
            raw::REDISMODULE_REPLY_BOOL => ReplyKind::Bool,
            raw::REDISMODULE_REPLY_DOUBLE => ReplyKind::Double,
            raw::REDISMODULE_REPLY_BIG_NUMBER => ReplyKind::BigNumber,
            raw::REDISMODULE_REPLY_VERBATIM_STRING => ReplyKind::Verbatim,
            raw::REDISMODULE_REPLY_ATTRIBUTE => ReplyKind::Attribute,
            _ => ReplyKind::Unknown,
        }
    }

    pub fn length(&self) -> u64 {
        // SAFETY: as in `kind`.
        unsafe { super::api!(RedisModule_CallReplyLength)(self.as_ptr()) as u64 }
    }

    pub fn integer(&self) -> i64 {
        // SAFETY: as in `kind`; returns LLONG_MIN for other types.
        unsafe { super::api!(RedisModule_CallReplyInteger)(self.as_ptr()) }
    }

    /// The bytes of a string, status or error reply.
    pub fn string(&self) -> Option<Vec<u8>> {
        self.string_bytes().map(<[u8]>::to_vec)
    }

    /// The bytes of a string, status or error reply, borrowed from the reply.
    pub fn string_bytes(&self) -> Option<&[u8]> {
        let mut len = 0usize;
        // SAFETY: as in `kind`; NULL for a reply of any other type (Redis checks the type).
        let p = unsafe { super::api!(RedisModule_CallReplyStringPtr)(self.as_ptr(), &mut len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: `len` bytes owned by the reply, which lives as long as `self` (via `root`).
        Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
    }

    pub fn double(&self) -> f64 {
        // SAFETY: as in `kind`.
        unsafe { super::api!(RedisModule_CallReplyDouble)(self.as_ptr()) }
    }

    pub fn boolean(&self) -> bool {
        // SAFETY: as in `kind`.
        unsafe { super::api!(RedisModule_CallReplyBool)(self.as_ptr()) != 0 }
    }

    pub fn big_number(&self) -> Option<String> {
        if self.kind() != ReplyKind::BigNumber {
            return None;
        }
        let mut len = 0usize;
        // SAFETY: as in `kind`.
        let p = unsafe { super::api!(RedisModule_CallReplyBigNumber)(self.as_ptr(), &mut len) };
        bytes_from(p, len).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn verbatim(&self) -> Option<(String, Vec<u8>)> {
        if self.kind() != ReplyKind::Verbatim {
            return None;
        }
        let mut len = 0usize;
        let mut format: *const c_char = ptr::null();
        // SAFETY: as in `kind`; the format is 3 bytes inside the reply.
        let p = unsafe {
            super::api!(RedisModule_CallReplyVerbatim)(self.as_ptr(), &mut len, &mut format)
        };
        let text = bytes_from(p, len)?;
        let format = bytes_from(format, 3)
            .map(|f| String::from_utf8_lossy(&f).into_owned())
            .unwrap_or_default();
        Some((format, text))
    }

    /// Whether the reply carries a RESP3 attribute.
    pub fn has_attribute(&self) -> bool {
        // SAFETY: as in `kind`; NULL when the reply has no attribute.
        !unsafe { super::api!(RedisModule_CallReplyAttribute)(self.as_ptr()) }.is_null()
    }

    /// The reply's RESP encoding.
    pub fn proto(&self) -> Vec<u8> {
        let mut len = 0usize;
        // SAFETY: as in `kind`.
        let p = unsafe { super::api!(RedisModule_CallReplyProto)(self.as_ptr(), &mut len) };
        bytes_from(p, len).unwrap_or_default()
    }

    /// The length of the reply's RESP encoding (what forwarding it sends, give or take a
    /// RESP3-to-RESP2 conversion).
    pub fn proto_len(&self) -> usize {
        let mut len = 0usize;
        // SAFETY: as in `kind`.
        unsafe { super::api!(RedisModule_CallReplyProto)(self.as_ptr(), &mut len) };
        len
    }

    /// Reads element `index` of an array or set reply, or of a map's (or an attribute's) keys and
    /// values taken alternately (`kind`: what [`kind`](ReplyRef::kind) said of it), with `read`, borrowed
    /// from this reply: a loop over many elements spares the checks and the reference count
    /// each [`CallReply::array_element`] makes. None out of range or for another kind.
    pub fn read_element<R>(
        &self,
        kind: ReplyKind,
        index: u64,
        read: impl FnOnce(&ReplyRef) -> R,
    ) -> Option<R> {
        let index = usize::try_from(index).ok()?;
        // SAFETY: as in `kind`; Redis checks the reply's type and the index (NULL if either is
        // wrong). The element lives as long as this reply, which `read` cannot outlive.
        let element = unsafe {
            match kind {
                ReplyKind::Array => {
                    super::api!(RedisModule_CallReplyArrayElement)(self.as_ptr(), index)
                }
                ReplyKind::Set => {
                    super::api!(RedisModule_CallReplySetElement)(self.as_ptr(), index)
                }
                ReplyKind::Map | ReplyKind::Attribute => {
                    let (mut key, mut value) = (ptr::null_mut(), ptr::null_mut());
                    let pair = match kind {
                        ReplyKind::Map => super::api!(RedisModule_CallReplyMapElement),
                        _ => super::api!(RedisModule_CallReplyAttributeElement),
                    };
                    let status = pair(self.as_ptr(), index / 2, &mut key, &mut value);
                    match status == super::OK {
                        true if index.is_multiple_of(2) => key,
                        true => value,
                        false => ptr::null_mut(),
                    }
                }
                _ => return None,
            }
        };
        NonNull::new(element).map(|element| read(&ReplyRef(element)))
    }

    /// How deep aggregates nest in this reply (0 for a scalar, 1 for an array of scalars, ...;
    /// a RESP3 attribute counts as a map beside its reply), counted up to `limit + 1`: a deeper
    /// reply reads as `limit + 1`, and the walk stops there.
    pub fn nesting(&self, limit: usize) -> usize {
        let attribute = self
            .attribute_ref(|attribute| attribute.nesting(limit))
            .unwrap_or(0);
        let kind = self.kind();
        let count = match kind {
            ReplyKind::Array | ReplyKind::Set => self.length(),
            ReplyKind::Map | ReplyKind::Attribute => self.length().saturating_mul(2),
            _ => return attribute,
        };
        if limit == 0 {
            return 1;
        }
        let mut deepest = 0;
        for index in 0..count {
            let inner = self.read_element(kind, index, |element| element.nesting(limit - 1));
            deepest = deepest.max(inner.unwrap_or(0));
            if deepest >= limit {
                break;
            }
        }
        (1 + deepest).max(attribute)
    }

    /// Reads this reply's attribute (RESP3), if it has one, with `read`.
    fn attribute_ref<R>(&self, read: impl FnOnce(&ReplyRef) -> R) -> Option<R> {
        // SAFETY: as in `kind`; NULL when the reply has no attribute, else a reply that lives
        // as long as this one, which `read` cannot outlive.
        let attribute = unsafe { super::api!(RedisModule_CallReplyAttribute)(self.as_ptr()) };
        NonNull::new(attribute).map(|attribute| read(&ReplyRef(attribute)))
    }

    /// Whether a reply of kind [`ReplyKind::String`] is a status reply (`+...`) rather than a
    /// bulk string. (Callers know the kind already: asking Redis again costs per element.)
    pub fn string_is_status(&self) -> bool {
        self.proto_starts_with(b'+')
    }

    /// Whether a reply of kind [`ReplyKind::Null`] is RESP2's null array (`*-1`) rather than
    /// its null bulk string (`$-1`; both are `_` in RESP3).
    pub fn null_is_array(&self) -> bool {
        self.proto_starts_with(b'*')
    }

    /// Whether the reply's RESP encoding starts with `byte`.
    fn proto_starts_with(&self, byte: u8) -> bool {
        let mut len = 0usize;
        // SAFETY: as in `kind`.
        let p = unsafe { super::api!(RedisModule_CallReplyProto)(self.as_ptr(), &mut len) };
        // SAFETY: when non-NULL, `p` points at `len` bytes of the live reply.
        !p.is_null() && len > 0 && unsafe { *p } == byte as c_char
    }
}

impl CallReply {
    fn child(&self, ptr: *mut raw::RedisModuleCallReply) -> Option<CallReply> {
        NonNull::new(ptr).map(|ptr| CallReply {
            root: self.root.clone(),
            ptr: ReplyRef(ptr),
        })
    }

    pub fn array_element(&self, index: u64) -> Option<CallReply> {
        if self.kind() != ReplyKind::Array || index >= self.length() {
            return None;
        }
        // SAFETY: an in-range element of an array reply.
        self.child(unsafe {
            super::api!(RedisModule_CallReplyArrayElement)(self.ptr.as_ptr(), index as usize)
        })
    }

    pub fn set_element(&self, index: u64) -> Option<CallReply> {
        if self.kind() != ReplyKind::Set || index >= self.length() {
            return None;
        }
        // SAFETY: an in-range element of a set reply.
        self.child(unsafe {
            super::api!(RedisModule_CallReplySetElement)(self.ptr.as_ptr(), index as usize)
        })
    }

    pub fn map_element(&self, index: u64) -> Option<(CallReply, CallReply)> {
        if self.kind() != ReplyKind::Map || index >= self.length() {
            return None;
        }
        let mut key = ptr::null_mut();
        let mut value = ptr::null_mut();
        // SAFETY: an in-range pair of a map reply; Redis writes two element pointers.
        let status = unsafe {
            super::api!(RedisModule_CallReplyMapElement)(
                self.ptr.as_ptr(),
                index as usize,
                &mut key,
                &mut value,
            )
        };
        if status != super::OK {
            return None;
        }
        Some((self.child(key)?, self.child(value)?))
    }

    pub fn attribute(&self) -> Option<CallReply> {
        // SAFETY: as in `kind`; NULL when the reply has no attribute.
        self.child(unsafe { super::api!(RedisModule_CallReplyAttribute)(self.ptr.as_ptr()) })
    }
}

/// Commands whose keys follow a count, and the count's position in the command line (the
/// command name at 0): Redis 7.0's ACL key search (`getKeysUsingKeySpecs`) sizes its result by
/// that count before checking it against the line, so `EVAL x 2147483000` would allocate 17 GB
/// and abort Redis, for a user whose key access is limited.
const KEY_COUNT_AT: [(&str, usize); 18] = [
    ("eval", 2),
    ("evalsha", 2),
    ("eval_ro", 2),
    ("evalsha_ro", 2),
    ("fcall", 2),
    ("fcall_ro", 2),
    ("zunionstore", 2),
    ("zinterstore", 2),
    ("zdiffstore", 2),
    ("blmpop", 2),
    ("bzmpop", 2),
    ("zunion", 1),
    ("zinter", 1),
    ("zdiff", 1),
    ("zintercard", 1),
    ("sintercard", 1),
    ("lmpop", 1),
    ("zmpop", 1),
];

/// Whether a command line's key count (for the commands of [`KEY_COUNT_AT`]) fits the
/// arguments after it; other lines, and counts that are not numbers, are Redis's to judge.
/// `args` are the arguments after the command name.
pub fn key_count_fits(command: &str, args: &[Vec<u8>]) -> bool {
    // Every call asks: most commands are none of these, told apart by their first letter.
    if !matches!(
        command.as_bytes().first().map(u8::to_ascii_lowercase),
        Some(b'b' | b'e' | b'f' | b'l' | b's' | b'z')
    ) {
        return true;
    }
    let Some(&(_, at)) = KEY_COUNT_AT
        .iter()
        .find(|(name, _)| name.len() == command.len() && name.eq_ignore_ascii_case(command))
    else {
        return true;
    };
    let Some(count) = args
        .get(at - 1)
        .and_then(|c| std::str::from_utf8(c).ok()?.parse::<i64>().ok())
    else {
        return true;
    };
    let after = args.len() - at;
    u64::try_from(count).map_or(true, |count| count <= after as u64)
}

/// `RedisModule_ACLCheckCommandPermissions` for `command args`. An unknown command or a wrong
/// argument count passes: `RM_Call` checks both before its ACL check and refuses them itself.
fn may_run(user: *mut raw::RedisModuleUser, command: &str, args: &[Vec<u8>]) -> bool {
    matches!(
        acl_check(user, command, args),
        Ok(()) | Err(ENOENT | EINVAL)
    )
}

/// `RedisModule_ACLCheckCommandPermissions` of `command args...` for `user`: the `errno` of a
/// refusal (`ENOENT`: no such command, `EINVAL`: a wrong argument count, `EACCES`: not
/// allowed).
///
/// The argument count is checked first, with `RedisModule_GetCommandKeysWithFlags`: Redis's ACL
/// check finds the keys of the command line without checking its arity (Redis checks it
/// before, for a client's commands), and for some commands (`EVAL`, `ZUNION`, `LMPOP`, ...)
/// reads past the arguments of a line that is too short — a crash, with a line a guest chose.
/// So is the key count of those commands ([`key_count_fits`]). Only commands with keys have
/// their argument count checked (Redis's function stops earlier for the others, which are
/// safe to check).
fn acl_check(
    user: *mut raw::RedisModuleUser,
    command: &str,
    args: &[Vec<u8>],
) -> Result<(), c_int> {
    with_line_keys(command, args, |_, argv, _| {
        let argc = c_int::try_from(argv.len()).map_err(|_| EINVAL)?;
        set_errno(0);
        // SAFETY: a live user (the caller's) and `argc` valid strings of a line whose argument
        // count fits the command, only read.
        let status = unsafe {
            super::api!(RedisModule_ACLCheckCommandPermissions)(user, argv.as_mut_ptr(), argc)
        };
        if status == super::OK {
            Ok(())
        } else {
            Err(errno())
        }
    })
}

/// The keys of the command line `command args...`, as Redis finds them; none for an unknown
/// command or a line whose argument count does not fit it.
pub fn command_keys(command: &str, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    with_line_keys(command, args, |line, _, positions| {
        Ok(positions
            .iter()
            .filter_map(|&i| line.get(i))
            .map(|key| key.to_vec())
            .collect())
    })
    .unwrap_or_default()
}

/// Runs `f` with the line `command args...`, as bytes and as Redis strings, and the positions
/// of its keys (`RedisModule_GetCommandKeysWithFlags`), once its argument count is known to fit
/// the command: the `errno` of Redis's refusal otherwise (`ENOENT`: no such command, `EINVAL`: a
/// wrong argument count or key count; see [`acl_check`]).
fn with_line_keys<R>(
    command: &str,
    args: &[Vec<u8>],
    f: impl FnOnce(&[&[u8]], &mut [*mut raw::RedisModuleString], &[usize]) -> Result<R, c_int>,
) -> Result<R, c_int> {
    if !key_count_fits(command, args) {
        return Err(EINVAL);
    }
    let full: Vec<&[u8]> = std::iter::once(command.as_bytes())
        .chain(args.iter().map(Vec::as_slice))
        .collect();
    with_argv(&full, |argv| {
        let argc = c_int::try_from(argv.len()).map_err(|_| EINVAL)?;
        set_errno(0);
        let mut key_count: c_int = 0;
        // SAFETY: `argc` valid strings, only read (the context is unused); a non-NULL result is
        // an array of `key_count` argument positions Redis allocated for us, copied and freed
        // at once.
        let positions: Vec<usize> = unsafe {
            let keys = super::api!(RedisModule_GetCommandKeysWithFlags)(
                ptr::null_mut(),
                argv.as_mut_ptr(),
                argc,
                &mut key_count,
                ptr::null_mut(),
            );
            if keys.is_null() {
                // NULL with errno 0: a command without keys, or none on this line.
                match errno() {
                    0 => Vec::new(),
                    refused => return Err(refused),
                }
            } else {
                let found =
                    std::slice::from_raw_parts(keys, usize::try_from(key_count).unwrap_or(0))
                        .iter()
                        .filter_map(|&i| usize::try_from(i).ok())
                        .collect();
                super::api!(RedisModule_Free)(keys.cast());
                found
            }
        };
        f(&full, argv, &positions)
    })
}

/// A module user the host asks Redis's ACL about command lines with: Redis keeps it out of its
/// user list (nobody can log in as it).
struct LookupUser(NonNull<raw::RedisModuleUser>);

// SAFETY: created once and only read by Redis under its lock (ACL checks); never freed.
unsafe impl Send for LookupUser {}
// SAFETY: as above.
unsafe impl Sync for LookupUser {}

impl LookupUser {
    /// A module user called `name` with ACL `rules`, alive for the server's life (never freed);
    /// `None` if Redis refuses a rule.
    fn new(name: &CStr, rules: &[&CStr]) -> Option<LookupUser> {
        // SAFETY: NUL-terminated strings; the user is a module user Redis keeps out of its
        // user list, alive for the server's life (never freed).
        unsafe {
            let user = NonNull::new(super::api!(RedisModule_CreateModuleUser)(name.as_ptr()))?;
            for rule in rules {
                if super::api!(RedisModule_SetModuleUserACL)(user.as_ptr(), rule.as_ptr())
                    != super::OK
                {
                    return None;
                }
            }
            Some(LookupUser(user))
        }
    }
}

/// Allowed every command, key and channel: whether Redis knows a command line.
static LOOKUP_USER: OnceLock<Option<LookupUser>> = OnceLock::new();

/// Allowed what a replica may be sent to replay: not administrative, transaction, connection,
/// scripting, blocking or pub/sub commands (a replica replays `SHUTDOWN`, `MULTI`, `SELECT` or
/// `CLUSTER RESET` from its master, and breaks or diverges), but `PUBLISH`, `SPUBLISH` and the
/// harmless `PING` and `ECHO` (Redis's example module replicates `ECHO`);
/// not `MIGRATE`, which would move the replica's keys to another server. These categories hold
/// every command that scripts may not run.
static REPLICABLE_USER: OnceLock<Option<LookupUser>> = OnceLock::new();

/// Allowed the commands that may write (`@write`).
static WRITER_USER: OnceLock<Option<LookupUser>> = OnceLock::new();

/// What Redis says of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandLine {
    Unknown,
    WrongArity,
    Valid,
}

/// Whether Redis knows `command` (with its subcommand from `args`, for a command that has
/// subcommands), and whether `args` fit its arity: the checks of [`acl_check`] for a module user
/// allowed everything. Unlike `COMMAND INFO` through `RM_Call`, it shows in no MONITOR, SLOWLOG
/// or commandstats. Only under Redis's lock.
pub fn command_line(command: &str, args: &[Vec<u8>]) -> CommandLine {
    let user = LOOKUP_USER.get_or_init(|| {
        // All keys and channels too: the ACL check then never looks at the arguments.
        LookupUser::new(
            c"wasm-command-lookup",
            &[c"allcommands", c"allkeys", c"allchannels"],
        )
    });
    let Some(user) = user else {
        return CommandLine::Valid;
    };
    match acl_check(user.0.as_ptr(), command, args) {
        Err(ENOENT) => CommandLine::Unknown,
        Err(EINVAL) => CommandLine::WrongArity,
        _ => CommandLine::Valid,
    }
}

/// Whether Redis knows `command` and it has subcommands (`CONFIG`, `OBJECT`, ...): a line of it
/// alone is not unknown, and one with a subcommand no command has is. Only under Redis's lock.
pub fn has_subcommands(command: &str) -> bool {
    command_line(command, &[]) != CommandLine::Unknown
        && command_line(command, &[NO_SUCH_COMMAND.as_bytes().to_vec()]) == CommandLine::Unknown
}

/// Whether a replica may be sent `command args` to replay (see [`REPLICABLE_USER`]): asked of a
/// known command line with a fitting arity ([`command_line`]). Only under Redis's lock.
pub fn replicable(command: &str, args: &[Vec<u8>]) -> bool {
    let user = REPLICABLE_USER.get_or_init(|| {
        LookupUser::new(
            c"wasm-replicable",
            &[
                c"+@all",
                c"-@admin",
                c"-@transaction",
                c"-@connection",
                c"-@scripting",
                c"-@blocking",
                c"-@pubsub",
                c"+publish",
                c"+spublish",
                c"+ping",
                c"+echo",
                c"-migrate",
                c"allkeys",
                c"allchannels",
            ],
        )
    });
    // Without it (Redis refused a rule), nothing is replicated rather than anything.
    user.as_ref()
        .is_some_and(|user| acl_check(user.0.as_ptr(), command, args).is_ok())
}

/// Whether `command args` may write (Redis's `@write`); unknown commands do not. Only under
/// Redis's lock.
pub fn command_may_write(command: &str, args: &[Vec<u8>]) -> bool {
    let user = WRITER_USER.get_or_init(|| {
        LookupUser::new(
            c"wasm-writer-lookup",
            &[c"+@write", c"allkeys", c"allchannels"],
        )
    });
    // Without it, every command is taken to write (the stricter answer).
    user.as_ref()
        .is_none_or(|user| acl_check(user.0.as_ptr(), command, args).is_ok())
}

/// Why `RM_Call` did not run the command (its `errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallRefusal {
    UnknownCommand,
    WrongArity,
    NotAllowed,
    NoSpace,
    NoPermission,
    NonLocalKey,
    ClusterDown,
    Other(c_int),
}

const ENOENT: c_int = 2;
const EBADF: c_int = 9;
const EACCES: c_int = 13;
const EPERM: c_int = 1;
const EINVAL: c_int = 22;
const ENOSPC: c_int = 28;
const ESPIPE: c_int = 29;
const EROFS: c_int = 30;
const ENETDOWN: c_int = 100;
const ENOTSUP: c_int = 95;

/// What Redis's ACL refuses of a command line a user may not run, as Redis words and logs its
/// own refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclDenial {
    Command,
    /// A key the user may not touch at all (one it may read but not write counts as the
    /// command, as for Redis's ACL LOG).
    Key,
    /// The channel of a publication.
    Channel,
}

impl AclDenial {
    /// The `NOPERM` error for `command`, in Redis's words.
    pub fn message(self, command: &str) -> String {
        match self {
            AclDenial::Command => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                command.to_ascii_lowercase()
            ),
            AclDenial::Key => "NOPERM this user has no permissions to access one of the keys \
                               used as arguments"
                .to_owned(),
            AclDenial::Channel => "NOPERM this user has no permissions to access one of the \
                                   channels used as arguments"
                .to_owned(),
        }
    }
}

/// Why `user` may not run `command args` (asked of a line it may not run), with the key or
/// channel refused (empty for the command).
fn denial(
    user: *mut raw::RedisModuleUser,
    command: &str,
    args: &[Vec<u8>],
) -> (AclDenial, Vec<u8>) {
    let refused_key = command_keys(command, args).into_iter().find(|key| {
        // SAFETY: a live user (the caller's), under Redis's lock.
        unsafe { !super::keys::may_access_key(user, key, super::KeyAccess::Exists) }
    });
    if let Some(key) = refused_key {
        return (AclDenial::Key, key);
    }
    // The channel a publication goes to (the only commands with channels a guest may
    // replicate).
    let is_publish = ["publish", "spublish"]
        .iter()
        .any(|c| command.eq_ignore_ascii_case(c));
    if let Some(channel) = args.first().filter(|_| is_publish) {
        let name = OwnedString::new(channel);
        // SAFETY: a live user under Redis's lock, and a valid string, only read.
        let allowed = unsafe {
            super::api!(RedisModule_ACLCheckChannelPermissions)(
                user,
                name.as_ptr(),
                raw::REDISMODULE_CMD_CHANNEL_PUBLISH as c_int,
            ) == super::OK
        };
        if !allowed {
            return (AclDenial::Channel, channel.clone());
        }
    }
    (AclDenial::Command, Vec::new())
}

/// The ACL user the context's own client runs as (see [`Ctx::context_user`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextUser {
    Named(Vec<u8>),
    /// No user: Redis checks nothing for such a client (the master's, the AOF's, another
    /// module's call made without `C`).
    Unchecked,
    /// The probe answered something it never does: treat as a user allowed nothing.
    Unknown,
}

/// A command name no command can have (lookups never match a space).
const NO_SUCH_COMMAND: &str = "wasm probe: no such command";

impl Ctx {
    /// The ACL user of the context's client itself, for a client that is no connection and so
    /// cannot be looked up by id: a Lua script's client (which runs as the script's caller), or
    /// another module's `RM_Call` client (as the user it called with).
    pub fn context_user(self) -> ContextUser {
        // `RedisModule_GetCurrentUserName` reads the client's user without checking for none.
        // A `C` call checks that before anything else (ENOTSUP), then looks the command up: a
        // call of a command that cannot exist tells the two apart and runs nothing.
        match self.call(NO_SUCH_COMMAND, &[] as &[&[u8]], b"C") {
            Err(CallRefusal::Other(ENOTSUP)) => ContextUser::Unchecked,
            Err(CallRefusal::UnknownCommand) => {
                // SAFETY: valid context whose client has a user (the probe above); Redis returns
                // a new string, freed by OwnedString (the context has no automatic memory).
                let name = unsafe { super::api!(RedisModule_GetCurrentUserName)(self.0.as_ptr()) };
                match NonNull::new(name) {
                    Some(name) => ContextUser::Named(OwnedString(name).bytes().to_vec()),
                    None => ContextUser::Unknown,
                }
            }
            _ => ContextUser::Unknown,
        }
    }

    /// Whether the ACL user of client `client_id` may run `command args` (the command, its
    /// subcommand and its keys). `None` as for [`Ctx::client_may_access_key`]. An unknown
    /// command is allowed here: running it answers that it is unknown.
    pub fn client_may_run(self, client_id: u64, command: &str, args: &[Vec<u8>]) -> Option<bool> {
        self.client_may_run_as(client_id, command, command, args)
    }

    /// [`client_may_run`](Self::client_may_run), with a refusal recorded in `ACL LOG` as one of
    /// `shown_as` (a command standing in for another).
    pub fn client_may_run_as(
        self,
        client_id: u64,
        shown_as: &str,
        command: &str,
        args: &[Vec<u8>],
    ) -> Option<bool> {
        self.with_client_user(client_id, |user| {
            self.may_run_logged(user, shown_as, command, args)
        })
    }

    /// Like [`client_may_run`](Self::client_may_run), for the user called `user_name` (`None`:
    /// there is none).
    pub fn user_may_run(self, user_name: &[u8], command: &str, args: &[Vec<u8>]) -> Option<bool> {
        super::keys::with_user_named(&OwnedString::new(user_name), |user| {
            self.may_run_logged(user, command, command, args)
        })
    }

    /// Why the ACL user of client `client_id` may not run `command args` (see [`AclDenial`]);
    /// `None` without a user.
    pub fn client_denial(
        self,
        client_id: u64,
        command: &str,
        args: &[Vec<u8>],
    ) -> Option<AclDenial> {
        let name = self.client_user(client_id)?;
        super::keys::with_user_named(&name, |user| denial(user, command, args).0)
    }

    /// Like [`client_denial`](Self::client_denial), for the user called `user_name`.
    pub fn user_denial(
        self,
        user_name: &[u8],
        command: &str,
        args: &[Vec<u8>],
    ) -> Option<AclDenial> {
        super::keys::with_user_named(&OwnedString::new(user_name), |user| {
            denial(user, command, args).0
        })
    }

    fn may_run_logged(
        self,
        user: *mut raw::RedisModuleUser,
        shown_as: &str,
        command: &str,
        args: &[Vec<u8>],
    ) -> bool {
        let allowed = may_run(user, command, args);
        if allowed {
            return true;
        }
        let (why, object) = denial(user, command, args);
        let (object, reason) = match why {
            AclDenial::Key => (
                object,
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
            ),
            AclDenial::Channel => (
                object,
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CHANNEL,
            ),
            AclDenial::Command => (
                shown_as.to_ascii_lowercase().into_bytes(),
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CMD,
            ),
        };
        // SAFETY: the live user of the callers' closures, under Redis's lock.
        unsafe { self.logged(user, &object, reason, false) }
    }

    /// `RedisModule_Call(ctx, command, "<modifiers>bb…", ptr, len, …)`, or with a `v` array
    /// past [`MAX_BYTE_ARGS`] arguments.
    pub fn call<A: AsRef<[u8]>>(
        self,
        command: &str,
        args: &[A],
        modifiers: &[u8],
    ) -> Result<FreshReply, CallRefusal> {
        with_c_str(command.as_bytes(), |command| {
            set_errno(0);
            let reply = if args.len() <= MAX_BYTE_ARGS {
                let format = Format::with_byte_args(modifiers, args.len());
                // SAFETY: valid context; NUL-terminated command and format, with a `b` for each
                // argument, whose bytes live for the call; Redis copies them.
                unsafe {
                    super::with_byte_args!(
                        super::api!(RedisModule_Call),
                        (self.0.as_ptr(), command),
                        format.as_ptr(),
                        args
                    )
                }
            } else {
                with_argv(args, |argv| {
                    let format = Format::with_vector(modifiers);
                    // SAFETY: valid context; NUL-terminated command and format; "v" takes an
                    // array of RedisModuleString pointers and its length, alive for the call
                    // (see `with_argv`); Redis retains what it keeps.
                    unsafe {
                        super::api!(RedisModule_Call)(
                            self.0.as_ptr(),
                            command,
                            format.as_ptr(),
                            argv.as_mut_ptr(),
                            argv.len(),
                        )
                    }
                })
            };
            match NonNull::new(reply) {
                Some(ptr) => Ok(FreshReply(Root(ReplyRef(ptr)))),
                None => Err(match errno() {
                    ENOENT => CallRefusal::UnknownCommand,
                    EINVAL => CallRefusal::WrongArity,
                    ESPIPE => CallRefusal::NotAllowed,
                    ENOSPC => CallRefusal::NoSpace,
                    EACCES => CallRefusal::NoPermission,
                    EPERM => CallRefusal::NonLocalKey,
                    EROFS | ENETDOWN => CallRefusal::ClusterDown,
                    EBADF => CallRefusal::Other(EBADF),
                    other => CallRefusal::Other(other),
                }),
            }
        })
    }

    /// `RedisModule_ReplyWithCallReply`: false if Redis refused (a RESP3 reply to a RESP2 client).
    pub fn reply_call_reply(self, reply: &ReplyRef) -> bool {
        // SAFETY: valid context and a live reply.
        unsafe {
            super::api!(RedisModule_ReplyWithCallReply)(self.0.as_ptr(), reply.as_ptr())
                == super::OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_count_fits;

    fn fits(command: &str, args: &[&str]) -> bool {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        key_count_fits(command, &args)
    }

    #[test]
    fn key_counts_must_fit_the_line() {
        assert!(fits("EVAL", &["return 1", "2", "a", "b"]));
        assert!(fits("eval", &["return 1", "0"]));
        assert!(!fits("EVAL", &["return 1", "2147483000"]));
        assert!(!fits("Eval", &["return 1", "3", "a", "b"]));
        assert!(!fits("ZUNION", &["2147483000", "a"]));
        assert!(fits("zunion", &["1", "a"]));
        assert!(!fits("BLMPOP", &["0", "9", "a", "LEFT"]));
        // Negative or non-numeric counts and short lines are Redis's to refuse.
        assert!(fits("EVAL", &["return 1", "-1"]));
        assert!(fits("EVAL", &["return 1", "many"]));
        assert!(fits("EVAL", &["return 1"]));
        // Other commands are not looked at.
        assert!(fits("GET", &["2147483000"]));
        // The first-letter shortcut lets every listed command, in any case, through to its
        // check: a count past what the line holds is refused.
        for (name, at) in super::KEY_COUNT_AT {
            let mut line = vec!["x"; at];
            line[at - 1] = "2147483000";
            assert!(!fits(&name.to_ascii_uppercase(), &line), "{name}");
            assert!(!fits(name, &line), "{name}");
        }
    }
}
