//! Open keys (`RedisModuleKey`) and the low-level key API.
//!
//! A [`RawKey`] is closed when dropped. The host (`scope.rs`'s `CommandScope`) guarantees what
//! the C API does not: a key open for writing has no other handle, handles that a read or lookup
//! through another one could free under them are closed first, and every key is closed before
//! `RM_Call` runs and before the command returns.

use std::ffi::c_int;
use std::ptr::{self, NonNull};

use redis_module::raw;

use super::{Ctx, OwnedString};

#[derive(Debug)]
pub struct RawKey(NonNull<raw::RedisModuleKey>);

// SAFETY: keys are only used and closed under Redis's global lock, within the command that
// opened them.
unsafe impl Send for RawKey {}

impl RawKey {
    pub(super) fn as_ptr(&self) -> *mut raw::RedisModuleKey {
        self.0.as_ptr()
    }
}

impl Drop for RawKey {
    fn drop(&mut self) {
        // SAFETY: we own this open key.
        unsafe { api!(RedisModule_CloseKey)(self.0.as_ptr()) };
    }
}

/// A `RedisModule_ScanKey` cursor, destroyed when dropped.
#[derive(Debug)]
pub struct ScanCursor(NonNull<raw::RedisModuleScanCursor>);

// SAFETY: a cursor is a position and a done flag in its own allocation; only `RM_ScanKey` reads
// it, under Redis's lock, and destroying it only frees it.
unsafe impl Send for ScanCursor {}

impl ScanCursor {
    pub fn new() -> ScanCursor {
        // SAFETY: creating a cursor only allocates (Redis's allocator aborts rather than
        // returning NULL).
        let cursor = unsafe { api!(RedisModule_ScanCursorCreate)() };
        ScanCursor(NonNull::new(cursor).expect("RedisModule_ScanCursorCreate returned NULL"))
    }

    /// `RedisModule_ScanCursorRestart`.
    pub fn restart(&self) {
        // SAFETY: a live cursor we own.
        unsafe { api!(RedisModule_ScanCursorRestart)(self.0.as_ptr()) }
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        // SAFETY: a live cursor we own, not used again.
        unsafe { api!(RedisModule_ScanCursorDestroy)(self.0.as_ptr()) }
    }
}

/// What a key scan calls with each field (or member) and its value (none for a set).
pub type ScanEntry<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// What `scan_entry` is given: the caller's function, and whether it panicked.
struct ScanSink<'a> {
    entry: &'a mut ScanEntry<'a>,
    panicked: bool,
}

