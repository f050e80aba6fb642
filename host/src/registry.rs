//! Which guests are loaded and which command names route to them.
//!
//! One process-wide [`Registry`] behind a mutex. It is only touched under Redis's global lock,
//! so the mutex is never contended; it exists to make the shared state sound. The lock is never
//! held while guest code runs (a guest's calls re-enter the command filter and the dispatcher).
//!
//! Every command Redis runs asks for its route (the filter), and a guest command asks twice (the
//! dispatcher too), so the main thread keeps the last route it found ([`with_route`]) and a
//! pipeline of one command finds it without the lock or a reference count: on this path the
//! atomic read-modify-writes, not the lookups, were most of the cost (BENCHMARKS.md).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ffi::Ctx;
use crate::flags::{CommandFlags, Variant};
use crate::guest::Guest;

/// The module API version guests declare (`REDISMODULE_APIVER_1`).
pub const API_VERSION: i32 = 1;
pub const MAX_COMMANDS_PER_GUEST: usize = 1024;
pub const MAX_NAME_LEN: usize = 128;

/// What a guest declared with `init-module`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    pub version: i32,
    pub api_version: i32,
}

impl ModuleInfo {
    /// Guest names: 1-128 characters of letters, digits, `_`, `-`, `.`.
    pub fn check_name(name: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(format!(
                "a guest name must have 1 to {MAX_NAME_LEN} characters"
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(format!(
                "guest name '{name}' may only contain letters, digits, '_', '-' and '.'"
            ));
        }
        Ok(())
    }
}

/// One guest command, as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase.
    pub name: String,
    pub flags: CommandFlags,
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub arity: i32,
}

impl CommandSpec {
    pub fn new(
        name: &str,
        flags: &str,
        first_key: i32,
        last_key: i32,
        key_step: i32,
        arity: i32,
    ) -> Result<Self, String> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(format!(
                "a command name must have 1 to {MAX_NAME_LEN} characters"
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'|') {
            return Err(
                "a command name may only contain printable characters, without spaces or '|'"
                    .to_owned(),
            );
        }
        let flags = CommandFlags::parse(flags)?;
        if first_key < 0 || key_step < 0 {
            return Err(
                "key positions cannot be negative (only last-key may count from the end)"
                    .to_owned(),
            );
        }
        if first_key == 0 && (last_key != 0 || key_step != 0) {
            return Err(
                "a command without keys (first-key 0) must have last-key and key-step 0".to_owned(),
            );
        }
        if first_key > 0 && (key_step == 0 || (last_key > 0 && last_key < first_key)) {
            return Err(
                "key positions need key-step >= 1 and last-key >= first-key (or negative)"
                    .to_owned(),
            );
        }
        if arity == i32::MIN {
            return Err("arity out of range".to_owned());
        }
        // With an exact arity, arguments are 1 to arity - 1: a key beyond them is never there.
        if arity > 0 && first_key > 0 && (first_key >= arity || last_key >= arity) {
            return Err(format!(
                "key positions {first_key} to {last_key} lie beyond the arity {arity} (the \
                 command's arguments are 1 to {}; the name counts in the arity)",
                arity - 1
            ));
        }
        Ok(CommandSpec {
            name: name.to_ascii_lowercase(),
            flags,
            first_key,
            last_key,
            key_step,
            arity,
        })
    }

    /// Whether `argc` arguments (counting the command name) satisfy the declared arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        match self.arity {
            0 => true,
            a if a > 0 => argc == arity,
            _ => argc >= -arity,
        }
    }

    /// Positions of the keys among `argc` guest arguments (position 0 is the command name), as
    /// Redis computes them from first/last/step. Positions beyond the arguments are skipped.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let first = i64::from(self.first_key);
        let step = i64::from(self.key_step).max(1);
        let last = if self.last_key < 0 {
            argc + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        };
        let end = if first == 0 { 0 } else { last.min(argc - 1) };
        (0..)
            .map(move |i| first + i * step)
            .take_while(move |&pos| first > 0 && pos <= end)
            .filter_map(|pos| usize::try_from(pos).ok())
    }
}

