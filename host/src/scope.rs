//! What one running command owns: its context, open keys, call replies and write effects.
//!
//! Handles given to the guest (key and call-reply numbers) index the tables here. Numbers come
//! from a per-store counter and are never reused, and every table is emptied when the command
//! returns, so a handle kept past its command, used after being dropped, or made up, is simply
//! not found: the guest gets an error, never a dangling pointer or another command's key.
//!
//! **Keys.** A key open for writing cannot be opened again in the same command, and a key open
//! for reading cannot then be opened for writing (the C API leaves both undefined). Before every
//! `RM_Call` and keyspace notification all keys are closed (the call, or another module's
//! subscriber, may delete or replace them) and reopened on next use.
//!
//! **Effects.** Low-level writes are recorded as the equivalent Redis commands and replicated in
//! order: before each call (so replicas see writes in the order they happened), before a key
//! lookup that may expire a key, before `SELECT`, and when the command ends. See [`Effects`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::ffi::{
    CallReply, ContextUser, Ctx, KeyAccess, MODE_NO_TOUCH, MODE_READ, MODE_WRITE, RawKey,
};
use crate::registry::CommandSpec;
use crate::scan::KeyScan;

/// Most handles (keys plus call replies) one command may hold at once.
pub const MAX_HANDLES: usize = 100_000;

/// Hashes handle numbers: small sequential integers the host chooses, so one multiply spreads
/// them well (SipHash's resistance to chosen keys buys nothing here).
#[derive(Default)]
pub struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio: multiplying by it scatters consecutive numbers.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Handle number → handle.
pub type HandleMap<V> = HashMap<u32, V, BuildHasherDefault<HandleHasher>>;

/// Handle table capacity kept from one command to the next.
const KEPT_CAPACITY: usize = 64;

/// Empties a handle table for the next command, keeping its capacity unless a command with
/// many handles grew it past [`KEPT_CAPACITY`].
fn empty_for_reuse<V>(table: &mut HandleMap<V>) {
    if table.capacity() > KEPT_CAPACITY {
        *table = HandleMap::default();
    } else {
        table.clear();
    }
}

/// A command's open keys by handle number, and, once it holds many, by database and name:
/// opening a key checks the others on it, which a scan of all of them would make quadratic
/// (a command may hold [`MAX_HANDLES`]).
#[derive(Default)]
pub struct OpenKeys {
    handles: HandleMap<KeyHandle>,
    by_name: Option<KeyUses>,
    /// Names of closed keys, whose buffers the next opens reuse (see [`OpenKeys::spare_name`]).
    spare_names: Vec<Vec<u8>>,
}

/// Closed keys' name buffers kept for the next opens, and the largest kept.
const SPARE_NAMES: usize = 4;
const SPARE_NAME_CAPACITY: usize = 256;

/// (database, name) → (handles open on the key, of which open for writing).
type KeyUses = HashMap<(i32, Vec<u8>), (u32, u32)>;

/// Open keys past which [`OpenKeys`] indexes them by name (below, a scan is cheaper).
const INDEXED_FROM: usize = 32;

impl OpenKeys {
    pub fn insert(&mut self, number: u32, key: KeyHandle) {
        if self.by_name.is_none() && self.handles.len() >= INDEXED_FROM {
            let mut index = HashMap::new();
            for open in self.handles.values() {
                Self::count(&mut index, open, true);
            }
            self.by_name = Some(index);
        }
        if let Some(index) = &mut self.by_name {
            Self::count(index, &key, true);
        }
        self.handles.insert(number, key);
    }

    pub fn remove(&mut self, number: u32) {
        let Some(mut key) = self.handles.remove(&number) else {
            return;
        };
        if let Some(index) = &mut self.by_name {
            Self::count(index, &key, false);
        }
        Self::keep_name(&mut self.spare_names, &mut key);
    }

    /// Keeps a closing key's name buffer for reuse (the rest drops as before, closing the key).
    fn keep_name(spare_names: &mut Vec<Vec<u8>>, key: &mut KeyHandle) {
        if spare_names.len() < SPARE_NAMES && key.name.capacity() <= SPARE_NAME_CAPACITY {
            spare_names.push(std::mem::take(&mut key.name));
        }
    }

    /// An empty buffer for a key name: a closed key's, when one was kept (opening and closing
    /// a key then allocates nothing).
    pub fn spare_name(&mut self) -> Vec<u8> {
        let mut name = self.spare_names.pop().unwrap_or_default();
        name.clear();
        name
    }

    fn count(index: &mut KeyUses, key: &KeyHandle, opened: bool) {
        let entry = index.entry((key.db, key.name.clone())).or_default();
        let writes = u32::from(key.write);
        if opened {
            *entry = (entry.0 + 1, entry.1 + writes);
        } else {
            // Every handle removed was counted when inserted (its name and database never
            // change), so this never goes below 0; saturating all the same.
            *entry = (entry.0.saturating_sub(1), entry.1.saturating_sub(writes));
            if entry.0 == 0 {
                index.remove(&(key.db, key.name.clone()));
            }
        }
    }