extern "C" fn scan_entry(
    _key: *mut raw::RedisModuleKey,
    field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
    sink: *mut std::ffi::c_void,
) {
    // SAFETY: `sink` is the `ScanSink` that `RawKey::scan_step` passed to this `RM_ScanKey`
    // call, which is still running; nothing else refers to it meanwhile.
    let sink = unsafe { &mut *sink.cast::<ScanSink<'_>>() };
    // `field` and `value` (NULL for a set) are live strings for this callback.
    let value = (!value.is_null()).then(|| super::string_bytes(value));
    let field = super::string_bytes(field);
    if super::catch("a key scan", || (sink.entry)(field, value)).is_none() {
        sink.panicked = true;
    }
}

/// Takes ownership of a string Redis returned (not under automatic memory) and copies it out.
fn take_string(s: *mut raw::RedisModuleString) -> Option<Vec<u8>> {
    let s = NonNull::new(s)?;
    let owned = OwnedString(s);
    Some(owned.bytes().to_vec())
}

const OK: c_int = super::OK;

/// Runs `check` with the ACL user called `name`; `None` if there is none (any more). Only under
/// Redis's lock (a main-thread callback, or a job holding the lock).
pub(super) fn with_user_named<T>(
    name: &OwnedString,
    check: impl FnOnce(*mut raw::RedisModuleUser) -> T,
) -> Option<T> {
    // SAFETY: a valid string. The wrapper is used only within this call, under Redis's lock, so
    // the user cannot be deleted meanwhile; freeing it frees only the wrapper (it is not a
    // module user).
    unsafe {
        let user = api!(RedisModule_GetModuleUserFromUserName)(name.as_ptr());
        if user.is_null() {
            return None;
        }
        let allowed = check(user);
        api!(RedisModule_FreeModuleUser)(user);
        Some(allowed)
    }
}

/// `RedisModule_ACLCheckKeyPermissions` of `key` for `access`: whether some selector of the user
/// allows the key, whatever commands that selector allows.
///
/// # Safety
/// `user` is live, and Redis's lock is held.
pub(super) unsafe fn may_access_key(
    user: *mut raw::RedisModuleUser,
    key: &[u8],
    access: KeyAccess,
) -> bool {
    let key = OwnedString::new(key);
    // SAFETY: a live user under the lock (the caller's promise) and a valid string; the flags
    // are among those it accepts.
    unsafe {
        api!(RedisModule_ACLCheckKeyPermissions)(user, key.as_ptr(), access.access_flags() as c_int)
            == OK
    }
}

thread_local! {
    /// While [`may_access_key_as`] asks Redis about a line: the access its key is reported
    /// with (see [`key_check_in_progress`]).
    static KEY_CHECK: std::cell::Cell<Option<KeyAccess>> = const { std::cell::Cell::new(None) };
}

/// During a key check's ACL question, on its thread: the access with which the dispatcher must
/// report the line's key (argument 2) instead of the guest command's declared keys.
pub fn key_check_in_progress() -> Option<KeyAccess> {
    KEY_CHECK.get()
}

/// Whether the user may use `key` as the guest command `command`, running through
/// `dispatcher`, would if it declared the key: as Redis checks a command's keys, one selector of
/// the user must allow both the command (with its first argument, for rules such as
/// `+wasm.invoke-readonly|mycmd`) and the key (a selector `(+del ~secret:*)` lets the user
/// delete `secret:*` keys, not read them through a guest). Asked as the line `dispatcher
/// command key`, whose key the dispatcher reports with the access's flags while
/// [`key_check_in_progress`] says so.
///
/// # Safety
/// `user` is live, and Redis's lock is held.
unsafe fn may_access_key_as(
    user: *mut raw::RedisModuleUser,
    dispatcher: &str,
    command: &str,
    key: &[u8],
    access: KeyAccess,
) -> bool {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            KEY_CHECK.set(None);
        }
    }
    let line = [dispatcher.as_bytes(), command.as_bytes(), key];
    super::call::with_argv(&line, |argv| {
        KEY_CHECK.set(Some(access));
        let _reset = Reset;
        // SAFETY: a live user under the lock (the caller's promise) and three valid strings,
        // only read; the dispatcher reports the key at position 2 of exactly this line.
        unsafe { api!(RedisModule_ACLCheckCommandPermissions)(user, argv.as_mut_ptr(), 3) == OK }
    })
}

/// What a guest does with a key, for [`Ctx::client_may_access_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAccess {
    /// Only learns whether it exists.
    Exists,
    Read,
    ReadWrite,
}

impl KeyAccess {
    /// The flags of this access that Redis's ACL checks of a key go by.
    fn access_flags(self) -> u32 {
        match self {
            KeyAccess::Exists => 0,
            KeyAccess::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            KeyAccess::ReadWrite => {
                raw::REDISMODULE_CMD_KEY_ACCESS
                    | raw::REDISMODULE_CMD_KEY_UPDATE
                    | raw::REDISMODULE_CMD_KEY_INSERT
                    | raw::REDISMODULE_CMD_KEY_DELETE
            }
        }
    }

    /// The key-spec flags a dispatcher reports a key of this access with.
    pub fn key_spec_flags(self) -> u32 {
        self.access_flags()
            | match self {
                KeyAccess::Exists => 0,
                KeyAccess::Read => raw::REDISMODULE_CMD_KEY_RO,
                KeyAccess::ReadWrite => raw::REDISMODULE_CMD_KEY_RW,
            }
    }
}

pub const MODE_READ: c_int = raw::REDISMODULE_READ as c_int;
pub const MODE_WRITE: c_int = raw::REDISMODULE_WRITE as c_int;
/// Opens a key without counting an access for LRU/LFU eviction (a handle reopened after a
/// call: its first open counted it).
pub const MODE_NO_TOUCH: c_int = raw::REDISMODULE_OPEN_KEY_NOTOUCH as c_int;