/// Where a command name leads.
#[derive(Clone)]
pub struct Route {
    pub guest: Arc<Guest>,
    pub index: u32,
    pub spec: Arc<CommandSpec>,
}

/// FNV-1a: command names are short and chosen by loaded guests, and the command filter looks
/// one up for every command Redis runs, so a cheap hash beats SipHash here.
#[derive(Default, Clone)]
pub struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type NameMap<V> = HashMap<Vec<u8>, V, std::hash::BuildHasherDefault<NameHasher>>;

#[derive(Default, Clone)]
pub struct Registry {
    guests: HashMap<String, Arc<Guest>>,
    /// Lowercase command name → route.
    commands: NameMap<Route>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
/// The lengths of registered command names, one bit per length (1 to `MAX_NAME_LEN`): the
/// filter sees every command Redis runs, and most (`GET`, `HSET`, ...) have a length no guest
/// command has, so they skip lowercasing, the lock and the lookup (all of them when no guest
/// command is registered).
static NAME_LENGTHS: [AtomicU64; MAX_NAME_LEN / 64] =
    [const { AtomicU64::new(0) }; MAX_NAME_LEN / 64];

const _: () = assert!(MAX_NAME_LEN.is_multiple_of(64));

/// The word and bit of `NAME_LENGTHS` for a name length in 1..=`MAX_NAME_LEN`.
fn length_bit(len: usize) -> (usize, u64) {
    ((len - 1) / 64, 1 << ((len - 1) % 64))
}

/// Locks the registry. Our code never panics while holding it, but if it did the data is still
/// consistent (every update is a single insert/remove sequence), so poisoning is ignored.
fn lock() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The registry's lock, held by the thread that forks from just before the fork to just
    /// after it (see [`hold_lock_across_forks`]).
    static HELD_ACROSS_FORK: RefCell<Option<MutexGuard<'static, Option<Registry>>>> =
        const { RefCell::new(None) };
}

/// Makes every fork wait for the registry's lock and release it on both sides. The child saves
/// the guests (BGSAVE, AOF rewrite, full sync) from the registry, with only the forking thread:
/// a lock some other thread held at the fork (a background job looking a command up) would
/// never be released there, and the child would wait for ever. Holders never wait for anything
/// while holding it, so a fork waits at most for one lookup.
pub fn hold_lock_across_forks() {
    // SAFETY: registers functions of this library, which stays mapped for the life of the
    // process (`ffi::pin_library`); they run on the forking thread around each fork.
    unsafe {
        libc::pthread_atfork(
            Some(lock_before_fork),
            Some(unlock_after_fork),
            Some(unlock_after_fork),
        )
    };
}

extern "C" fn lock_before_fork() {
    let _ = std::panic::catch_unwind(|| {
        let guard = lock();
        HELD_ACROSS_FORK.with_borrow_mut(|held| *held = Some(guard));
    });
}

extern "C" fn unlock_after_fork() {
    let _ = std::panic::catch_unwind(|| HELD_ACROSS_FORK.with_borrow_mut(|held| drop(held.take())));
}

/// Holds the registry's lock on another thread for `time` (`WASM.DEBUG HOLD-REGISTRY`),
/// returning once it is held.
pub fn debug_hold_lock(time: std::time::Duration) {
    let (held, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _guard = lock();
        let _ = held.send(());
        std::thread::sleep(time);
    });
    let _ = wait.recv();
}

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = lock();
    f(guard.get_or_insert_with(Registry::default))
}

/// Whether a name of this length could be a guest command name.
fn may_be_guest_command(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    let (word, bit) = length_bit(name.len());
    NAME_LENGTHS[word].load(Ordering::Relaxed) & bit != 0
}

/// Looks `name` up in the registry (case-insensitively).
fn lookup(name: &[u8]) -> Option<Route> {
    if !may_be_guest_command(name) {
        return None;
    }
    let mut buf = [0u8; MAX_NAME_LEN];
    let key = &mut buf[..name.len()];
    key.copy_from_slice(name);
    key.make_ascii_lowercase();
    with(|r| r.commands.get(&*key).cloned())
}

