//! `redis:module/keys`: low-level key access, with the safety rules and effect recording of
//! `scope.rs`. Each write records the Redis command that reproduces it on replicas and in the
//! AOF.

use redis_module::raw;

use super::bindings::redis::module::keys::{
    DataValue, HashSetFlags, Host, Key, KeyError, KeyType, ListRangeBatch, ListWhere, OpenMode,
    ScanBatch, ZaddFlags, ZaddOutcome, ZsetRangeBatch,
};
use super::{MAX_BATCH_BYTES, batch_room};
use crate::ffi::{self, KeyAccess, KeyValue, RawKey, TypeValue};
use crate::scan::{BatchLimits, BatchOut};
use crate::scope::{Effects, KeyFault, KeyHandle, MAX_HANDLES, RangeState, tombstone};
use crate::state::GuestState;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList};

type R<T> = wasmtime::Result<Result<T, KeyError>>;

impl From<KeyFault> for KeyError {
    fn from(fault: KeyFault) -> Self {
        match fault {
            KeyFault::WrongType => KeyError::WrongType,
            KeyFault::NotWritable => KeyError::NotWritable,
            KeyFault::AlreadyOpen => KeyError::AlreadyOpen,
            KeyFault::Closed => KeyError::Closed,
            KeyFault::OutOfRange => KeyError::OutOfRange,
            KeyFault::Invalid(why) => KeyError::Invalid(why),
            KeyFault::NoRange => KeyError::NoRange,
        }
    }
}

const EMPTY: isize = raw::REDISMODULE_KEYTYPE_EMPTY;
const STRING: isize = raw::REDISMODULE_KEYTYPE_STRING;
const LIST: isize = raw::REDISMODULE_KEYTYPE_LIST;
const HASH: isize = raw::REDISMODULE_KEYTYPE_HASH;
const SET: isize = raw::REDISMODULE_KEYTYPE_SET;
const ZSET: isize = raw::REDISMODULE_KEYTYPE_ZSET;

fn type_of(key: &KeyHandle) -> isize {
    key.raw.as_ref().map_or(EMPTY, RawKey::key_type)
}

/// Checks the key is empty or of `expected` type.
fn expect_type(key: &KeyHandle, expected: isize) -> Result<(), KeyFault> {
    match type_of(key) {
        t if t == EMPTY || t == expected => Ok(()),
        _ => Err(KeyFault::WrongType),
    }
}

/// The key, for a write. A write ends the key's active sorted-set range: Redis's range cursor
/// points into the set as it was, and reading it after the set changed is a use-after-free. It
/// also marks a list iterator left by reads as stale.
fn writable(key: &KeyHandle) -> Result<&RawKey, KeyFault> {
    if !key.write {
        return Err(KeyFault::NotWritable);
    }
    let raw = key.raw.as_ref().ok_or(KeyFault::Closed)?;
    key.list_may_have_changed();
    if key.range.get() == RangeState::Active {
        raw.zset_range_stop();
        key.interrupt_range();
    }
    Ok(raw)
}

