//! Guests as data: the RDB aux record, `WASM.DUMP` / `WASM.RESTORE` payloads.
//!
//! A guest is persisted as its module bytes and load arguments; loading it again compiles the
//! bytes and runs its init, exactly like `WASM.LOAD`. Compiled code is never stored.

use std::sync::Arc;

use crate::commands::{self, LoadRequest, Origin, Prepared};
use crate::ffi::{Ctx, Io, LogLevel, ctx_flags, log_host};
use crate::guest::Guest;
use crate::registry;

/// The encoding version of the aux record: 1 holds the guests; 2 adds, after them, the names of
/// the guest data types registered in the server (so their values load even when no guest owns
/// the type any more).
pub const AUX_ENCVER: i32 = 2;
/// More guests than this in one record or payload, or more load arguments for one, means it is
/// corrupt (loads refuse more).
const MAX_GUESTS: u64 = registry::MAX_GUESTS as u64;
const MAX_LOAD_ARGS: u64 = registry::MAX_LOAD_ARGS as u64;

/// One persisted guest.
#[derive(Debug, PartialEq, Eq)]
pub struct SavedGuest {
    pub name: String,
    pub wasm: Vec<u8>,
    pub args: Vec<Vec<u8>>,
}

impl SavedGuest {
    fn of(guest: &Guest) -> SavedGuest {
        SavedGuest {
            name: guest.info.name.clone(),
            wasm: guest.wasm.to_vec(),
            args: guest.load_args.clone(),
        }
    }

    /// Whether `guest` is this saved guest already.
    fn matches(&self, guest: &Guest) -> bool {
        guest.info.name == self.name && *guest.wasm == *self.wasm && guest.load_args == self.args
    }
}

/// Whether the aux record has anything to hold.
pub fn has_data() -> bool {
    !registry::guests().is_empty() || !crate::ffi::type_names().is_empty()
}

/// Writes the aux record: the guests, sorted by name. Everything that could fail happens before
/// the first write (see `ffi::rdb`).
pub fn save_aux(io: &Io) {
    let guests = registry::guests();
    let types = crate::ffi::type_names();
    io.save_unsigned(guests.len() as u64);
    for guest in guests {
        io.save_bytes(guest.info.name.as_bytes());
        io.save_bytes(&guest.wasm);
        io.save_unsigned(guest.load_args.len() as u64);
        for arg in &guest.load_args {
            io.save_bytes(arg);
        }
    }
    save_type_names(io, &types);
}

fn save_type_names(io: &Io, types: &[String]) {
    io.save_unsigned(types.len() as u64);
    for name in types {
        io.save_bytes(name.as_bytes());
    }
}

/// The guest count of a record whose guests could not be saved: a server loading it keeps the
/// guests it has (a replica would otherwise unload all of its own, mirroring "no guests").
pub const GUESTS_NOT_SAVED: u64 = u64::MAX;

/// An aux record with the data types and without the guests (see [`GUESTS_NOT_SAVED`]).
pub fn save_types_only_aux(io: &Io) {
    let types = crate::ffi::type_names();
    io.save_unsigned(GUESTS_NOT_SAVED);
    save_type_names(io, &types);
}

/// The type names of an encoding-version-2 record.
fn read_type_names(io: &Io) -> Option<Vec<String>> {
    let count = io.load_unsigned()?;
    if count > 1 << 16 {
        return None;
    }
    (0..count)
        .map(|_| String::from_utf8(io.load_bytes()?).ok())
        .collect()
}

/// The saved guests; `Some(None)` for a record without them ([`GUESTS_NOT_SAVED`]).
fn read_aux(io: &Io) -> Option<Option<Vec<SavedGuest>>> {
    let count = io.load_unsigned()?;
    if count == GUESTS_NOT_SAVED {
        return Some(None);
    }
    if count > MAX_GUESTS {
        return None;
    }
    let mut guests = Vec::new();
    for _ in 0..count {
        let name = String::from_utf8(io.load_bytes()?).ok()?;
        let wasm = io.load_bytes()?;
        let argc = io.load_unsigned()?;
        if argc > MAX_LOAD_ARGS {
            return None;
        }
        let args = (0..argc)
            .map(|_| io.load_bytes())
            .collect::<Option<Vec<_>>>()?;
        guests.push(SavedGuest { name, wasm, args });
    }
    Some(Some(guests))
}