/// Bumped on every change to the command names (under the registry's lock).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A route the main thread looked up, with the name exactly as it was asked for.
struct CachedRoute {
    generation: u64,
    name: Vec<u8>,
    route: Route,
}

thread_local! {
    /// The main thread's last route. A pipeline of one guest command looks the same name up
    /// twice per call (the filter, then the dispatcher): this spares both the lock, the
    /// lowercasing, the hash lookup and the reference counting. Only the main thread fills it,
    /// so no other thread keeps an unloaded guest alive.
    static LAST_ROUTE: Cell<Option<CachedRoute>> = const { Cell::new(None) };
}

/// Runs `f` with the route for a command name, if it is a guest command. This runs for every
/// command Redis executes (the filter), so it returns early for names no guest command has the
/// length of, and serves repeated names from [`LAST_ROUTE`] without a lock or allocation.
pub fn with_route<R>(name: &[u8], f: impl FnOnce(&Route) -> R) -> Option<R> {
    if !may_be_guest_command(name) {
        return None;
    }
    let generation = GENERATION.load(Ordering::Acquire);
    LAST_ROUTE.with(|slot| {
        // Taken out while `f` runs: a guest's calls re-enter the filter and the dispatcher.
        let (entry, cached) = match slot.take() {
            Some(entry) if entry.generation == generation && entry.name == name => (entry, true),
            _ => {
                let route = lookup(name)?;
                let name = name.to_vec();
                let entry = CachedRoute {
                    generation,
                    name,
                    route,
                };
                (entry, false)
            }
        };
        let result = f(&entry.route);
        if (cached || crate::busy::on_main_thread())
            && entry.generation == GENERATION.load(Ordering::Acquire)
        {
            slot.set(Some(entry));
        }
        Some(result)
    })
}

/// Drops this thread's cached route now, outside the registry's lock, rather than at its next
/// guest command: it may hold the guest just replaced or unloaded.
fn forget_cached_route() {
    // `try_with`: nothing to forget on a thread whose locals are already gone.
    let _ = LAST_ROUTE.try_with(|slot| drop(slot.take()));
}

/// The dispatcher for a command name, if it is a guest command.
pub fn variant_of(name: &[u8]) -> Option<Variant> {
    with_route(name, |route| route.spec.flags.variant())
}

/// The route for a command name.
pub fn route(name: &[u8]) -> Option<Route> {
    with_route(name, Route::clone)
}

/// A number that changes whenever guests are loaded, replaced or unloaded.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The loaded guest of this name.
pub fn guest(name: &str) -> Option<Arc<Guest>> {
    with(|r| r.guests.get(name).cloned())
}

/// All loaded guests, sorted by name.
pub fn guests() -> Vec<Arc<Guest>> {
    let mut all: Vec<Arc<Guest>> = with(|r| r.guests.values().cloned().collect());
    all.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    all
}

/// Called after every change to the command names.
fn refresh_counters(r: &Registry) {
    GENERATION.fetch_add(1, Ordering::Release);
    let mut lengths = [0u64; MAX_NAME_LEN / 64];
    for name in r
        .commands
        .keys()
        .filter(|n| (1..=MAX_NAME_LEN).contains(&n.len()))
    {
        let (word, bit) = length_bit(name.len());
        lengths[word] |= bit;
    }
    for (stored, bits) in NAME_LENGTHS.iter().zip(lengths) {
        stored.store(bits, Ordering::Relaxed);
    }
}

/// Guests loaded at once, and load arguments of one guest, at most: the RDB, the AOF preamble
/// and `WASM.DUMP` hold them all, and their readers take no more (more is corruption there).
pub const MAX_GUESTS: usize = 100_000;
pub const MAX_LOAD_ARGS: usize = 1 << 20;

impl Registry {
    /// Adds `guest` and its commands, replacing the guest of the same name when `replace`,
    /// after checking it against the other guests. Gives the replaced guest.
    fn insert(&mut self, guest: Arc<Guest>, replace: bool) -> Result<Option<Arc<Guest>>, String> {
        self.check(&guest, replace)?;
        Ok(self.apply(guest))
    }