fn num(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Normalizes a list index against a length (negative counts from the tail).
fn list_index(index: i64, len: u64) -> Result<u64, KeyFault> {
    let len = i64::try_from(len).map_err(|_| KeyFault::OutOfRange)?;
    let i = if index < 0 {
        len.checked_add(index).ok_or(KeyFault::OutOfRange)?
    } else {
        index
    };
    if (0..len).contains(&i) {
        Ok(i as u64)
    } else {
        Err(KeyFault::OutOfRange)
    }
}

fn zadd_flags(flags: ZaddFlags) -> i32 {
    let mut out = 0;
    for (flag, bit) in [
        (ZaddFlags::NX, raw::REDISMODULE_ZADD_NX),
        (ZaddFlags::XX, raw::REDISMODULE_ZADD_XX),
        (ZaddFlags::GT, raw::REDISMODULE_ZADD_GT),
        (ZaddFlags::LT, raw::REDISMODULE_ZADD_LT),
    ] {
        if flags.contains(flag) {
            out |= bit as i32;
        }
    }
    out
}

fn zadd_outcome(out: i32) -> ZaddOutcome {
    let mut outcome = ZaddOutcome::empty();
    for (bit, flag) in [
        (raw::REDISMODULE_ZADD_ADDED, ZaddOutcome::ADDED),
        (raw::REDISMODULE_ZADD_UPDATED, ZaddOutcome::UPDATED),
        (raw::REDISMODULE_ZADD_NOP, ZaddOutcome::NOP),
    ] {
        if out & bit as i32 != 0 {
            outcome |= flag;
        }
    }
    outcome
}

fn zset_changed(out: i32) -> bool {
    out & (raw::REDISMODULE_ZADD_ADDED | raw::REDISMODULE_ZADD_UPDATED) as i32 != 0
}

impl GuestState {
    /// Runs `op` on the key behind `handle`, with the command's effects log.
    fn with_key<T>(
        &mut self,
        handle: Key,
        op: impl FnOnce(&mut KeyHandle, &mut Effects) -> Result<T, KeyFault>,
    ) -> R<T> {
        self.with_key_ctx(handle, |key, effects, _| op(key, effects))
    }

    /// Like `with_key`, also giving the command's context.
    fn with_key_ctx<T>(
        &mut self,
        handle: Key,
        op: impl FnOnce(&mut KeyHandle, &mut Effects, crate::ffi::Ctx) -> Result<T, KeyFault>,
    ) -> R<T> {
        let Ok(scope) = self.command() else {
            return Ok(Err(KeyError::Closed));
        };
        Ok(scope
            .key(handle)
            .and_then(|(key, effects, ctx)| op(key, effects, ctx))
            .map_err(Into::into))
    }
}

fn unknown_data_type(index: u32) -> KeyError {
    KeyError::Invalid(format!(
        "ERR this guest declared no data type with index {index}"
    ))
}

/// Defines `open-key`, `list-push` and `hash-set` over bindgen's versions, which lift their byte
/// arguments into a new `Vec` each on every call (an allocation and a free through
/// `RedisModule_Alloc`): these read them from guest memory into a buffer the instance or the
/// command keeps. Type checking at instantiation still holds them to the WIT signatures.
pub fn define_byte_readers(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let (major, minor, patch) = super::WIT_VERSION;
    let interface = format!("{}/keys@{major}.{minor}.{patch}", super::WIT_PACKAGE);
    // Without shadowing these must fail, bindgen's functions being there: otherwise the names
    // are wrong and guests would never reach these versions.
    let mut keys = linker.instance(&interface)?;
    if keys
        .func_wrap("open-key", open_key_from_guest_memory)
        .is_ok()
        || keys
            .func_wrap("list-push", list_push_from_guest_memory)
            .is_ok()
        || keys
            .func_wrap("hash-set", hash_set_from_guest_memory)
            .is_ok()
    {
        wasmtime::bail!("'{interface}' had no 'open-key', 'list-push' or 'hash-set' to replace");
    }
    linker.allow_shadowing(true);
    let mut keys = linker.instance(&interface)?;
    let defined = keys
        .func_wrap("open-key", open_key_from_guest_memory)
        .and_then(|()| keys.func_wrap("list-push", list_push_from_guest_memory))
        .and_then(|()| keys.func_wrap("hash-set", hash_set_from_guest_memory));
    linker.allow_shadowing(false);
    defined
}

/// The `open-key` [`define_byte_readers`] registers: the name is copied into a closed key's
/// buffer (see `OpenKeys::spare_name`), which the key keeps.
fn open_key_from_guest_memory(
    mut store: StoreContextMut<'_, GuestState>,
    (name, mode): (WasmList<u8>, OpenMode),
) -> wasmtime::Result<(Result<Key, KeyError>,)> {
    let mut copy = match store.data_mut().command() {
        Ok(scope) => scope.keys.spare_name(),
        Err(_) => Vec::new(),
    };
    copy.extend_from_slice(name.as_le_slice(&store));
    store
        .data_mut()
        .open_key(copy, mode)
        .map(|result| (result,))
}

/// Values up to this size are copied into the effects log's arena; longer ones are moved in
/// as their own buffer (see `Effects::record_value`).
const INLINE_VALUE_MAX: usize = 4096;

/// The `list-push` [`define_byte_readers`] registers: the value is copied into the instance's
/// [`GuestState::byte_arg`].
fn list_push_from_guest_memory(
    mut store: StoreContextMut<'_, GuestState>,
    (handle, where_, value): (Key, ListWhere, WasmList<u8>),
) -> wasmtime::Result<(Result<(), KeyError>,)> {
    let mut copy = std::mem::take(&mut store.data_mut().byte_arg);
    copy.clear();
    copy.extend_from_slice(value.as_le_slice(&store));
    let state = store.data_mut();
    let result = state.push_to_list(handle, where_, &mut copy);
    if copy.capacity() <= INLINE_VALUE_MAX {
        state.byte_arg = copy;
    }
    result.map(|result| (result,))
}

/// `hash-set`'s fields as they lie in guest memory: (field, value or none to delete). Lifted
/// in one go (one call per element, `WasmList::get`, costs more).
type GuestFields = Vec<(WasmList<u8>, Option<WasmList<u8>>)>;

/// The `hash-set` [`define_byte_readers`] registers: the fields and values are copied end to
/// end into the instance's [`GuestState::byte_arg`] rather than into a vector each.
fn hash_set_from_guest_memory(
    mut store: StoreContextMut<'_, GuestState>,
    (handle, flags, fields): (Key, HashSetFlags, GuestFields),
) -> wasmtime::Result<(Result<u64, KeyError>,)> {
    let mut bytes = std::mem::take(&mut store.data_mut().byte_arg);
    bytes.clear();
    let mut ranges = Vec::with_capacity(fields.len());
    for (field, value) in &fields {
        let mut copy = |list: &WasmList<u8>| {
            let start = bytes.len();
            bytes.extend_from_slice(list.as_le_slice(&store));
            start..bytes.len()
        };
        let field = copy(field);
        let value = value.as_ref().map(copy);
        ranges.push((field, value));
    }
    let pairs: Vec<(&[u8], Option<&[u8]>)> = ranges
        .iter()
        .map(|(field, value)| (&bytes[field.clone()], value.clone().map(|v| &bytes[v])))
        .collect();
    let result = store.data_mut().set_hash_fields(handle, flags, &pairs);
    drop(pairs);
    if bytes.capacity() <= INLINE_VALUE_MAX {
        store.data_mut().byte_arg = bytes;
    }
    result.map(|result| (result,))
}

/// The arguments of the `HSET` or `HDEL` a run of changed hash fields replicates as.
struct FieldRun<'a> {
    /// The fields (and values, for sets) in order; empty between runs.
    args: Vec<&'a [u8]>,
    sets: bool,
}