    /// How many handles are open on `name` in `db`, and whether one is open for writing.
    fn uses(&self, db: i32, name: &[u8]) -> (u32, bool) {
        match &self.by_name {
            Some(index) => index
                .get(&(db, name.to_vec()))
                .map_or((0, false), |&(open, writes)| (open, writes > 0)),
            None => self
                .handles
                .values()
                .filter(|k| k.db == db && k.name == name)
                .fold((0, false), |(open, write), k| (open + 1, write || k.write)),
        }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    fn get_mut(&mut self, number: u32) -> Option<&mut KeyHandle> {
        self.handles.get_mut(&number)
    }

    fn get(&self, number: u32) -> Option<&KeyHandle> {
        self.handles.get(&number)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut KeyHandle> {
        self.handles.values_mut()
    }

    /// Closes every key. The SDK leaves the last key a command drops for the host to close here
    /// (see `Key` in guest-sdk): its name buffer is kept, as `remove` would have.
    fn clear(&mut self) {
        for (_, mut key) in self.handles.drain() {
            Self::keep_name(&mut self.spare_names, &mut key);
        }
        self.by_name = None;
    }

    fn empty_for_reuse(&mut self) {
        empty_for_reuse(&mut self.handles);
        self.by_name = None;
    }
}

/// A key handle.
pub struct KeyHandle {
    pub name: Vec<u8>,
    pub db: i32,
    pub write: bool,
    /// `None` when the key was missing at a read-only open, or while suspended.
    pub raw: Option<RawKey>,
    /// Closed for a call; reopened on next use.
    pub suspended: bool,
    /// A `Cell` so that any write through the key can end it (see `api::keys::writable`).
    pub range: Cell<RangeState>,
    /// Whether index-based list operations left Redis's list iterator cached in the key. A
    /// `Cell` so that any write through the key can mark it stale (see `api::keys::writable`).
    pub list_iterator: Cell<ListIterator>,
    /// Created by the first `scan-key` (most keys are never scanned).
    pub scan: Option<Box<KeyScan>>,
}

/// The list iterator Redis 7.0 caches in an open key between index-based list operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListIterator {
    None,
    /// Left by reads alone: in step with the list, so reading on moves it a step per element.
    Reading,
    /// Left by a write, or the list was written since: it may be out of step.
    Stale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeState {
    None,
    Active,
    /// A call closed the key under an active range.
    Interrupted,
}

/// A call reply handle.
pub struct ReplyHandle {
    pub reply: CallReply,
    /// Whether the call that produced it used RESP3.
    pub resp3: bool,
}

impl KeyHandle {
    /// Closes and reopens the key (in its own database): after a call, or to drop iterator state
    /// Redis keeps inside an open key.
    pub fn reopen(&mut self, ctx: Ctx, effects: &mut Effects) {
        effects.flush_before_lookup(ctx);
        self.raw = None;
        let current = ctx.selected_db();
        let switched = self.db != current && ctx.select_db(self.db);
        let mode = if self.write {
            MODE_READ | MODE_WRITE
        } else {
            MODE_READ
        };
        // Reopened: the first open counted the access (Redis 7.0 counts keyspace hits again).
        self.raw = ctx.open_key(&self.name, mode | MODE_NO_TOUCH);
        if switched {
            ctx.select_db(current);
        }
        self.suspended = false;
        self.list_iterator.set(ListIterator::None);
        self.interrupt_range();
    }

    /// Closes the key until its next use, which reopens it; an active range on it ends.
    fn suspend(&mut self) {
        self.raw = None;
        self.suspended = true;
        self.interrupt_range();
    }

    /// Marks an active sorted-set range as interrupted (its later calls get `no-range`).
    pub fn interrupt_range(&self) {
        if self.range.get() == RangeState::Active {
            self.range.set(RangeState::Interrupted);
        }
    }
}

impl KeyHandle {
    /// Call before an index-based list write. Redis 7.0 caches a list iterator in an open key
    /// between such operations, and some sequences leave it out of step with the list (an
    /// assertion in `moduleListIteratorSeek`); reopening drops it.
    pub fn fresh_list_iterator(&mut self, ctx: Ctx, effects: &mut Effects) {
        self.drop_list_iterator(ctx, effects);
        self.list_iterator.set(ListIterator::Stale);
    }

    /// Call before an index-based list read: keeps an iterator that only reads have moved (so
    /// reading in order costs a step per element, not a seek from an end), and drops one that
    /// may be out of step.
    pub fn reading_list_iterator(&mut self, ctx: Ctx, effects: &mut Effects) {
        if self.list_iterator.get() == ListIterator::Stale {
            self.reopen(ctx, effects);
        }
        self.list_iterator.set(ListIterator::Reading);
    }

    /// Call on any write through the key: a cached iterator may now be out of step.
    pub fn list_may_have_changed(&self) {
        if self.list_iterator.get() == ListIterator::Reading {
            self.list_iterator.set(ListIterator::Stale);
        }
    }

    /// Call before replacing the value: Redis refuses to set a key while the list iterator of an
    /// index-based list operation is cached in it; reopening drops it.
    pub fn drop_list_iterator(&mut self, ctx: Ctx, effects: &mut Effects) {
        if self.list_iterator.get() != ListIterator::None {
            self.reopen(ctx, effects);
        }
    }
}

/// Why a key operation could not run (mapped to the WIT `key-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFault {
    WrongType,
    NotWritable,
    AlreadyOpen,
    Closed,
    OutOfRange,
    Invalid(String),
    NoRange,
}

/// One replicated command, in the database it applies to; its arguments are in its log's
/// arena.
struct Effect {
    db: i32,
    command: Cow<'static, str>,
    /// `RM_Replicate` modifiers ("", "A", "R").
    modifiers: &'static str,
    /// Its arguments' ends in [`EffectLog::ends`].
    args: std::ops::Range<usize>,
    /// A last argument kept as the guest's write gave it (a value, which may be big: moved
    /// rather than copied into the arena).
    value: Option<Vec<u8>>,
}

/// Commands to replicate, in order. Their arguments are copied into one byte arena that keeps
/// its capacity from command to command, so recording a write allocates nothing (a vector per
/// effect and a copy of the key name cost a push a tenth of the host's own time).
#[derive(Default)]
struct EffectLog {
    effects: Vec<Effect>,
    bytes: Vec<u8>,
    /// Where each argument ends in `bytes` (each starts where the one before ends).
    ends: Vec<usize>,
}

/// Most arguments an effect passes to `RM_Replicate` from the stack (more take a vector).
const STACK_ARGS: usize = 8;

impl EffectLog {
    fn push<A: AsRef<[u8]>>(
        &mut self,
        db: i32,
        command: Cow<'static, str>,
        args: impl IntoIterator<Item = A>,
        value: Option<Vec<u8>>,
        modifiers: &'static str,
    ) {
        let first = self.ends.len();
        for arg in args {
            self.bytes.extend_from_slice(arg.as_ref());
            self.ends.push(self.bytes.len());
        }
        self.effects.push(Effect {
            db,
            command,
            modifiers,
            args: first..self.ends.len(),
            value,
        });
    }

    fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    /// Moves every effect of `other` to the end of this log, in order.
    fn append(&mut self, other: &mut EffectLog) {
        for effect in other.effects.drain(..) {
            let first = self.ends.len();
            for i in effect.args.clone() {
                let start = if i == 0 { 0 } else { other.ends[i - 1] };
                self.bytes
                    .extend_from_slice(&other.bytes[start..other.ends[i]]);
                self.ends.push(self.bytes.len());
            }
            self.effects.push(Effect {
                args: first..self.ends.len(),
                ..effect
            });
        }
        other.clear();
    }

    fn args_of<'a>(&'a self, effect: &'a Effect) -> impl Iterator<Item = &'a [u8]> {
        effect
            .args
            .clone()
            .map(|i| {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                &self.bytes[start..self.ends[i]]
            })
            .chain(effect.value.as_deref())
    }

    /// Empties the log, dropping its buffers if a big command grew them: an idle instance
    /// keeps only small ones (they are Redis's memory, counted in `used_memory`).
    fn clear(&mut self) {
        if self.effects.capacity() > KEPT_CAPACITY
            || self.ends.capacity() > KEPT_CAPACITY * STACK_ARGS
            || self.bytes.capacity() > KEPT_BYTES
        {
            *self = EffectLog::default();
        } else {
            self.effects.clear();
            self.bytes.clear();
            self.ends.clear();
        }
    }

    /// Replicates every effect in order, selecting each one's database, then empties the log.
    fn emit(&mut self, ctx: Ctx) {
        if self.is_empty() {
            return;
        }
        let current = ctx.selected_db();
        let mut selected = current;
        for effect in &self.effects {
            if effect.db != selected && ctx.select_db(effect.db) {
                selected = effect.db;
            }
            let count = effect.args.len() + usize::from(effect.value.is_some());
            if count <= STACK_ARGS {
                let mut args: [&[u8]; STACK_ARGS] = [&[]; STACK_ARGS];
                for (slot, arg) in args.iter_mut().zip(self.args_of(effect)) {
                    *slot = arg;
                }
                ctx.replicate(&effect.command, &args[..count], effect.modifiers);
            } else {
                let args: Vec<&[u8]> = self.args_of(effect).collect();
                ctx.replicate(&effect.command, &args, effect.modifiers);
            }
        }
        if selected != current {
            ctx.select_db(current);
        }
        self.clear();
    }
}

/// Argument bytes an effect log keeps room for from one command to the next.
const KEPT_BYTES: usize = 64 * 1024;

/// The replication of one command's effects.
///
/// - Low-level key writes are recorded as commands (`LPUSH`, `SETRANGE`, `ZADD`, ...) and
///   flushed in order before each call, before `SELECT`, before a key lookup that may expire
///   a key (see `lookups_may_expire`), and at the end.
/// - Calls replicate themselves (`!`), between those flushes.
/// - Explicit `replicate` requests are emitted last, as the Modules API documents.
/// - `replicate-verbatim` replicates the command instead (in the database it started in);
///   recorded writes and the calls made meanwhile are then dropped — or, if the guest trapped
///   or its user was refused something (replicas might not fail the same way, and replay
///   without a user), emitted instead of it.
/// - A guest command such a command calls cannot replicate itself (Redis drops what a call
///   made without `!` replicates) and its command line cannot stand for it: it records
///   everything, like a verbatim command, and hands its effects to its caller
///   ([`Capture`]), which drops or emits them with its own.
pub struct Effects {
    /// Whether the command has written (shared with `busy.rs`: a writer cannot be killed).
    pub wrote: Arc<AtomicBool>,
    pending: EffectLog,
    explicit: EffectLog,
    pub verbatim: bool,
    /// Effects were already propagated — by a call, or recorded writes flushed before a call,
    /// `select-db` or a yield — so replicate-verbatim is refused.
    pub propagated: bool,
    /// The database the command started in (where a verbatim command replays).
    pub start_db: i32,
    /// The command was refused something a replica replaying it would not be refused — by
    /// its user's ACL (replicas replay without a user), a key or call of another cluster
    /// node's slot (the master's link skips those checks), out of memory — so it may not
    /// replicate verbatim.
    pub refused_here: bool,
    /// Called by a command that replicates verbatim: its effects go to that command's
    /// [`Capture`] instead of being replicated.
    pub captured: bool,
    /// A key lookup may now expire a key this command recorded writes to: it runs on the live
    /// clock (a callback), or gave a key an expire that has passed. Redis propagates such a
    /// key's `DEL` at once, so recorded writes are flushed before lookups then, or replicas
    /// would get the `DEL` before them.
    pub lookups_may_expire: bool,
}

impl Effects {
    /// No effects yet; `wrote` is the instance's flag (see `GuestState::wrote`).
    fn new(wrote: Arc<AtomicBool>) -> Effects {
        Effects {
            wrote,
            pending: EffectLog::default(),
            explicit: EffectLog::default(),
            verbatim: false,
            propagated: false,
            start_db: 0,
            refused_here: false,
            captured: false,
            lookups_may_expire: false,
        }
    }

    /// Forgets the previous command's state (keeping the buffers' capacity).
    fn reset(&mut self, start_db: i32) {
        self.wrote.store(false, Ordering::Release);
        self.pending.clear();
        self.explicit.clear();
        self.verbatim = false;
        self.propagated = false;
        self.start_db = start_db;
        self.refused_here = false;
        self.captured = false;
        self.lookups_may_expire = false;
    }

    /// Whether the command's calls run without replicating themselves, each recorded to be
    /// emitted if the verbatim replication is abandoned.
    pub fn records_calls(&self) -> bool {
        self.verbatim || self.captured
    }

    /// Marks the command as having written: `WASM.KILL` (on this thread, during a yield) now
    /// refuses to stop it.
    pub fn mark_wrote(&self) {
        self.wrote.store(true, Ordering::Release);
    }

    /// Records a low-level write as the command that replicates it.
    pub fn record(&mut self, db: i32, command: &'static str, args: &[&[u8]]) {
        self.mark_wrote();
        self.pending
            .push(db, Cow::Borrowed(command), args, None, "");
    }

    /// [`record`](Self::record) of `command key args...`.
    pub fn record_on_key(&mut self, db: i32, command: &'static str, key: &[u8], args: &[&[u8]]) {
        self.mark_wrote();
        let args = std::iter::once(key).chain(args.iter().copied());
        self.pending
            .push(db, Cow::Borrowed(command), args, None, "");
    }