    /// [`insert`](Self::insert) of a guest [`check`](Self::check) passed.
    fn apply(&mut self, guest: Arc<Guest>) -> Option<Arc<Guest>> {
        let name = &guest.info.name;
        let previous = self.guests.get(name).cloned();
        if let Some(old) = &previous {
            for spec in &old.commands {
                self.commands.remove(spec.name.as_bytes());
            }
        }
        for (index, spec) in guest.commands.iter().enumerate() {
            let index = u32::try_from(index).expect("bounded by MAX_COMMANDS_PER_GUEST");
            self.commands.insert(
                spec.name.as_bytes().to_vec(),
                Route {
                    guest: guest.clone(),
                    index,
                    spec: spec.clone(),
                },
            );
        }
        self.guests.insert(name.clone(), guest);
        previous
    }

    /// Whether `guest` may be added ([`insert`](Self::insert)).
    fn check(&self, guest: &Guest, replace: bool) -> Result<(), String> {
        let name = &guest.info.name;
        let previous = self.guests.get(name);
        if previous.is_some() && !replace {
            return Err(format!(
                "guest '{name}' is already loaded (use REPLACE to upgrade it)"
            ));
        }
        if previous.is_none() && self.guests.len() >= MAX_GUESTS {
            return Err(format!(
                "{MAX_GUESTS} guests are loaded, the most there can be"
            ));
        }
        for spec in &guest.commands {
            if let Some(route) = self.commands.get(spec.name.as_bytes())
                && route.guest.info.name != *name
            {
                return Err(format!(
                    "command '{}' is already registered by guest '{}'",
                    spec.name, route.guest.info.name
                ));
            }
        }
        for (type_name, _) in &guest.data_types {
            if let Some(owner) = self
                .guests
                .values()
                .find(|g| g.info.name != *name && g.data_types.iter().any(|(t, _)| t == type_name))
            {
                return Err(format!(
                    "data type '{type_name}' belongs to guest '{}'",
                    owner.info.name
                ));
            }
        }
        Ok(())
    }

    /// Removes a guest and its commands.
    fn remove(&mut self, name: &str) -> Option<Arc<Guest>> {
        let guest = self.guests.remove(name)?;
        for spec in &guest.commands {
            self.commands.remove(spec.name.as_bytes());
        }
        Some(guest)
    }
}

/// Publishes `guest` and its commands, replacing the guest of the same name when `replace`.
/// Checks against other guests happen here, atomically with the update; checks against Redis's
/// own commands are the caller's (they need `RM_Call`, which must not run under this lock).
///
/// The data types it declared that are new to the server are registered with Redis here, once
/// nothing else can make the load fail (see `state::DeclaredType`).
pub fn commit(ctx: Ctx, guest: Arc<Guest>, replace: bool) -> Result<Option<Arc<Guest>>, String> {
    let committed = with(|r| {
        r.check(&guest, replace)?;
        register_types(ctx, std::slice::from_ref(&guest))?;
        let previous = r.apply(guest);
        refresh_counters(r);
        Ok(previous)
    });
    forget_cached_route();
    // Outside the registry's lock: releasing clients blocked on keys runs their callbacks.
    if let Ok(Some(previous)) = &committed {
        gone(previous);
    }
    committed
}

/// Removes the guests named in `remove`, then publishes `guests` (replacing namesakes when
/// `replace`): all of it or, on the first conflict, nothing (`WASM.RESTORE` is atomic, as
/// `FUNCTION RESTORE` is).
pub fn commit_all(
    ctx: Ctx,
    remove: &[String],
    guests: &[Arc<Guest>],
    replace: bool,
) -> Result<(), String> {
    let gone = with(|r| {
        let mut next = r.clone();
        let mut gone: Vec<Arc<Guest>> = remove.iter().filter_map(|n| next.remove(n)).collect();
        // Every guest being replaced goes first: a new guest may take over a command or data
        // type that its old namesake gives up, whatever the order of the new guests.
        if replace {
            gone.extend(guests.iter().filter_map(|g| next.remove(&g.info.name)));
        }
        for guest in guests {
            gone.extend(next.insert(guest.clone(), replace)?);
        }
        register_types(ctx, guests)?;
        *r = next;
        refresh_counters(r);
        Ok(gone)
    });
    forget_cached_route();
    for guest in gone.iter().flatten() {
        self::gone(guest);
    }
    gone.map(drop)
}