impl<'a> FieldRun<'a> {
    /// Adds a changed field (`value`: its new value, or none for a deletion), first recording
    /// the run so far if it was of the other kind.
    fn add(
        &mut self,
        effects: &mut Effects,
        key: &KeyHandle,
        field: &'a [u8],
        value: Option<&'a [u8]>,
    ) {
        if !self.args.is_empty() && self.sets != value.is_some() {
            self.record(effects, key);
        }
        self.sets = value.is_some();
        self.args.push(field);
        self.args.extend(value);
    }

    /// Records the run as one command, and starts the next.
    fn record(&mut self, effects: &mut Effects, key: &KeyHandle) {
        if self.args.is_empty() {
            return;
        }
        let command = if self.sets { "HSET" } else { "HDEL" };
        effects.record_on_key(key.db, command, &key.name, &self.args);
        self.args.clear();
    }
}

impl GuestState {
    /// `hash-set` of `fields` (a value of none deletes its field).
    fn set_hash_fields(
        &mut self,
        handle: Key,
        flags: HashSetFlags,
        fields: &[(&[u8], Option<&[u8]>)],
    ) -> R<u64> {
        self.with_key(handle, |key, effects| {
            expect_type(key, HASH)?;
            if flags.contains(HashSetFlags::NX) && flags.contains(HashSetFlags::XX) {
                return Err(KeyFault::Invalid(
                    "ERR hash-set flags NX and XX are exclusive".into(),
                ));
            }
            let raw = writable(key)?;
            let mut base = raw::REDISMODULE_HASH_COUNT_ALL as i32;
            if flags.contains(HashSetFlags::NX) {
                base |= raw::REDISMODULE_HASH_NX as i32;
            }
            if flags.contains(HashSetFlags::XX) {
                base |= raw::REDISMODULE_HASH_XX as i32;
            }
            let mut count = 0u64;
            // `RedisModule_HashSet` with several fields deletes an emptied hash only at the end;
            // one call per field deletes it at once, and a later field makes a new key: give it
            // the expire the hash had.
            let expire_at = raw.get_abs_expire();
            let mut emptied = false;
            // Changed fields replicate as one `HSET` (or `HDEL`) per run of sets (or deletions),
            // as Lua's `redis.call('HSET', ...)` does, rather than one command per field.
            let mut run = FieldRun {
                args: Vec::with_capacity(2 * fields.len()),
                sets: true,
            };
            for &(field, value) in fields {
                // A deletion on a missing hash does nothing (and the key must not be created).
                if value.is_none() && type_of(key) == EMPTY {
                    continue;
                }
                // Whether the field existed, from the hash's length (which Redis keeps): a set
                // that added one grew it, an update did not (cheaper than looking it up).
                let length_before = raw.value_length();
                let changed = raw.hash_set(base, field, value).unwrap_or(0) > 0;
                if !changed {
                    continue;
                }
                let existed = value.is_none() || raw.value_length() <= length_before;
                if existed || flags.contains(HashSetFlags::COUNT_ALL) {
                    count += 1;
                }
                run.add(effects, key, field, value);
                emptied |= type_of(key) == EMPTY;
            }
            run.record(effects, key);
            if emptied && expire_at != -1 && type_of(key) == HASH && raw.set_abs_expire(expire_at) {
                record_expire(key, effects);
            }
            Ok(count)
        })
    }

    /// `list-push` of `value`: a short value is copied into the effects log, a long one taken
    /// from `value` (left empty).
    fn push_to_list(&mut self, handle: Key, where_: ListWhere, value: &mut Vec<u8>) -> R<()> {
        self.with_key(handle, |key, effects| {
            expect_type(key, LIST)?;
            let tail = where_ == ListWhere::Tail;
            if !writable(key)?.list_push(tail, value) {
                return Err(KeyFault::Invalid(
                    "ERR the element could not be pushed".into(),
                ));
            }
            let command = if tail { "RPUSH" } else { "LPUSH" };
            if value.len() <= INLINE_VALUE_MAX {
                effects.record(key.db, command, &[&key.name[..], &value[..]]);
            } else {
                effects.record_value(key.db, command, &[&key.name], std::mem::take(value));
            }
            Ok(())
        })
    }
}

impl Host for GuestState {
    fn open_key(&mut self, name: Vec<u8>, mode: OpenMode) -> R<Key> {
        let number = self.new_handle()?;
        let Ok(scope) = self.command() else {
            return Ok(Err(KeyError::Invalid(
                "ERR open-key is only available while a command runs".into(),
            )));
        };
        if scope.handle_count() >= MAX_HANDLES {
            return Ok(Err(KeyError::Invalid(format!(
                "ERR a command may hold at most {MAX_HANDLES} handles"
            ))));
        }
        match scope.open_key(name, mode.contains(OpenMode::WRITE)) {
            Ok(key) => {
                scope.keys.insert(number, key);
                Ok(Ok(number))
            }
            Err(fault) => Ok(Err(fault.into())),
        }
    }

    fn key_exists(&mut self, name: Vec<u8>) -> wasmtime::Result<bool> {
        let Some(ctx) = self.ctx() else {
            return Ok(false);
        };
        // The lookup may expire the key: close handles on it first (see `suspend_key`).
        if let Ok(scope) = self.command() {
            if !scope
                .acl
                .allows_key(ctx, &scope.command, &name, KeyAccess::Exists)
            {
                scope.effects.refused_here = true;
                return Ok(false); // what the user may not see does not exist for it
            }
            if !scope.acl.serves_key(&name) {
                scope.effects.refused_here = true;
                return Ok(false); // another cluster node's key is not here
            }
            scope.before_lookup(ctx.selected_db(), &name);
        }
        Ok(ctx.key_exists(&name))
    }