    /// [`record`](Self::record), with a last argument the write's value, moved in (a value
    /// may be big: copying it would double it for a while).
    pub fn record_value(&mut self, db: i32, command: &'static str, args: &[&[u8]], value: Vec<u8>) {
        self.mark_wrote();
        self.pending
            .push(db, Cow::Borrowed(command), args, Some(value), "");
    }

    /// A call made after `replicate-verbatim` (which runs without replicating itself): kept to
    /// be emitted if the command traps and the verbatim replication is abandoned, with the
    /// call's own `A`/`R` (not to the AOF, not to replicas).
    pub fn record_call(
        &mut self,
        db: i32,
        command: &str,
        args: &[Vec<u8>],
        modifiers: &'static str,
    ) {
        self.pending
            .push(db, Cow::Owned(command.to_owned()), args, None, modifiers);
    }

    pub fn record_explicit(
        &mut self,
        db: i32,
        command: String,
        args: &[Vec<u8>],
        modifiers: &'static str,
    ) {
        self.explicit
            .push(db, Cow::Owned(command), args, None, modifiers);
    }

    /// Before a lookup of a key by name (opening, reopening, `key-exists`): emits recorded
    /// writes when the lookup may expire a key (see `lookups_may_expire`).
    pub fn flush_before_lookup(&mut self, ctx: Ctx) {
        if !self.lookups_may_expire {
            return;
        }
        // A replica replaying the command itself would not expire the key (replicas leave that
        // to their master).
        self.stop_replicating_verbatim(ctx);
    }

    /// Before something a replica replaying a verbatim command would not do alike (expire a
    /// key: replicas leave that to their master, and set an expire that has passed without
    /// deleting the key): the command replicates its effects from here on, the ones it
    /// recorded first; a guest command such a command calls makes it do so at its end. Later
    /// `replicate-verbatim` requests are too late.
    pub fn stop_replicating_verbatim(&mut self, ctx: Ctx) {
        if self.captured {
            crate::busy::mark_enclosing_failed(true);
            return;
        }
        self.verbatim = false;
        self.flush(ctx);
        self.propagated = true;
    }

    /// Emits recorded low-level writes (unless the command replicates verbatim).
    pub fn flush(&mut self, ctx: Ctx) {
        if !self.records_calls() && !self.pending.is_empty() {
            self.propagated = true;
            self.pending.emit(ctx);
        }
    }

    /// Emits everything at the end of the command.
    pub fn finish(&mut self, ctx: Ctx, trapped: bool) {
        if self.captured {
            Capture::deliver(&mut self.pending, &mut self.explicit);
            return;
        }
        if self.verbatim && !trapped && !self.refused_here {
            self.pending.clear();
            // The command may have moved its client to another database (`select-db`).
            let now = ctx.selected_db();
            if now != self.start_db {
                ctx.select_db(self.start_db);
            }
            ctx.replicate_verbatim();
            if now != self.start_db {
                ctx.select_db(now);
            }
        } else {
            self.verbatim = false;
            self.flush(ctx);
        }
        self.explicit.emit(ctx);
    }
}

/// The effects of a guest command that a verbatim command calls, collected for the caller
/// (see [`Effects`]). One per such call, on the calling thread, innermost last.
struct CapturedEffects {
    /// A guest command took this capture (the call ran one).
    claimed: bool,
    log: EffectLog,
}

thread_local! {
    static CAPTURES: RefCell<Vec<CapturedEffects>> = const { RefCell::new(Vec::new()) };
}

/// Captures open on any thread: spares each guest command a thread-local lookup when none is.
static OPEN_CAPTURES: AtomicUsize = AtomicUsize::new(0);

/// A verbatim command's call of a guest command, collecting that command's effects; closed
/// (even by a panic) when dropped.
pub struct Capture(());

impl Capture {
    pub fn open() -> Capture {
        CAPTURES.with_borrow_mut(|captures| {
            captures.push(CapturedEffects {
                claimed: false,
                log: EffectLog::default(),
            })
        });
        OPEN_CAPTURES.fetch_add(1, Ordering::Relaxed);
        Capture(())
    }

    /// Closes the capture: what the called command delivered joins `effects`' recorded ones,
    /// in order.
    pub fn close(self, effects: &mut Effects) {
        if let Some(mut captured) = CAPTURES.with_borrow_mut(Vec::pop) {
            effects.pending.append(&mut captured.log);
        }
        OPEN_CAPTURES.fetch_sub(1, Ordering::Relaxed);
        std::mem::forget(self);
    }

    /// At the start of a guest command: whether the call that runs it collects its effects.
    pub fn claim() -> bool {
        OPEN_CAPTURES.load(Ordering::Relaxed) != 0
            && CAPTURES.with_borrow_mut(|captures| match captures.last_mut() {
                Some(capture) if !capture.claimed => {
                    capture.claimed = true;
                    true
                }
                _ => false,
            })
    }