/// Registers with Redis the data types `guests` declared that the server does not know yet.
fn register_types(ctx: Ctx, guests: &[Arc<Guest>]) -> Result<(), String> {
    let names = guests
        .iter()
        .flat_map(|guest| guest.data_types.iter().map(|(name, _)| name.as_str()));
    ctx.register_guest_types(names)
}

/// Removes a guest and its commands; its blocked clients get an error.
pub fn remove(name: &str) -> Option<Arc<Guest>> {
    let removed = with(|r| {
        let guest = r.remove(name)?;
        refresh_counters(r);
        Some(guest)
    });
    forget_cached_route();
    if let Some(guest) = &removed {
        gone(guest);
    }
    removed
}

/// A guest left the registry: its blocked clients get an error, and its counters go on
/// counting in `INFO wasm`'s totals.
fn gone(guest: &Arc<Guest>) {
    crate::blocked::release_guest(guest);
    crate::info::retire(guest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(first: i32, last: i32, step: i32) -> CommandSpec {
        CommandSpec::new("x.y", "", first, last, step, 0).unwrap()
    }

    #[test]
    fn key_positions_follow_redis_rules() {
        let positions = |s: &CommandSpec, argc| s.key_positions(argc).collect::<Vec<_>>();
        assert_eq!(positions(&spec(0, 0, 0), 5), Vec::<usize>::new());
        assert_eq!(positions(&spec(1, 1, 1), 3), vec![1]);
        assert_eq!(positions(&spec(1, 2, 1), 3), vec![1, 2]);
        assert_eq!(positions(&spec(1, -1, 2), 6), vec![1, 3, 5]);
        assert_eq!(positions(&spec(1, -1, 1), 1), Vec::<usize>::new());
        assert_eq!(positions(&spec(2, 3, 1), 3), vec![2]);
    }

    #[test]
    fn arity_is_checked_like_redis() {
        let s = CommandSpec::new("a", "", 0, 0, 0, 2).unwrap();
        assert!(s.arity_ok(2) && !s.arity_ok(1) && !s.arity_ok(3));
        let s = CommandSpec::new("a", "", 0, 0, 0, -2).unwrap();
        assert!(s.arity_ok(2) && s.arity_ok(9) && !s.arity_ok(1));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(CommandSpec::new("", "", 0, 0, 0, 0).is_err());
        assert!(CommandSpec::new("a b", "", 0, 0, 0, 0).is_err());
        assert!(CommandSpec::new("a|b", "", 0, 0, 0, 0).is_err());
        assert!(CommandSpec::new("a", "", -1, 0, 0, 0).is_err());
        assert!(CommandSpec::new("a", "", 0, 1, 0, 0).is_err());
        assert!(CommandSpec::new("a", "", 2, 1, 1, 0).is_err());
        assert!(CommandSpec::new("a", "", 1, 1, 0, 0).is_err());
        // Keys beyond an exact arity; a variable arity or a key from the end is fine.
        let beyond = CommandSpec::new("a", "", 2, 2, 1, 2).unwrap_err();
        assert!(beyond.contains("beyond the arity 2"), "{beyond}");
        assert!(CommandSpec::new("a", "", 1, 2, 1, 2).is_err());
        assert!(CommandSpec::new("a", "", 1, 1, 1, 2).is_ok());
        assert!(CommandSpec::new("a", "", 2, 4, 1, -2).is_ok());
        assert!(CommandSpec::new("a", "", 1, -1, 1, 3).is_ok());
        assert_eq!(
            CommandSpec::new("A.B", "", 1, -1, 1, 0).unwrap().name,
            "a.b"
        );
    }
}