    fn close_key(&mut self, handle: Key) -> wasmtime::Result<()> {
        if let Ok(scope) = self.command() {
            scope.keys.remove(handle);
        }
        Ok(())
    }

    fn type_of(&mut self, handle: Key) -> R<KeyType> {
        self.with_key(handle, |key, _| {
            Ok(match type_of(key) {
                STRING => KeyType::String,
                LIST => KeyType::List,
                HASH => KeyType::Hash,
                ZSET => KeyType::Zset,
                t if t == raw::REDISMODULE_KEYTYPE_SET => KeyType::Set,
                t if t == raw::REDISMODULE_KEYTYPE_MODULE => KeyType::Module,
                t if t == raw::REDISMODULE_KEYTYPE_STREAM => KeyType::Stream,
                _ => KeyType::Empty,
            })
        })
    }

    fn value_length(&mut self, handle: Key) -> R<u64> {
        self.with_key(handle, |key, _| {
            Ok(key.raw.as_ref().map_or(0, RawKey::value_length))
        })
    }

    fn delete(&mut self, handle: Key) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            // Redis keeps a list iterator inside an open key after index operations, and
            // deleting then would free the list under it: start from a fresh handle.
            key.reopen(ctx, effects);
            let existed = type_of(key) != EMPTY;
            if !writable(key)?.delete() {
                return Err(KeyFault::Invalid("ERR the key could not be deleted".into()));
            }
            if existed {
                effects.record(key.db, "DEL", &[&key.name]);
            }
            Ok(())
        })
    }

    fn unlink(&mut self, handle: Key) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            // Redis keeps a list iterator inside an open key after index operations, and
            // deleting then would free the list under it: start from a fresh handle.
            key.reopen(ctx, effects);
            let existed = type_of(key) != EMPTY;
            if !writable(key)?.unlink() {
                return Err(KeyFault::Invalid(
                    "ERR the key could not be unlinked".into(),
                ));
            }
            if existed {
                effects.record(key.db, "UNLINK", &[&key.name]);
            }
            Ok(())
        })
    }

    fn get_expire(&mut self, handle: Key) -> R<i64> {
        self.with_key(handle, |key, _| {
            Ok(key.raw.as_ref().map_or(-1, RawKey::get_expire))
        })
    }

    fn set_expire(&mut self, handle: Key, milliseconds: i64) -> R<()> {
        // `RM_SetExpire` adds the current time without checking: refuse what would overflow
        // (it would wrap to a time in the past), as `PEXPIRE` does.
        if milliseconds.checked_add(ffi::milliseconds()).is_none() {
            return Ok(Err(KeyError::Invalid(
                "ERR invalid expire time: it overflows when added to the current time".into(),
            )));
        }
        // (-1 removes the expire: nothing counts from now.)
        let given = match milliseconds {
            -1 => Expire::Fixed,
            _ => Expire::FromNow,
        };
        self.change_expire(handle, given, |raw| raw.set_expire(milliseconds))
    }

    fn get_abs_expire(&mut self, handle: Key) -> R<i64> {
        self.with_key(handle, |key, _| {
            Ok(key.raw.as_ref().map_or(-1, RawKey::get_abs_expire))
        })
    }

    fn set_abs_expire(&mut self, handle: Key, unix_milliseconds: i64) -> R<()> {
        self.change_expire(handle, Expire::Fixed, |raw| {
            raw.set_abs_expire(unix_milliseconds)
        })
    }

    fn string_set(&mut self, handle: Key, value: Vec<u8>) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.drop_list_iterator(ctx, effects);
            if !writable(key)?.string_set(&value) {
                return Err(KeyFault::Invalid("ERR the string could not be set".into()));
            }
            effects.record_value(key.db, "SET", &[&key.name], value);
            Ok(())
        })
    }

    fn string_read(&mut self, handle: Key, offset: u64, len: u64) -> R<Vec<u8>> {
        let Ok(scope) = self.command() else {
            return Ok(Err(KeyError::Closed));
        };
        // Reading is by `RedisModule_StringDMA`, which may replace the value object (when the
        // key holds a string: other types' ranges on other handles go on).
        if scope.holds_several_keys()
            && scope
                .key(handle)
                .is_ok_and(|(key, _, _)| expect_type(key, STRING).is_ok())
        {
            scope.close_other_handles(handle);
        }
        let read = scope.key(handle).and_then(|(key, _, _)| {
            expect_type(key, STRING)?;
            match &key.raw {
                None => Ok(Vec::new()),
                Some(raw) => raw.string_read(offset, len).ok_or(KeyFault::WrongType),
            }
        });
        Ok(read.map_err(Into::into))
    }

    fn string_write(&mut self, handle: Key, offset: u64, data: Vec<u8>) -> R<()> {
        self.with_key(handle, |key, effects| {
            expect_type(key, STRING)?;
            writable(key)?
                .string_write(offset, &data)
                .map_err(|why| KeyFault::Invalid(format!("ERR {why}")))?;
            if !data.is_empty() {
                effects.record_value(key.db, "SETRANGE", &[&key.name, &num(offset)], data);
            }
            Ok(())
        })
    }

    fn string_truncate(&mut self, handle: Key, len: u64) -> R<()> {
        self.with_key(handle, |key, effects| {
            expect_type(key, STRING)?;
            let raw = writable(key)?;
            let old = raw.value_length();
            if len > 512 << 20 || !raw.string_truncate(len) {
                return Err(KeyFault::Invalid(
                    "ERR string length out of range (at most 512 MB)".into(),
                ));
            }
            // Growing pads with zero bytes, which SETRANGE of the last one does too (also for a
            // new key: a few bytes to replicate, not the whole string). Nothing shrinks a
            // string but setting it again.
            if len > old {
                effects.record(key.db, "SETRANGE", &[&key.name, &num(len - 1), &[0]]);
            } else if len < old {
                let value = key
                    .raw
                    .as_ref()
                    .and_then(|r| r.string_read(0, len))
                    .unwrap_or_default();
                effects.record(key.db, "SET", &[&key.name, &value, b"KEEPTTL"]);
            }
            Ok(())
        })
    }

    /// Bindgen's lifted form, which guests never reach: [`define_byte_readers`] registers
    /// `list-push` over it. The trait still needs it.
    fn list_push(&mut self, handle: Key, where_: ListWhere, value: Vec<u8>) -> R<()> {
        let mut value = value;
        self.push_to_list(handle, where_, &mut value)
    }

    fn list_pop(&mut self, handle: Key, where_: ListWhere) -> R<Option<Vec<u8>>> {
        self.with_key(handle, |key, effects| {
            expect_type(key, LIST)?;
            let raw = writable(key)?;
            if type_of(key) == EMPTY {
                return Ok(None);
            }
            let tail = where_ == ListWhere::Tail;
            let value = raw.list_pop(tail);
            if value.is_some() {
                effects.record(key.db, if tail { "RPOP" } else { "LPOP" }, &[&key.name]);
            }
            Ok(value)
        })
    }

    fn list_get(&mut self, handle: Key, index: i64) -> R<Vec<u8>> {
        if let Ok(scope) = self.command() {
            scope.close_other_list_iterators(handle);
        }
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.reading_list_iterator(ctx, effects);
            expect_type(key, LIST)?;
            let raw = key.raw.as_ref().ok_or(KeyFault::OutOfRange)?;
            list_index(index, raw.value_length())?;
            raw.list_get(index).ok_or(KeyFault::OutOfRange)
        })
    }

    fn list_range(&mut self, handle: Key, start: i64, max: u32) -> R<ListRangeBatch> {
        if let Ok(scope) = self.command() {
            scope.close_other_list_iterators(handle);
        }
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.reading_list_iterator(ctx, effects);
            expect_type(key, LIST)?;
            let mut batch = ListRangeBatch {
                elements: Vec::new(),
                ends: Vec::new(),
            };
            let Some(raw) = key.raw.as_ref() else {
                return Ok(batch);
            };
            let len = i64::try_from(raw.value_length()).unwrap_or(i64::MAX);
            let first = if start < 0 {
                start.saturating_add(len).max(0)
            } else {
                start
            };
            // Ascending indexes: Redis moves the key's list iterator one step per element.
            let wanted = first..first.saturating_add(i64::from(max)).min(len);
            let available = u64::try_from(wanted.end.saturating_sub(wanted.start)).unwrap_or(0);
            let (entries, bytes) = batch_room(max, available, 16);
            batch.ends.reserve_exact(entries);
            batch.elements.reserve(bytes);
            for index in wanted {
                // The offsets count too, so a list of empty strings also stops.
                let size = batch.elements.len() + 4 * batch.ends.len();
                if size >= MAX_BATCH_BYTES || !raw.list_get_into(index, &mut batch.elements) {
                    break;
                }
                // Below MAX_BATCH_BYTES plus one element (at most 512 MB): fits in u32.
                batch.ends.push(batch.elements.len() as u32);
            }
            Ok(batch)
        })
    }

    fn list_set(&mut self, handle: Key, index: i64, value: Vec<u8>) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.fresh_list_iterator(ctx, effects);
            expect_type(key, LIST)?;
            let raw = writable(key)?;
            let at = list_index(index, raw.value_length())?;
            if !raw.list_set(index, &value) {
                return Err(KeyFault::OutOfRange);
            }
            effects.record_value(key.db, "LSET", &[&key.name, &num(at)], value);
            Ok(())
        })
    }

    fn list_insert(&mut self, handle: Key, index: i64, value: Vec<u8>) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.fresh_list_iterator(ctx, effects);
            expect_type(key, LIST)?;
            let raw = writable(key)?;
            let before = raw.value_length();
            let len = i64::try_from(before).map_err(|_| KeyFault::OutOfRange)?;
            // Where the new element lands: before `index`, or after it when negative.
            let at = if index >= 0 { index } else { len + index + 1 };
            if !(0..=len).contains(&at) || !raw.list_insert(index, &value) {
                return Err(KeyFault::OutOfRange);
            }
            let name = key.name.clone();
            if at == len {
                effects.record_value(key.db, "RPUSH", &[&name], value);
            } else if at == 0 {
                effects.record_value(key.db, "LPUSH", &[&name], value);
            } else {
                // No command inserts by index: mark the element now after the new one, insert
                // before the mark, then restore the element.
                let displaced = raw.list_get(at + 1).unwrap_or_default();
                let mark = tombstone();
                effects.record(key.db, "LSET", &[&name, &num(at), &mark]);
                effects.record_value(key.db, "LINSERT", &[&name, b"BEFORE", &mark], value);
                effects.record(key.db, "LSET", &[&name, &num(at + 1), &displaced]);
            }
            Ok(())
        })
    }

    fn list_delete(&mut self, handle: Key, index: i64) -> R<()> {
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.fresh_list_iterator(ctx, effects);
            expect_type(key, LIST)?;
            let raw = writable(key)?;
            let at = list_index(index, raw.value_length())?;
            if !raw.list_delete(index) {
                return Err(KeyFault::OutOfRange);
            }
            let mark = tombstone();
            effects.record(key.db, "LSET", &[&key.name, &num(at), &mark]);
            effects.record(key.db, "LREM", &[&key.name, b"1", &mark]);
            Ok(())
        })
    }

    fn zset_add(
        &mut self,
        handle: Key,
        score: f64,
        member: Vec<u8>,
        flags: ZaddFlags,
    ) -> R<ZaddOutcome> {
        self.with_key(handle, |key, effects| {
            expect_type(key, ZSET)?;
            if score.is_nan() {
                return Err(KeyFault::Invalid("ERR the score is not a number".into()));
            }
            let out = writable(key)?.zset_add(score, &member, zadd_flags(flags));
            remove_if_empty_zset(key);
            let out =
                out.ok_or_else(|| KeyFault::Invalid("ERR Redis refused to add the member".into()))?;
            if zset_changed(out) {
                effects.record(
                    key.db,
                    "ZADD",
                    &[&key.name, &ffi::double_to_string(score), &member],
                );
            }
            Ok(zadd_outcome(out))
        })
    }

    fn zset_incrby(
        &mut self,
        handle: Key,
        increment: f64,
        member: Vec<u8>,
        flags: ZaddFlags,
    ) -> R<(f64, ZaddOutcome)> {
        self.with_key(handle, |key, effects| {
            expect_type(key, ZSET)?;
            if increment.is_nan() {
                return Err(KeyFault::Invalid(
                    "ERR the increment is not a number".into(),
                ));
            }
            let result = writable(key)?.zset_incrby(increment, &member, zadd_flags(flags));
            remove_if_empty_zset(key);
            let (score, out) = result.ok_or_else(|| {
                KeyFault::Invalid("ERR resulting score is not a number (NaN)".into())
            })?;
            if zset_changed(out) {
                effects.record(
                    key.db,
                    "ZADD",
                    &[&key.name, &ffi::double_to_string(score), &member],
                );
            }
            // Redis leaves the score unset when nothing happened: give the member's own.
            let outcome = zadd_outcome(out);
            let score = if outcome.contains(ZaddOutcome::NOP) {
                key.raw
                    .as_ref()
                    .filter(|_| type_of(key) == ZSET)
                    .and_then(|raw| raw.zset_score(&member))
                    .unwrap_or(0.0)
            } else {
                score
            };
            Ok((score, outcome))
        })
    }

    fn zset_score(&mut self, handle: Key, member: Vec<u8>) -> R<Option<f64>> {
        self.with_key(handle, |key, _| {
            expect_type(key, ZSET)?;
            Ok(key
                .raw
                .as_ref()
                .filter(|_| type_of(key) == ZSET)
                .and_then(|raw| raw.zset_score(&member)))
        })
    }

    fn zset_rem(&mut self, handle: Key, member: Vec<u8>) -> R<bool> {
        self.with_key(handle, |key, effects| {
            expect_type(key, ZSET)?;
            let raw = writable(key)?;
            if type_of(key) == EMPTY {
                return Ok(false);
            }
            let deleted = raw.zset_rem(&member).unwrap_or(false);
            if deleted {
                effects.record(key.db, "ZREM", &[&key.name, &member]);
            }
            Ok(deleted)
        })
    }

    fn zset_first_in_score_range(
        &mut self,
        handle: Key,
        min: f64,
        max: f64,
        min_ex: bool,
        max_ex: bool,
    ) -> R<()> {
        self.with_key(handle, |key, _| {
            start_range(key, |raw| {
                raw.zset_score_range(false, min, max, min_ex, max_ex)
            })
        })
    }

    fn zset_last_in_score_range(
        &mut self,
        handle: Key,
        min: f64,
        max: f64,
        min_ex: bool,
        max_ex: bool,
    ) -> R<()> {
        self.with_key(handle, |key, _| {
            start_range(key, |raw| {
                raw.zset_score_range(true, min, max, min_ex, max_ex)
            })
        })
    }

    fn zset_first_in_lex_range(&mut self, handle: Key, min: Vec<u8>, max: Vec<u8>) -> R<()> {
        self.with_key(handle, |key, _| {
            start_range(key, |raw| raw.zset_lex_range(false, &min, &max))
        })
    }

    fn zset_last_in_lex_range(&mut self, handle: Key, min: Vec<u8>, max: Vec<u8>) -> R<()> {
        self.with_key(handle, |key, _| {
            start_range(key, |raw| raw.zset_lex_range(true, &min, &max))
        })
    }

    fn zset_range_current_element(&mut self, handle: Key) -> R<Option<(Vec<u8>, f64)>> {
        self.with_key(handle, |key, _| {
            Ok(range(key)?.and_then(RawKey::zset_range_current))
        })
    }

    fn zset_range_next(&mut self, handle: Key) -> R<bool> {
        self.with_key(handle, |key, _| {
            Ok(range(key)?.is_some_and(RawKey::zset_range_next))
        })
    }

    fn zset_range_next_batch(&mut self, handle: Key, max: u32) -> R<ZsetRangeBatch> {
        self.with_key(handle, |key, _| {
            let mut batch = ZsetRangeBatch {
                members: Vec::new(),
                ends: Vec::new(),
                scores: Vec::new(),
            };
            let Some(raw) = range(key)? else {
                return Ok(batch);
            };
            let (entries, bytes) = batch_room(max, raw.value_length(), 16);
            batch.ends.reserve_exact(entries);
            batch.scores.reserve_exact(entries);
            batch.members.reserve(bytes);
            while batch.scores.len() < max as usize
                && batch.members.len() < MAX_BATCH_BYTES
                && !raw.zset_range_end_reached()
            {
                let Some((member, score)) = raw.zset_range_current() else {
                    break;
                };
                batch.members.extend_from_slice(&member);
                // Below MAX_BATCH_BYTES plus one member (at most 512 MB): fits in u32.
                batch.ends.push(batch.members.len() as u32);
                batch.scores.push(score);
                raw.zset_range_next();
            }
            Ok(batch)
        })
    }

    fn zset_range_prev(&mut self, handle: Key) -> R<bool> {
        self.with_key(handle, |key, _| {
            Ok(range(key)?.is_some_and(RawKey::zset_range_prev))
        })
    }

    fn zset_range_end_reached(&mut self, handle: Key) -> R<bool> {
        self.with_key(handle, |key, _| {
            Ok(range(key)?.is_none_or(RawKey::zset_range_end_reached))
        })
    }

    fn zset_range_stop(&mut self, handle: Key) -> wasmtime::Result<()> {
        let _ = self.with_key(handle, |key, _| {
            if key.range.get() == RangeState::Active
                && let Some(raw) = &key.raw
            {
                raw.zset_range_stop();
            }
            key.range.set(RangeState::None);
            Ok(())
        })?;
        Ok(())
    }

    fn hash_set(
        &mut self,
        handle: Key,
        flags: HashSetFlags,
        fields: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> R<u64> {
        // (Guests reach `hash_set_from_guest_memory`, registered over this.)
        let pairs: Vec<(&[u8], Option<&[u8]>)> = fields
            .iter()
            .map(|(field, value)| (field.as_slice(), value.as_deref()))
            .collect();
        self.set_hash_fields(handle, flags, &pairs)
    }

    fn hash_get(&mut self, handle: Key, fields: Vec<Vec<u8>>) -> R<Vec<Option<Vec<u8>>>> {
        // The same big field asked for many times would copy it as often: the answer must fit
        // in the guest's memory anyway (unless the command replays the master's work).
        let limit = match self.limiter.unlimited {
            true => usize::MAX,
            false => crate::config::get_usize(&crate::config::MAX_MEMORY),
        };
        self.with_key(handle, |key, _| {
            expect_type(key, HASH)?;
            let Some(raw) = key.raw.as_ref().filter(|_| type_of(key) == HASH) else {
                return Ok(vec![None; fields.len()]);
            };
            let mut total = 0usize;
            let mut values = Vec::with_capacity(fields.len());
            for field in &fields {
                let value = raw.hash_get(field);
                total = total.saturating_add(value.as_ref().map_or(0, Vec::len));
                if total > limit {
                    return Err(KeyFault::Invalid(format!(
                        "ERR hash-get values add up to more than wasm.max-memory ({limit} bytes)"
                    )));
                }
                values.push(value);
            }
            Ok(values)
        })
    }

    fn hash_exists(&mut self, handle: Key, fields: Vec<Vec<u8>>) -> R<Vec<bool>> {
        self.with_key(handle, |key, _| {
            expect_type(key, HASH)?;
            Ok(match key.raw.as_ref().filter(|_| type_of(key) == HASH) {
                Some(raw) => fields.iter().map(|f| raw.hash_exists(f)).collect(),
                None => vec![false; fields.len()],
            })
        })
    }

    fn scan_key(&mut self, handle: Key, max: u32) -> R<ScanBatch> {
        self.with_key(handle, |key, _| {
            if !matches!(type_of(key), EMPTY | HASH | SET | ZSET) {
                return Err(KeyFault::WrongType);
            }
            let mut batch = ScanBatch {
                fields: Vec::new(),
                field_ends: Vec::new(),
                values: Vec::new(),
                value_ends: Vec::new(),
                done: false,
            };
            let limits = BatchLimits {
                max: max as usize,
                max_bytes: MAX_BATCH_BYTES,
                // As HSCAN bounds its buckets by ten times its COUNT; a huge `max` must not let
                // one crossing walk a whole sparse table (a step over an empty bucket is cheap,
                // but millions are not).
                max_steps: (max.min(4096) as usize * 10).max(100),
            };
            if let Some(raw) = key.raw.as_ref() {
                let (entries, bytes) = batch_room(max, raw.value_length(), 16);
                batch.field_ends.reserve_exact(entries);
                batch.value_ends.reserve_exact(entries);
                batch.fields.reserve(bytes);
                if type_of(key) != SET {
                    batch.values.reserve(bytes); // a set's members have no values
                }
            }
            let mut out = BatchOut {
                fields: &mut batch.fields,
                field_ends: &mut batch.field_ends,
                values: &mut batch.values,
                value_ends: &mut batch.value_ends,
            };
            let scan = key.scan.get_or_insert_default();
            batch.done = scan.next_batch(key.raw.as_ref(), &mut out, &limits);
            Ok(batch)
        })
    }

    fn scan_key_restart(&mut self, handle: Key) -> wasmtime::Result<()> {
        let _ = self.with_key(handle, |key, _| {
            if let Some(scan) = &mut key.scan {
                scan.restart();
            }
            Ok(())
        })?;
        Ok(())
    }

    fn module_type_get_value(&mut self, handle: Key, data_type: u32) -> R<Option<DataValue>> {
        let Some(ty) = self.data_type(data_type) else {
            return Ok(Err(unknown_data_type(data_type)));
        };
        self.with_key(handle, |key, _| {
            let Some(raw) = key.raw.as_mut() else {
                return Ok(None);
            };
            match raw.guest_value() {
                KeyValue::Empty => Ok(None),
                KeyValue::Guest(value) if std::ptr::eq(value.ty, ty) => Ok(Some(DataValue {
                    encoding_version: value.encver,
                    data: value.data.clone(),
                })),
                _ => Err(KeyFault::WrongType),
            }
        })
    }

    fn module_type_set_value(&mut self, handle: Key, data_type: u32, data: Vec<u8>) -> R<()> {
        let Some((ty, encver)) = self.data_type_with_version(data_type) else {
            return Ok(Err(unknown_data_type(data_type)));
        };
        self.with_key_ctx(handle, |key, effects, ctx| {
            key.drop_list_iterator(ctx, effects);
            writable(key)?;
            let raw = key.raw.as_mut().ok_or(KeyFault::Closed)?;
            let value = TypeValue {
                ty,
                encver,
                data: data.clone(),
            };
            if !raw.set_guest_value(value) {
                return Err(KeyFault::Invalid("ERR the value could not be set".into()));
            }
            effects.record_value(
                key.db,
                "WASM.SETVALUE",
                &[&key.name, ty.name.as_bytes(), &num(encver)],
                data,
            );
            Ok(())
        })
    }

    fn module_type_name(&mut self, handle: Key) -> R<Option<String>> {
        self.with_key(handle, |key, _| {
            Ok(key.raw.as_mut().and_then(RawKey::guest_type_name))
        })
    }
}