impl Ctx {
    /// `RedisModule_OpenKey`. `None` for a missing key opened for reading only.
    pub fn open_key(self, name: &[u8], mode: c_int) -> Option<RawKey> {
        let name = OwnedString::new(name);
        // SAFETY: valid context; Redis retains the name string for the key's life.
        let key = unsafe { api!(RedisModule_OpenKey)(self.0.as_ptr(), name.as_ptr(), mode) };
        NonNull::new(key.cast::<raw::RedisModuleKey>()).map(RawKey)
    }

    /// `RedisModule_KeyExists`.
    pub fn key_exists(self, name: &[u8]) -> bool {
        let name = OwnedString::new(name);
        // SAFETY: valid context and string.
        unsafe { api!(RedisModule_KeyExists)(self.0.as_ptr(), name.as_ptr()) != 0 }
    }

    /// Whether the context has a client (`RedisModule_GetClientId` is 0 without one, as in the
    /// context of an RDB load): functions about "the selected database" need one.
    pub fn has_client(self) -> bool {
        self.client_id() != 0
    }

    /// `RedisModule_GetClientId`: 0 without a client.
    pub fn client_id(self) -> u64 {
        // SAFETY: valid context; the function only reads the client's id.
        unsafe { api!(RedisModule_GetClientId)(self.0.as_ptr()) }
    }

    /// Whether the ACL user of client `client_id` may access `key`: reading it (`access`
    /// [`KeyAccess::Read`]), reading and writing it, or at all (`Exists`). `None` when there is
    /// no user to ask: no such connected client (fake clients of calls and scripts are not
    /// connected), or a client without a user (the master, the AOF).
    pub fn client_may_access_key(
        self,
        client_id: u64,
        dispatcher: &str,
        command: &str,
        key: &[u8],
        access: KeyAccess,
    ) -> Option<bool> {
        // SAFETY: the user `with_client_user` found, live for the closure, under the lock its
        // callers hold.
        self.with_client_user(client_id, |user| unsafe {
            self.logged(
                user,
                key,
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                may_access_key_as(user, dispatcher, command, key, access),
            )
        })
    }

    /// Passes `allowed` on; a refusal is recorded in `ACL LOG` (context `module`), as Redis
    /// records its own: `object` is the key or the command refused.
    ///
    /// # Safety
    /// `user` is live, and Redis's lock is held.
    pub(super) unsafe fn logged(
        self,
        user: *mut raw::RedisModuleUser,
        object: &[u8],
        reason: raw::RedisModuleACLLogEntryReason,
        allowed: bool,
    ) -> bool {
        if !allowed {
            let object = OwnedString::new(object);
            // SAFETY: a valid context (whose client Redis describes in the entry), a live user
            // (its name is copied), and a string Redis copies.
            unsafe {
                api!(RedisModule_ACLAddLogEntry)(self.0.as_ptr(), user, object.as_ptr(), reason)
            };
        }
        allowed
    }

    /// Like [`client_may_access_key`](Self::client_may_access_key), for the user called
    /// `user_name` (`None`: there is none).
    pub fn user_may_access_key(
        self,
        user_name: &[u8],
        dispatcher: &str,
        command: &str,
        key: &[u8],
        access: KeyAccess,
    ) -> Option<bool> {
        // SAFETY: the user `with_user_named` found, live for the closure, under the lock its
        // callers hold (a background job's calls into guest commands run inside its locked
        // `RM_Call`).
        with_user_named(&OwnedString::new(user_name), |user| unsafe {
            self.logged(
                user,
                key,
                raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                may_access_key_as(user, dispatcher, command, key, access),
            )
        })
    }

    /// The name of the ACL user of client `client_id`; `None` as for
    /// [`client_may_access_key`](Self::client_may_access_key).
    pub fn client_user_name(self, client_id: u64) -> Option<Vec<u8>> {
        self.client_user(client_id)
            .map(|name| name.bytes().to_vec())
    }

    pub(super) fn client_user(self, client_id: u64) -> Option<OwnedString> {
        // SAFETY: valid context; the lookup copes with any id (NULL when the client is not
        // connected or has no user) and returns a new string, freed by OwnedString.
        let name = unsafe { api!(RedisModule_GetClientUserNameById)(self.0.as_ptr(), client_id) };
        NonNull::new(name).map(OwnedString)
    }