    /// At the end of a guest command that claimed the innermost capture: hands it its
    /// effects, the recorded ones first.
    fn deliver(pending: &mut EffectLog, explicit: &mut EffectLog) {
        CAPTURES.with_borrow_mut(|captures| {
            if let Some(capture) = captures.last_mut() {
                capture.log.append(pending);
                capture.log.append(explicit);
            }
        });
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURES.with_borrow_mut(Vec::pop);
        OPEN_CAPTURES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A list element no list holds, used to replicate index-based list edits with LSET followed
/// by LINSERT/LREM (which act on the first element equal to it). A fresh one for every edit:
/// the markers travel in plain text in the replication stream and the AOF, and a list holding
/// one as data would have replicas edit the wrong element. Each is a keyed hash of a counter
/// (std's `RandomState`, seeded from the OS once per process: SipHash today), which nobody can
/// predict from earlier ones without the keys.
pub fn tombstone() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |which: u64| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u64(which);
        h.finish()
    };
    format!("redis-wasm:tombstone:{:016x}{:016x}", half(0), half(1)).into_bytes()
}

/// Why a guest command runs (see `blocked.rs` and the WIT `blocking` interface).
#[derive(Debug, Default)]
pub enum CallPhase {
    /// A client called it.
    #[default]
    Command,
    /// Its blocked client was unblocked or a key it waits on is ready.
    Reply {
        id: u64,
        private_data: Option<Vec<u8>>,
        ready_key: Option<Vec<u8>>,
    },
    /// Its blocked client's timeout passed.
    Timeout {
        id: u64,
        private_data: Option<Vec<u8>>,
    },
    /// A background job for a blocked client, on another thread with a thread-safe context.
    Background { id: u64 },
}

/// One running command.
pub struct CommandScope {
    pub ctx: Ctx,
    pub command: Arc<CommandSpec>,
    /// The command's index in its guest.
    pub index: u32,
    /// Whether the command is flagged `write`.
    pub may_write: bool,
    /// A blocked client's callback run while clients are paused: Redis runs those callbacks
    /// even then, but nothing may be written or propagated, so writes are refused.
    pub writes_paused: bool,
    pub keys: OpenKeys,
    pub replies: HandleMap<ReplyHandle>,
    pub effects: Effects,
    pub phase: CallPhase,
    /// The client this command blocked, if it did (it then replies later, from a callback).
    pub blocked: Option<u64>,
    /// Set for a background job: its thread-safe context and the user its calls run as.
    pub background: Option<Background>,
    /// ACL checks for what the guest names itself.
    pub acl: CallerAcl,
}

/// ACL checks for what a guest names itself. Redis checks the keys a command declares (its key
/// positions) before running it; any other key the guest opens or tests, and any command it
/// replicates, is checked here, against the user of the client the command runs for.
#[derive(Default)]
pub struct CallerAcl {
    /// Commands from the master or the AOF run without ACLs, like their calls (no `C`).
    exempt: bool,
    /// The command's declared keys back to back; `ends[i]` is where key `i` stops.
    declared: Vec<u8>,
    ends: Vec<usize>,
    /// In cluster mode, for a client's command: the hash slot of its declared keys, for which
    /// Redis routed it here (`Some(None)` for a command without keys).
    cluster_slot: Option<Option<u16>>,
    /// The user of the command's own client, once asked (see [`ask`](Self::ask)).
    context_user: std::cell::OnceCell<ContextUser>,
}

impl CallerAcl {
    /// For a new command: `declared` are its keys that Redis checked (none for a callback).
    /// `routed`: Redis routed the command by its keys to this cluster node.
    pub fn prepare<'a>(
        &mut self,
        exempt: bool,
        routed: bool,
        declared: impl Iterator<Item = &'a [u8]>,
    ) {
        self.exempt = exempt;
        self.context_user = std::cell::OnceCell::new();
        self.declared.clear();
        self.ends.clear();
        for key in declared {
            self.declared.extend_from_slice(key);
            self.ends.push(self.declared.len());
        }
        self.cluster_slot = (routed && !exempt).then(|| {
            self.ends
                .first()
                .map(|&end| key_hash_slot(&self.declared[..end]))
        });
    }

    /// At a command's end: a big command's declared keys give their room back (it would stay
    /// in Redis's `used_memory`, which eviction goes by, until the next command).
    fn release_big_buffers(&mut self) {
        if self.declared.capacity() > KEPT_BYTES || self.ends.capacity() > KEPT_BYTES / 8 {
            self.declared = Vec::new();
            self.ends = Vec::new();
        }
    }

    /// Whether this is a client's command in cluster mode, which may touch its slot only.
    pub fn in_cluster(&self) -> bool {
        self.cluster_slot.is_some()
    }

    /// Whether the command replays the master's or the AOF's work (no ACL applies).
    pub fn replayed(&self) -> bool {
        self.exempt
    }

    /// Whether this node serves key `name`, as far as the command knows: in cluster mode, a key
    /// the command declares or one of their hash slot. Redis checks only declared keys, and
    /// only `call`s later: a key of another slot, opened directly, would be written here while
    /// its owner has another value (and it would surface in this node's RDB).
    pub fn serves_key(&self, name: &[u8]) -> bool {
        match self.cluster_slot {
            None => true,
            Some(slot) => self.is_declared(name) || slot == Some(key_hash_slot(name)),
        }
    }

    fn is_declared(&self, name: &[u8]) -> bool {
        let mut start = 0;
        self.ends.iter().any(|&end| {
            let key = &self.declared[start..end];
            start = end;
            key == name
        })
    }

    /// Whether the command's user may use key `name` this way (see [`ask`](Self::ask)), as if
    /// `command` had declared it.
    pub fn allows_key(
        &self,
        ctx: Ctx,
        command: &CommandSpec,
        name: &[u8],
        access: KeyAccess,
    ) -> bool {
        let dispatcher = command.flags.variant().command_name();
        self.exempt
            || self.is_declared(name)
            || self.ask(
                ctx,
                |client| ctx.client_may_access_key(client, dispatcher, &command.name, name, access),
                |user| ctx.user_may_access_key(user, dispatcher, &command.name, name, access),
            )
    }

    /// Whether the command's user may run `command args` itself (see [`ask`](Self::ask)):
    /// replicas and the AOF replay what a guest replicates without any ACL.
    pub fn allows_command(&self, ctx: Ctx, command: &str, args: &[Vec<u8>]) -> bool {
        self.exempt
            || self.ask(
                ctx,
                |client| ctx.client_may_run(client, command, args),
                |user| ctx.user_may_run(user, command, args),
            )
    }

    /// Why the command's user may not run `command args` (asked of a line it was refused), as
    /// Redis words its own refusals; the command itself when no user can be asked.
    pub fn denial(&self, ctx: Ctx, command: &str, args: &[Vec<u8>]) -> crate::ffi::AclDenial {
        use crate::ffi::AclDenial;
        self.ask_for(
            ctx,
            |client| ctx.client_denial(client, command, args),
            |user| ctx.user_denial(user, command, args),
            AclDenial::Command,
            AclDenial::Command,
        )
    }