/// Redis 7.0's `RM_ZsetAdd`/`RM_ZsetIncrby` create an empty sorted set for a missing key and
/// leave it when nothing is added (`XX` on a missing member); Redis never allows empty
/// aggregates (`DEBUG DIGEST` asserts on one). Remove it: the key was missing before.
fn remove_if_empty_zset(key: &KeyHandle) {
    if let Some(raw) = &key.raw
        && raw.key_type() == ZSET
        && raw.value_length() == 0
    {
        raw.delete();
    }
}

/// Replicates a key's expire as it now is.
fn record_expire(key: &KeyHandle, effects: &mut Effects) {
    let at = key.raw.as_ref().map_or(-1, RawKey::get_abs_expire);
    if at == -1 {
        effects.record(key.db, "PERSIST", &[&key.name]);
    } else {
        effects.record(key.db, "PEXPIREAT", &[&key.name, &num(at)]);
        // Already passed (by Redis's clock): the key's next lookup deletes it (see
        // `lookups_may_expire`).
        if at <= ffi::milliseconds() {
            effects.lookups_may_expire = true;
        }
    }
}

/// Starts a sorted-set range. A missing key is an empty range.
fn start_range(key: &mut KeyHandle, start: impl FnOnce(&RawKey) -> bool) -> Result<(), KeyFault> {
    expect_type(key, ZSET)?;
    if let (Some(raw), RangeState::Active) = (&key.raw, key.range.get()) {
        raw.zset_range_stop();
    }
    key.range.set(RangeState::Active);
    if let Some(raw) = key.raw.as_ref().filter(|_| type_of(key) == ZSET)
        && !start(raw)
    {
        key.range.set(RangeState::None);
        return Err(KeyFault::Invalid("ERR invalid range".into()));
    }
    Ok(())
}