/// Reads the aux record and loads its guests. False makes the RDB load fail.
pub fn load_aux(io: &Io, encver: i32) -> bool {
    if !(1..=AUX_ENCVER).contains(&encver) {
        log_host(
            LogLevel::Warning,
            &format!(
                "the RDB's guest record has encoding version {encver}; this host reads 1 to {AUX_ENCVER}"
            ),
        );
        return false;
    }
    let saved = read_aux(io).and_then(|guests| {
        let types = if encver >= 2 {
            read_type_names(io)?
        } else {
            Vec::new()
        };
        Some((guests, types))
    });
    let Some((saved, types)) = saved else {
        log_host(
            LogLevel::Warning,
            "the RDB's guest record is corrupt or truncated",
        );
        return false;
    };
    let Some(ctx) = io.ctx() else { return false };
    // The types first: the keys that follow may hold values of types no guest owns now. All
    // or none (a refused one withdraws the others), as for a load.
    if let Err(why) = ctx.register_guest_types(types.iter().map(String::as_str)) {
        log_host(
            LogLevel::Warning,
            &format!("cannot register the data types saved in the RDB: {why}"),
        );
        return false;
    }
    // A replica (full sync, or its own RDB at startup) mirrors its master's guests; a master
    // keeps guests loaded from its module arguments that its RDB does not hold.
    let Some(saved) = saved else {
        log_host(
            LogLevel::Warning,
            "the RDB holds no guests: they could not be saved when it was made (see that \
             server's log); the guests loaded here stay as they are",
        );
        return true;
    };
    let mode = match ctx.flags() & crate::ffi::ctx_flags::SLAVE {
        0 => Mode::Replace,
        _ => Mode::Mirror,
    };
    match restore(ctx, saved, mode, Origin::Rdb) {
        Ok(_) => true,
        Err(why) => {
            log_host(
                LogLevel::Warning,
                &format!("cannot restore the guests saved in the RDB: {why}"),
            );
            false
        }
    }
}

/// How restored guests meet loaded ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fail if a guest of the same name is loaded.
    Append,
    /// Replace guests of the same name.
    Replace,
    /// Unload every guest first.
    Flush,
    /// Replace guests of the same name and unload those not saved: a replica's guests become
    /// exactly its master's.
    Mirror,
}

/// What a restore does: which saved guests it starts, and which loaded ones it removes.
pub struct RestorePlan {
    /// Indexes into the saved guests.
    start: Vec<usize>,
    removed: Vec<String>,
}

/// Checks saved guests against the loaded ones and plans their restore: every saved guest
/// starts, but those identical to one that stays loaded, which are left as they are.
pub fn plan_restore(saved: &[SavedGuest], mode: Mode) -> Result<RestorePlan, String> {
    // Names as a guest may declare them (a hand-made payload could hold anything), before any
    // is quoted in a message.
    for guest in saved {
        registry::ModuleInfo::check_name(&guest.name)
            .map_err(|why| format!("the payload names a guest wrongly: {why}"))?;
    }
    // By name (sets and maps: this runs on the main thread, with up to 100,000 guests on
    // either side).
    let current = registry::guests();
    let by_name: std::collections::HashMap<&str, &Arc<crate::guest::Guest>> =
        current.iter().map(|g| (g.info.name.as_str(), g)).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = saved.iter().find(|s| !seen.insert(s.name.as_str())) {
        return Err(format!("the payload holds guest '{}' twice", twice.name));
    }
    // Module bytes only: a path would be read where the restore is replayed (a replica, the
    // AOF at the next start), which may not have the file.
    if let Some(no_module) = saved.iter().find(|s| !s.wasm.starts_with(b"\0asm")) {
        return Err(format!(
            "guest '{}' is saved without its module's bytes",
            no_module.name
        ));
    }
    if mode == Mode::Append
        && let Some(clash) = saved.iter().find(|s| by_name.contains_key(s.name.as_str()))
    {
        return Err(format!(
            "guest '{}' is already loaded (use REPLACE or FLUSH)",
            clash.name
        ));
    }
    let removed: Vec<String> = current
        .iter()
        .filter(|g| match mode {
            Mode::Append | Mode::Replace => false,
            Mode::Flush => true,
            Mode::Mirror => !seen.contains(g.info.name.as_str()),
        })
        .map(|g| g.info.name.clone())
        .collect();
    let removed_names: std::collections::HashSet<&str> =
        removed.iter().map(String::as_str).collect();
    let stays = |s: &SavedGuest| {
        by_name
            .get(s.name.as_str())
            .is_some_and(|g| !removed_names.contains(s.name.as_str()) && s.matches(g))
    };
    let start = (0..saved.len()).filter(|&i| !stays(&saved[i])).collect();
    Ok(RestorePlan { start, removed })
}

/// A saved guest's load.
fn request(guest: &SavedGuest, mode: Mode, replayed: bool) -> LoadRequest {
    LoadRequest {
        module: guest.wasm.clone(),
        args: guest.args.clone(),
        replace: mode != Mode::Append,
        saved_as: Some(guest.name.clone()),
        replayed,
    }
}

/// Compiles the guests a plan starts: the slow part of a restore, safe on any thread.
pub fn compile_restore(
    saved: &[SavedGuest],
    plan: &RestorePlan,
    mode: Mode,
) -> Vec<(usize, Result<Prepared, String>)> {
    plan.start
        .iter()
        .map(|&i| (i, commands::prepare(request(&saved[i], mode, false))))
        .collect()
}