    /// Asks `check_client` about the user of the client the command runs for (the innermost
    /// running guest invocation is this command) or, when that is a fake client (a guest
    /// command called by another guest), of the nearest enclosing guest command's client. On a
    /// background job's thread, where the enclosing command is the job, `check_user` asks
    /// about the job's user (refused without one). Otherwise no running command has a
    /// connection: `check_user` asks about the user of the command's own client (a script's
    /// caller, or the user another module called as); a client without a user is one Redis
    /// checks nothing for either (the master, the AOF, another module's unchecked call).
    pub fn ask(
        &self,
        ctx: Ctx,
        check_client: impl Fn(u64) -> Option<bool>,
        check_user: impl Fn(&[u8]) -> Option<bool>,
    ) -> bool {
        self.ask_for(ctx, check_client, check_user, false, true)
    }

    /// [`ask`](Self::ask) for any answer: `refused` where no user can be asked (a job's client
    /// without one, a user deleted or unknown), `unchecked` where Redis checks nothing.
    fn ask_for<T>(
        &self,
        ctx: Ctx,
        check_client: impl Fn(u64) -> Option<T>,
        check_user: impl Fn(&[u8]) -> Option<T>,
        refused: T,
        unchecked: T,
    ) -> T {
        if let Some(answer) = crate::busy::running_clients()
            .into_iter()
            .find_map(check_client)
        {
            return answer;
        }
        JOB_USER.with_borrow(|job| match job {
            Some(Some(user)) => check_user(user).unwrap_or(refused),
            Some(None) => refused,
            None => match self.context_user.get_or_init(|| ctx.context_user()) {
                ContextUser::Named(user) => check_user(user).unwrap_or(refused),
                ContextUser::Unchecked => unchecked,
                ContextUser::Unknown => refused,
            },
        })
    }
}

/// Whether the caller of the running Redis command may run `command args` (refusals are logged
/// as `shown_as`): the client's own user when it is connected; for a script's or a guest's call,
/// the user they run for (as for what guests do). Not for what the master or the AOF replays.
pub fn caller_may_run(ctx: Ctx, shown_as: &str, command: &str, args: &[Vec<u8>]) -> bool {
    ctx.client_may_run_as(ctx.client_id(), shown_as, command, args)
        .unwrap_or_else(|| {
            CallerAcl::default().ask(
                ctx,
                |client| ctx.client_may_run_as(client, shown_as, command, args),
                |user| ctx.user_may_run(user, command, args),
            )
        })
}

thread_local! {
    /// On a background job's thread, while the job runs: the ACL user of its blocked client
    /// (`None` inside when it has none).
    static JOB_USER: RefCell<Option<Option<Vec<u8>>>> = const { RefCell::new(None) };
}

/// Marks this thread as running a background job for `user` until dropped: guest commands the
/// job calls check the keys they open against that user (see [`CallerAcl::ask`]).
pub struct JobUserGuard(());

impl JobUserGuard {
    pub fn enter(user: Option<Vec<u8>>) -> JobUserGuard {
        JOB_USER.set(Some(user));
        JobUserGuard(())
    }
}

impl Drop for JobUserGuard {
    fn drop(&mut self) {
        JOB_USER.set(None);
    }
}

/// The cluster hash slot of a key, as Redis computes it: CRC16 (XMODEM) of the key, or of its
/// hash tag (what is between the first `{` and the next `}`, when not empty), modulo 16384.
pub fn key_hash_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let crc = tagged.unwrap_or(key).iter().fold(0u16, |mut crc, &byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    });
    crc & 0x3fff
}

/// The error for a key of another hash slot (see [`CallerAcl::serves_key`]).
pub fn not_served_here(name: &[u8]) -> String {
    const SHOWN: usize = 128;
    let shown = String::from_utf8_lossy(&name[..name.len().min(SHOWN)]);
    format!(
        "ERR key '{shown}' is not in the hash slot of the command's keys: in cluster mode a guest \
         opens only the keys its command declares and keys of their slot (declare the key or \
         give it their hash tag, or use call)"
    )
}

/// The error for a key the user may not access, like Redis's own.
pub fn no_key_permission(name: &[u8]) -> String {
    const SHOWN: usize = 128;
    let shown = String::from_utf8_lossy(&name[..name.len().min(SHOWN)]);
    let more = if name.len() > SHOWN { "..." } else { "" };
    format!("NOPERM this user has no permissions to access the '{shown}{more}' key")
}

/// What a background job needs to call Redis from its thread.
pub struct Background {
    pub ctx: crate::ffi::ThreadSafeCtx,
    /// The ACL user of the blocked client (`None`: no user; calls are refused).
    pub user: Option<Vec<u8>>,
}

impl CommandScope {
    /// An idle scope, reused by every command of one instance (see [`reset`](Self::reset)).
    /// `wrote` is the instance's flag (see `GuestState::wrote`).
    pub fn idle(ctx: Ctx, command: Arc<CommandSpec>, wrote: Arc<AtomicBool>) -> Self {
        CommandScope {
            ctx,
            command,
            index: 0,
            may_write: false,
            writes_paused: false,
            keys: OpenKeys::default(),
            replies: HandleMap::default(),
            effects: Effects::new(wrote),
            acl: CallerAcl::default(),
            phase: CallPhase::Command,
            blocked: None,
            background: None,
        }
    }

    /// Prepares the scope for a new command: tables and logs keep their capacity, so a command
    /// usually allocates nothing here.
    pub fn reset(&mut self, ctx: Ctx, command: &Arc<CommandSpec>, index: u32, phase: CallPhase) {
        let background = matches!(phase, CallPhase::Background { .. });
        // A background job's calls are read-only (see `blocked.rs`).
        let may_write = command.flags.variant().may_write() && !background;
        let writes_paused = matches!(phase, CallPhase::Reply { .. } | CallPhase::Timeout { .. })
            && crate::ffi::writes_paused();
        self.effects
            .reset(if background { 0 } else { ctx.selected_db() });
        // Callbacks look keys up on the live clock (a command, on the time it started at).
        self.effects.lookups_may_expire =
            matches!(phase, CallPhase::Reply { .. } | CallPhase::Timeout { .. });
        self.ctx = ctx;
        if !Arc::ptr_eq(&self.command, command) {
            self.command = command.clone();
        }
        self.index = index;
        self.may_write = may_write && !writes_paused;
        self.writes_paused = writes_paused;
        self.keys.empty_for_reuse();
        empty_for_reuse(&mut self.replies);
        self.phase = phase;
        self.blocked = None;
        self.background = None;
    }