/// How an expire is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expire {
    /// A time to live, counted from now.
    FromNow,
    /// A Unix time, or none.
    Fixed,
}

impl GuestState {
    /// `set-expire` and `set-abs-expire`: `set` changes the expire, false if Redis refused.
    fn change_expire(
        &mut self,
        handle: Key,
        given: Expire,
        set: impl FnOnce(&RawKey) -> bool,
    ) -> R<()> {
        let changed = self.with_key(handle, |key, effects| {
            if !set(writable(key)?) {
                return Err(KeyFault::Invalid(
                    "ERR cannot set the expire: the key is empty or the time is negative".into(),
                ));
            }
            record_expire(key, effects);
            Ok(())
        })?;
        // A time to live counts from when the command runs: replayed later (from the AOF, or by
        // a replica that receives it late), a verbatim command would give the key a later
        // expire than the master's. As Redis propagates every expire as absolute, the command
        // replicates its effects (`PEXPIREAT`) from here on (see `may_set_expire` for calls).
        if given == Expire::FromNow
            && changed.is_ok()
            && let Ok(scope) = self.command()
            && !scope.acl.replayed()
        {
            scope.effects.stop_replicating_verbatim(scope.ctx);
        }
        Ok(changed)
    }
}

/// The key of an active range (`None`: the range is over an empty key).
fn range(key: &KeyHandle) -> Result<Option<&RawKey>, KeyFault> {
    match key.range.get() {
        RangeState::Active => Ok(key.raw.as_ref().filter(|_| type_of(key) == ZSET)),
        RangeState::None | RangeState::Interrupted => Err(KeyFault::NoRange),
    }
}