    /// Runs `check` with the ACL user of client `client_id`, or answers `None` without one (see
    /// [`client_may_access_key`](Self::client_may_access_key)), or `false` for a user deleted
    /// since the client authenticated.
    pub(super) fn with_client_user(
        self,
        client_id: u64,
        check: impl FnOnce(*mut raw::RedisModuleUser) -> bool,
    ) -> Option<bool> {
        let name = self.client_user(client_id)?;
        Some(with_user_named(&name, check).unwrap_or(false))
    }

    pub fn selected_db(self) -> i32 {
        // SAFETY: valid context.
        unsafe { api!(RedisModule_GetSelectedDb)(self.0.as_ptr()) }
    }

    pub fn select_db(self, db: i32) -> bool {
        // SAFETY: valid context; Redis checks the id.
        unsafe { api!(RedisModule_SelectDb)(self.0.as_ptr(), db) == OK }
    }
}

/// Runs `f` with the key pointer. Every call below is a Module API function on a key we hold open.
macro_rules! key_call {
    ($self:ident, $f:ident $(, $arg:expr)*) => {
        // SAFETY: `$self.0` is an open key owned by this RawKey; arguments are valid for the call.
        unsafe { api!($f)($self.0.as_ptr() $(, $arg)*) }
    };
}

impl RawKey {
    /// `REDISMODULE_KEYTYPE_*`.
    pub fn key_type(&self) -> isize {
        key_call!(self, RedisModule_KeyType) as isize
    }

    pub fn value_length(&self) -> u64 {
        key_call!(self, RedisModule_ValueLength) as u64
    }

    pub fn delete(&self) -> bool {
        key_call!(self, RedisModule_DeleteKey) == OK
    }

    pub fn unlink(&self) -> bool {
        key_call!(self, RedisModule_UnlinkKey) == OK
    }

    pub fn get_expire(&self) -> i64 {
        key_call!(self, RedisModule_GetExpire)
    }

    pub fn set_expire(&self, ms: i64) -> bool {
        key_call!(self, RedisModule_SetExpire, ms) == OK
    }

    pub fn get_abs_expire(&self) -> i64 {
        key_call!(self, RedisModule_GetAbsExpire)
    }

    pub fn set_abs_expire(&self, unix_ms: i64) -> bool {
        key_call!(self, RedisModule_SetAbsExpire, unix_ms) == OK
    }

    pub fn string_set(&self, value: &[u8]) -> bool {
        let value = OwnedString::new(value);
        key_call!(self, RedisModule_StringSet, value.as_ptr()) == OK
    }

    /// `RedisModule_StringDMA`: the value's bytes, or `None` if the key is not a string.
    fn dma(&self, mode: c_int) -> Option<(*mut u8, usize)> {
        let mut len = 0usize;
        let p = key_call!(self, RedisModule_StringDMA, &mut len, mode);
        (!p.is_null()).then_some((p.cast::<u8>(), len))
    }