    /// Whether this runs as a background job (off the main thread).
    pub fn in_background(&self) -> bool {
        matches!(self.phase, CallPhase::Background { .. })
    }

    pub fn handle_count(&self) -> usize {
        self.keys.len() + self.replies.len()
    }

    /// Opens a key, enforcing the conflict rules.
    pub fn open_key(&mut self, name: Vec<u8>, write: bool) -> Result<KeyHandle, KeyFault> {
        if self.in_background() {
            return Err(KeyFault::Invalid(
                "ERR keys cannot be opened in a background job (use call)".into(),
            ));
        }
        if write && self.writes_paused {
            return Err(KeyFault::Invalid(crate::ffi::WRITES_PAUSED.into()));
        }
        if write && !self.may_write {
            return Err(KeyFault::Invalid(format!(
                "ERR command '{}' is not flagged 'write': it cannot open keys for writing",
                self.command.name
            )));
        }
        let access = if write {
            KeyAccess::ReadWrite
        } else {
            KeyAccess::Read
        };
        if !self.acl.allows_key(self.ctx, &self.command, &name, access) {
            self.effects.refused_here = true;
            return Err(KeyFault::Invalid(no_key_permission(&name)));
        }
        if !self.acl.serves_key(&name) {
            self.effects.refused_here = true;
            return Err(KeyFault::Invalid(not_served_here(&name)));
        }
        let db = self.ctx.selected_db();
        let (open, open_for_writing) = self.keys.uses(db, &name);
        if open > 0 && (write || open_for_writing) {
            return Err(KeyFault::AlreadyOpen);
        }
        // Another read handle on this key: opening the key again may expire it (a blocked
        // client's callback runs outside a command, on the live clock), which would free it
        // under the first handle. There the first is closed and reopens when next used.
        if open > 0 {
            self.suspend_key(db, &name);
        }
        let mode = if write {
            MODE_READ | MODE_WRITE
        } else {
            MODE_READ
        };
        self.effects.flush_before_lookup(self.ctx);
        let raw = self.ctx.open_key(&name, mode);
        Ok(KeyHandle {
            name,
            db,
            write,
            raw,
            suspended: false,
            range: Cell::new(RangeState::None),
            list_iterator: Cell::new(ListIterator::None),
            scan: None,
        })
    }

    /// The key behind a handle, reopened if a call suspended it, with the effects log.
    pub fn key(&mut self, number: u32) -> Result<(&mut KeyHandle, &mut Effects, Ctx), KeyFault> {
        let reopening = self
            .keys
            .get(number)
            .filter(|key| key.suspended)
            .map(|key| (key.db, key.name.clone()));
        if let Some((db, name)) = reopening {
            // Reopening looks the key up again, which may expire it: close the others on it.
            self.suspend_key(db, &name);
        }
        let CommandScope {
            ctx, keys, effects, ..
        } = self;
        let ctx = *ctx;
        let key = keys.get_mut(number).ok_or(KeyFault::Closed)?;
        if key.suspended {
            key.reopen(ctx, effects);
        }
        Ok((key, effects, ctx))
    }

    /// Closes the open handles on one key before a lookup of it that may expire it (they reopen
    /// when next used, and a range or scan on them ends). Only callbacks and background jobs
    /// look keys up on the live clock: a command runs inside Redis's `call()`, which holds the
    /// clock that expires keys still for the whole command, so a key alive at its first lookup
    /// stays alive — unless the command gives it an expire in the past, which needs a handle
    /// open for writing, and no other handle can be open on the key then (`before_lookup`
    /// covers the lookup that `key-exists` makes). So handles stay open and ranges go on in a
    /// command — between yields: a yield moves the clock (and lets active defrag move values),
    /// so every key is closed before one (`suspend_keys`). (Reads that change the stored value
    /// are another matter: see `close_other_handles`.)
    pub fn suspend_key(&mut self, db: i32, name: &[u8]) {
        if matches!(self.phase, CallPhase::Command) {
            return;
        }
        self.close_handles_on(db, name);
    }

    fn close_handles_on(&mut self, db: i32, name: &[u8]) {
        for key in self.keys.values_mut() {
            if key.db == db && key.name == name && key.raw.is_some() {
                key.suspend();
            }
        }
    }

    /// Whether more than one key is open (only then can another handle share a key).
    pub fn holds_several_keys(&self) -> bool {
        self.keys.handles.len() > 1
    }

    /// Closes the other handles open on the key behind handle `number` (they reopen when next
    /// used), in every phase. For a string that is not stored raw (a short or integer one),
    /// `RedisModule_StringDMA` replaces the value object even to read it, freeing the object
    /// that the other handles on the key still point to.
    pub fn close_other_handles(&mut self, number: u32) {
        self.close_others_where(number, |_| true);
    }

    /// Closes the other handles on the key behind handle `number` that hold a list iterator:
    /// Redis keeps one in a key between index-based list reads, and two on one list undo each
    /// other (one moving off a compressed node recompresses it, freeing what the other reads).
    pub fn close_other_list_iterators(&mut self, number: u32) {
        self.close_others_where(number, |key| key.list_iterator.get() != ListIterator::None);
    }

    fn close_others_where(&mut self, number: u32, which: impl Fn(&KeyHandle) -> bool) {
        if self.keys.handles.len() < 2 {
            return;
        }
        let Some(key) = self.keys.get(number) else {
            return;
        };
        if self.keys.uses(key.db, &key.name).0 < 2 {
            return;
        }
        let (db, name) = (key.db, key.name.clone());
        for (other, key) in self.keys.handles.iter_mut() {
            if *other != number
                && key.db == db
                && key.name == name
                && key.raw.is_some()
                && which(key)
            {
                key.suspend();
            }
        }
    }

    /// Before a lookup of a key by name (`key-exists`): closes the handles on it that the
    /// lookup could free under them by expiring the key (see `suspend_key`) — in a command
    /// too when one is open for writing, since that one may have set an expire in the past.
    pub fn before_lookup(&mut self, db: i32, name: &[u8]) {
        self.effects.flush_before_lookup(self.ctx);
        if matches!(self.phase, CallPhase::Command) && !self.keys.uses(db, name).1 {
            return;
        }
        self.close_handles_on(db, name);
    }