/// Loads saved guests, all or nothing: every guest is compiled and started first, and only
/// when all of them started are they published, with the removals `mode` asks for, in one
/// step. Guests identical to one that stays loaded are left as they are.
pub fn restore(
    ctx: Ctx,
    saved: Vec<SavedGuest>,
    mode: Mode,
    origin: Origin,
) -> Result<Vec<Arc<Guest>>, String> {
    let may_yield = origin == Origin::Command && crate::busy::may_yield_in(ctx.flags());
    restore_compiled(ctx, &saved, mode, origin, may_yield, Vec::new())
}

/// [`restore`], with some guests compiled beforehand ([`compile_restore`]; the plan is made
/// again, since guests may have been loaded or unloaded meanwhile, and any guest it starts that
/// was not compiled is compiled here).
pub fn restore_compiled(
    ctx: Ctx,
    saved: &[SavedGuest],
    mode: Mode,
    origin: Origin,
    may_yield: bool,
    mut compiled: Vec<(usize, Result<Prepared, String>)>,
) -> Result<Vec<Arc<Guest>>, String> {
    let plan = plan_restore(saved, mode)?;
    let replayed = origin == Origin::Rdb || ctx_flags::replayed(ctx.flags());
    let mut started = Vec::new();
    for index in plan.start {
        let name = &saved[index].name;
        // Which of the saved guests failed, unless the error says already.
        let named = |why: String| match why.contains(&format!("'{name}'")) {
            true => why,
            false => format!("guest '{name}': {why}"),
        };
        let prepared = match compiled.iter().position(|(i, _)| *i == index) {
            Some(at) => compiled.swap_remove(at).1,
            None => commands::prepare(request(&saved[index], mode, replayed)),
        };
        let guest = prepared.and_then(|p| commands::start(ctx, p, origin, may_yield));
        started.push(guest.map_err(named)?);
    }
    registry::commit_all(ctx, &plan.removed, &started, mode != Mode::Append)?;
    for guest in &started {
        commands::log_loaded(ctx, guest);
    }
    Ok(started)
}

const DUMP_MAGIC: &[u8] = b"RWASMDUMP\x01";

/// FNV-1a, to detect a damaged payload.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// `WASM.DUMP`'s payload: every guest's name, module and load arguments, with a checksum.
pub fn dump() -> Vec<u8> {
    let guests: Vec<SavedGuest> = registry::guests()
        .iter()
        .map(|g| SavedGuest::of(g))
        .collect();
    let mut out = DUMP_MAGIC.to_vec();
    out.extend_from_slice(&(guests.len() as u64).to_le_bytes());
    for guest in &guests {
        put(&mut out, guest.name.as_bytes());
        put(&mut out, &guest.wasm);
        out.extend_from_slice(&(guest.args.len() as u64).to_le_bytes());
        for arg in &guest.args {
            put(&mut out, arg);
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Reads a `WASM.DUMP` payload.
pub fn parse_dump(payload: &[u8]) -> Result<Vec<SavedGuest>, String> {
    let bad = || "the payload is not a WASM.DUMP payload, or it is damaged".to_owned();
    if payload.len() < DUMP_MAGIC.len() + 16 || !payload.starts_with(DUMP_MAGIC) {
        return Err(bad());
    }
    let (body, sum) = payload.split_at(payload.len() - 8);
    if checksum(body) != u64::from_le_bytes(sum.try_into().map_err(|_| bad())?) {
        return Err(bad());
    }
    let mut rest = &body[DUMP_MAGIC.len()..];
    let take_u64 = |rest: &mut &[u8]| -> Result<u64, String> {
        let (head, tail) = rest.split_at_checked(8).ok_or_else(bad)?;
        *rest = tail;
        Ok(u64::from_le_bytes(head.try_into().map_err(|_| bad())?))
    };
    let count = take_u64(&mut rest)?;
    if count > MAX_GUESTS {
        return Err(bad());
    }
    let mut guests = Vec::new();
    for _ in 0..count {
        let take_bytes = |rest: &mut &[u8]| -> Result<Vec<u8>, String> {
            let len = usize::try_from(take_u64(rest)?).map_err(|_| bad())?;
            let (head, tail) = rest.split_at_checked(len).ok_or_else(bad)?;
            *rest = tail;
            Ok(head.to_vec())
        };
        let name = String::from_utf8(take_bytes(&mut rest)?).map_err(|_| bad())?;
        let wasm = take_bytes(&mut rest)?;
        let argc = take_u64(&mut rest)?;
        if argc > MAX_LOAD_ARGS {
            return Err(bad());
        }
        let args = (0..argc)
            .map(|_| take_bytes(&mut rest))
            .collect::<Result<Vec<_>, _>>()?;
        guests.push(SavedGuest { name, wasm, args });
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_payloads_are_refused() {
        assert!(parse_dump(b"").is_err());
        assert!(parse_dump(b"RWASMDUMP\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").is_err());
        let mut empty = DUMP_MAGIC.to_vec();
        empty.extend_from_slice(&0u64.to_le_bytes());
        let sum = checksum(&empty);
        empty.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(parse_dump(&empty).unwrap(), vec![]);
        let last = empty.len() - 1;
        empty[last] ^= 1;
        assert!(parse_dump(&empty).is_err());
    }
}