    /// Copies bytes `offset..offset+len` (clipped to the string).
    pub fn string_read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let (p, size) = self.dma(MODE_READ)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(size);
        if start == end {
            return Some(Vec::new());
        }
        // SAFETY: DMA gives `size` readable bytes; start..end is inside them.
        Some(unsafe { std::slice::from_raw_parts(p.add(start), end - start) }.to_vec())
    }

    /// Overwrites bytes in place; false if not a string or the range is outside it.
    pub fn string_write(&self, offset: u64, data: &[u8]) -> Result<(), &'static str> {
        let (p, size) = self.dma(MODE_WRITE).ok_or("not a string")?;
        let start = usize::try_from(offset).map_err(|_| "offset out of range")?;
        let end = start.checked_add(data.len()).ok_or("offset out of range")?;
        if end > size {
            return Err(
                "the write goes past the end of the string (enlarge it with string-truncate)",
            );
        }
        if !data.is_empty() {
            // SAFETY: DMA in write mode gives `size` writable bytes, unshared; start..end fits.
            unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p.add(start), data.len()) };
        }
        Ok(())
    }

    pub fn string_truncate(&self, len: u64) -> bool {
        let Ok(len) = usize::try_from(len) else {
            return false;
        };
        key_call!(self, RedisModule_StringTruncate, len) == OK
    }

    pub fn list_push(&self, tail: bool, value: &[u8]) -> bool {
        let value = OwnedString::new(value);
        let where_ = if tail {
            raw::REDISMODULE_LIST_TAIL
        } else {
            raw::REDISMODULE_LIST_HEAD
        } as c_int;
        key_call!(self, RedisModule_ListPush, where_, value.as_ptr()) == OK
    }

    pub fn list_pop(&self, tail: bool) -> Option<Vec<u8>> {
        let where_ = if tail {
            raw::REDISMODULE_LIST_TAIL
        } else {
            raw::REDISMODULE_LIST_HEAD
        } as c_int;
        take_string(key_call!(self, RedisModule_ListPop, where_))
    }

    pub fn list_get(&self, index: i64) -> Option<Vec<u8>> {
        take_string(key_call!(self, RedisModule_ListGet, index))
    }

    /// `RedisModule_ListGet`, appending the element to `out`; false when there is none. Inlined:
    /// list batches call it per element.
    #[inline]
    pub fn list_get_into(&self, index: i64, out: &mut Vec<u8>) -> bool {
        let Some(element) = NonNull::new(key_call!(self, RedisModule_ListGet, index)) else {
            return false;
        };
        out.extend_from_slice(OwnedString(element).bytes());
        true
    }

    pub fn list_set(&self, index: i64, value: &[u8]) -> bool {
        let value = OwnedString::new(value);
        key_call!(self, RedisModule_ListSet, index, value.as_ptr()) == OK
    }

    pub fn list_insert(&self, index: i64, value: &[u8]) -> bool {
        let value = OwnedString::new(value);
        key_call!(self, RedisModule_ListInsert, index, value.as_ptr()) == OK
    }

    pub fn list_delete(&self, index: i64) -> bool {
        key_call!(self, RedisModule_ListDelete, index) == OK
    }

    /// `RedisModule_ZsetAdd`: the output flags, or `None` on error.
    pub fn zset_add(&self, score: f64, member: &[u8], flags: c_int) -> Option<c_int> {
        let member = OwnedString::new(member);
        let mut flags = flags;
        (key_call!(
            self,
            RedisModule_ZsetAdd,
            score,
            member.as_ptr(),
            &mut flags
        ) == OK)
            .then_some(flags)
    }

    /// `RedisModule_ZsetIncrby`: the new score and output flags.
    pub fn zset_incrby(&self, increment: f64, member: &[u8], flags: c_int) -> Option<(f64, c_int)> {
        let member = OwnedString::new(member);
        let mut flags = flags;
        let mut score = 0.0;
        (key_call!(
            self,
            RedisModule_ZsetIncrby,
            increment,
            member.as_ptr(),
            &mut flags,
            &mut score
        ) == OK)
            .then_some((score, flags))
    }

    pub fn zset_score(&self, member: &[u8]) -> Option<f64> {
        let member = OwnedString::new(member);
        let mut score = 0.0;
        (key_call!(self, RedisModule_ZsetScore, member.as_ptr(), &mut score) == OK).then_some(score)
    }

    /// `RedisModule_ZsetRem`: whether the member was deleted, or `None` on error.
    pub fn zset_rem(&self, member: &[u8]) -> Option<bool> {
        let member = OwnedString::new(member);
        let mut deleted: c_int = 0;
        (key_call!(self, RedisModule_ZsetRem, member.as_ptr(), &mut deleted) == OK)
            .then_some(deleted != 0)
    }

    pub fn zset_score_range(
        &self,
        last: bool,
        min: f64,
        max: f64,
        min_ex: bool,
        max_ex: bool,
    ) -> bool {
        let (minex, maxex) = (c_int::from(min_ex), c_int::from(max_ex));
        if last {
            key_call!(
                self,
                RedisModule_ZsetLastInScoreRange,
                min,
                max,
                minex,
                maxex
            ) == OK
        } else {
            key_call!(
                self,
                RedisModule_ZsetFirstInScoreRange,
                min,
                max,
                minex,
                maxex
            ) == OK
        }
    }

    pub fn zset_lex_range(&self, last: bool, min: &[u8], max: &[u8]) -> bool {
        let (min, max) = (OwnedString::new(min), OwnedString::new(max));
        if last {
            key_call!(
                self,
                RedisModule_ZsetLastInLexRange,
                min.as_ptr(),
                max.as_ptr()
            ) == OK
        } else {
            key_call!(
                self,
                RedisModule_ZsetFirstInLexRange,
                min.as_ptr(),
                max.as_ptr()
            ) == OK
        }
    }

    pub fn zset_range_current(&self) -> Option<(Vec<u8>, f64)> {
        let mut score = 0.0;
        let member = take_string(key_call!(
            self,
            RedisModule_ZsetRangeCurrentElement,
            &mut score
        ))?;
        Some((member, score))
    }

    pub fn zset_range_next(&self) -> bool {
        key_call!(self, RedisModule_ZsetRangeNext) != 0
    }

    pub fn zset_range_prev(&self) -> bool {
        key_call!(self, RedisModule_ZsetRangePrev) != 0
    }

    pub fn zset_range_end_reached(&self) -> bool {
        key_call!(self, RedisModule_ZsetRangeEndReached) != 0
    }

    pub fn zset_range_stop(&self) {
        key_call!(self, RedisModule_ZsetRangeStop);
    }

    /// `RedisModule_HashSet` for one field (`None` deletes it). Returns Redis's count, or `None`
    /// on error.
    pub fn hash_set(&self, flags: c_int, field: &[u8], value: Option<&[u8]>) -> Option<c_int> {
        let field = OwnedString::new(field);
        let value = value.map(OwnedString::new);
        // REDISMODULE_HASH_DELETE is the pointer value 1 exactly (not an aligned dangling pointer).
        #[allow(clippy::manual_dangling_ptr)]
        let hash_delete = 1usize as *mut raw::RedisModuleString;
        let value_ptr = value.as_ref().map_or(hash_delete, OwnedString::as_ptr);
        let null: *mut raw::RedisModuleString = ptr::null_mut();
        let n = key_call!(
            self,
            RedisModule_HashSet,
            flags,
            field.as_ptr(),
            value_ptr,
            null
        );
        (n >= 0).then_some(n)
    }

    /// One step of `RedisModule_ScanKey`: `entry` gets each field (or member) it visits and its
    /// value (none for a set). False when the scan is complete, the key empty or not a hash,
    /// set or sorted set.
    pub fn scan_step(&self, cursor: &ScanCursor, entry: &mut ScanEntry<'_>) -> bool {
        let mut sink = ScanSink {
            entry,
            panicked: false,
        };
        let more = key_call!(
            self,
            RedisModule_ScanKey,
            cursor.0.as_ptr(),
            Some(scan_entry),
            (&raw mut sink).cast()
        ) != 0;
        // Resumed here, outside Redis's frames, so it takes the usual host-panic path.
        assert!(!sink.panicked, "a key scan panicked (see the log)");
        more
    }

    /// `RedisModule_HashGet` for one field.
    pub fn hash_get(&self, field: &[u8]) -> Option<Vec<u8>> {
        let field = OwnedString::new(field);
        let mut out: *mut raw::RedisModuleString = ptr::null_mut();
        let null: *mut raw::RedisModuleString = ptr::null_mut();
        let flags = raw::REDISMODULE_HASH_NONE as c_int;
        if key_call!(
            self,
            RedisModule_HashGet,
            flags,
            field.as_ptr(),
            &mut out as *mut _,
            null
        ) != OK
        {
            return None;
        }
        take_string(out)
    }

    /// `RedisModule_HashGet` with `REDISMODULE_HASH_EXISTS` for one field.
    pub fn hash_exists(&self, field: &[u8]) -> bool {
        let field = OwnedString::new(field);
        let mut exists: c_int = 0;
        let null: *mut raw::RedisModuleString = ptr::null_mut();
        let flags = raw::REDISMODULE_HASH_EXISTS as c_int;
        key_call!(
            self,
            RedisModule_HashGet,
            flags,
            field.as_ptr(),
            &mut exists as *mut c_int,
            null
        ) == OK
            && exists != 0
    }
}