    /// Closes every key before something that may change the keyspace under them (a call), and
    /// emits recorded writes so they precede the call's own effects.
    pub fn suspend_keys(&mut self) {
        self.effects.flush(self.ctx);
        for key in self.keys.values_mut() {
            key.suspend();
        }
    }

    /// Ends the command: closes keys, releases replies, emits replication.
    pub fn finish(&mut self, trapped: bool) {
        self.keys.clear();
        self.acl.release_big_buffers();
        if let Some(background) = &self.background {
            // Freeing a call reply needs no lock (see `Root` in ffi/call.rs), and a job frees
            // them without it as it goes; at its end they go under the lock all the same, which
            // costs little once and keeps the job's last touch of Redis serialized.
            let _lock = background.ctx.lock();
            self.replies.clear();
            return;
        }
        self.replies.clear();
        // A guest command this one called failed in the host's hands: replicating this command
        // verbatim would have a replica run that call again under other limits.
        let trapped = trapped || (self.effects.verbatim && crate::busy::inner_failed());
        self.effects.finish(self.ctx, trapped);
        // A command replayed from the master or the AOF came in the database it started in,
        // and the stream goes on from there (the master sends no SELECT after it): a guest that
        // selected another database must not leave the replaying client in it.
        if self.acl.replayed() && self.ctx.selected_db() != self.effects.start_db {
            self.ctx.select_db(self.effects.start_db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CallerAcl, EffectLog};

    #[test]
    fn an_appended_effect_log_follows_the_first_in_order() {
        let mut first = EffectLog::default();
        first.push(0, "DEL".into(), [b"k"], None, "");
        let mut second = EffectLog::default();
        second.push(1, "RPUSH".into(), [&b"l"[..], b"a", b"b"], None, "R");
        second.push(2, "SET".into(), [b"s"], Some(b"v".to_vec()), "A");
        first.append(&mut second);
        assert!(second.is_empty() && second.bytes.is_empty());
        let seen: Vec<(i32, &str, Vec<&[u8]>, &str)> = first
            .effects
            .iter()
            .map(|e| (e.db, &*e.command, first.args_of(e).collect(), e.modifiers))
            .collect();
        assert_eq!(
            seen,
            [
                (0, "DEL", vec![&b"k"[..]], ""),
                (1, "RPUSH", vec![&b"l"[..], b"a", b"b"], "R"),
                (2, "SET", vec![&b"s"[..], b"v"], "A"),
            ]
        );
    }

    #[test]
    fn an_effect_log_gives_back_each_effects_own_arguments() {
        let mut log = EffectLog::default();
        log.push(0, "DEL".into(), [b"k"], None, "");
        log.push(1, "PING".into(), &[] as &[&[u8]], None, "A");
        let many: Vec<Vec<u8>> = (0..10).map(|i| vec![b'a' + i; i as usize]).collect();
        log.push(2, "RPUSH".into(), &many, None, "");
        log.push(0, "SET".into(), [&b"k"[..], b""], Some(b"v".to_vec()), "R");
        let seen: Vec<(i32, &str, Vec<&[u8]>, &str)> = log
            .effects
            .iter()
            .map(|e| (e.db, &*e.command, log.args_of(e).collect(), e.modifiers))
            .collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(
            seen,
            [
                (0, "DEL", vec![&b"k"[..]], ""),
                (1, "PING", vec![], "A"),
                (2, "RPUSH", many, ""),
                (0, "SET", vec![&b"k"[..], b"", b"v"], "R"),
            ]
        );
        log.clear();
        assert!(log.is_empty() && log.bytes.is_empty() && log.ends.is_empty());
        // A big command's buffers are not kept.
        log.push(
            0,
            "SET".into(),
            &[vec![0u8; super::KEPT_BYTES + 1]],
            None,
            "",
        );
        log.clear();
        assert_eq!(log.bytes.capacity(), 0);
    }

    #[test]
    fn declared_keys_are_recognized_exactly() {
        let mut acl = CallerAcl::default();
        acl.prepare(false, false, [&b"counter"[..], b"", b"k2"].into_iter());
        assert!(acl.is_declared(b"counter"));
        assert!(acl.is_declared(b""));
        assert!(acl.is_declared(b"k2"));
        assert!(!acl.is_declared(b"count"));
        assert!(!acl.is_declared(b"counterk2"));
        // A new command forgets the last one's keys.
        acl.prepare(false, false, std::iter::empty());
        assert!(!acl.is_declared(b"counter"));
    }

    #[test]
    fn hash_slots_are_redis_s() {
        use super::key_hash_slot;
        // `CLUSTER KEYSLOT` answers (123456789: CRC16/XMODEM's check value 0x31c3).
        assert_eq!(key_hash_slot(b"foo"), 12182);
        assert_eq!(
            key_hash_slot(b"{user1000}.following"),
            key_hash_slot(b"user1000")
        );
        // `{}` is no tag: the whole key is hashed (CLUSTER KEYSLOT foo{}{bar} is 8363).
        assert_eq!(key_hash_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_hash_slot(b"123456789"), 12739);
        assert_eq!(key_hash_slot(b"foo{{bar}}zap"), key_hash_slot(b"{bar"));
    }

    #[test]
    fn in_cluster_mode_only_keys_of_the_routed_slot_are_served() {
        let mut acl = CallerAcl::default();
        acl.prepare(false, true, [&b"{u1}:a"[..]].into_iter());
        assert!(acl.serves_key(b"{u1}:a"));
        assert!(acl.serves_key(b"{u1}:b"));
        assert!(!acl.serves_key(b"foo"));
        // A keyless command serves none; a replayed one, or outside a cluster, all.
        acl.prepare(false, true, std::iter::empty());
        assert!(!acl.serves_key(b"foo"));
        acl.prepare(true, true, std::iter::empty());
        assert!(acl.serves_key(b"foo"));
        acl.prepare(false, false, std::iter::empty());
        assert!(acl.serves_key(b"foo"));
    }
}
