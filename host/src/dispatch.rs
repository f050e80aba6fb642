//! How guest commands answer under their own names.
//!
//! Redis 7.2+ refuses `RedisModule_CreateCommand` outside `OnLoad`, and commands can never be
//! removed, so guests loaded at runtime cannot create real commands. Instead the host registers,
//! once, four *dispatcher* commands (one per access-flag combination, see `flags.rs`) and a
//! *command filter*. The filter runs before Redis looks a command up — for clients, inside
//! MULTI, for Lua `redis.call`, for `RM_Call` from any module, for guests — and rewrites
//!
//! ```text
//! HELLOWORLD.RAND a b   →   wasm.invoke-readonly HELLOWORLD.RAND a b
//! ```
//!
//! The dispatcher finds the guest, checks arity and flags, and runs it. Dispatchers are
//! `getkeys-api` commands, so ACL key patterns, `COMMAND GETKEYS` and cluster routing see the
//! guest command's real key positions. Limits of this design are documented in docs/commands.md.

use std::sync::OnceLock;

use crate::ffi::{Args, Ctx, FilterCtx, OwnedString, ctx_flags};
use crate::flags::Variant;
use crate::registry::{self, Route};

/// The dispatcher names as Redis strings, inserted by the filter (one reference per use).
static DISPATCHER_NAMES: OnceLock<[OwnedString; 4]> = OnceLock::new();
/// A client id no client has (Redis counts from 1), for `CLIENT UNBLOCK` (see `filter`).
static NO_CLIENT: OnceLock<OwnedString> = OnceLock::new();
/// A Redis command without keys that takes any arguments, for `COMMAND GETKEYS` of a guest
/// command without keys (see `filter`).
static KEYLESS: OnceLock<OwnedString> = OnceLock::new();

/// Creates the strings the filter inserts. Called from `OnLoad`.
pub fn init() {
    DISPATCHER_NAMES
        .get_or_init(|| Variant::ALL.map(|v| OwnedString::new(v.command_name().as_bytes())));
    NO_CLIENT.get_or_init(|| OwnedString::new(b"0"));
    KEYLESS.get_or_init(|| OwnedString::new(b"ping"));
}

/// The command filter. Runs for every command Redis executes: must stay cheap.
pub fn filter(fctx: &FilterCtx) {
    let Some(names) = DISPATCHER_NAMES.get() else {
        return;
    };
    let Some(name) = fctx.arg(0) else { return };
    if let Some(variant) = registry::variant_of(name) {
        fctx.insert_arg(0, &names[variant.index()]);
        return;
    }
    // Commands that take a command line as arguments ask about the dispatcher instead:
    // COMMAND GETKEYS / GETKEYSANDFLAGS <guest command> ..., ACL DRYRUN <user> <guest command> ...
    let line_at = if name.eq_ignore_ascii_case(b"command") {
        let is_getkeys = fctx.arg(1).is_some_and(|sub| {
            sub.eq_ignore_ascii_case(b"getkeys") || sub.eq_ignore_ascii_case(b"getkeysandflags")
        });
        is_getkeys.then_some(2)
    } else if name.eq_ignore_ascii_case(b"acl") {
        fctx.arg(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"dryrun"))
            .then_some(3)
    } else {
        if name.eq_ignore_ascii_case(b"client") {
            guard_client_unblock(fctx);
        }
        None
    };
    let Some(at) = line_at else { return };
    let Some(command) = fctx.arg(at) else { return };
    // COMMAND GETKEYS of a command without keys gets Redis's own answer for one ("The command
    // has no key arguments"), where the dispatcher, which has keys, would say the arguments
    // are invalid: whether the guest command is named directly or after its dispatcher (as
    // cluster clients send it).
    let is_getkeys = at == 2;
    if let Some(variant) = registry::variant_of(command) {
        match KEYLESS.get() {
            Some(keyless) if is_getkeys && has_no_keys(command) => fctx.replace_arg(at, keyless),
            _ => fctx.insert_arg(at, &names[variant.index()]),
        };
    } else if is_getkeys
        && Variant::is_dispatcher(command)
        && fctx.arg(at + 1).is_some_and(has_no_keys)
        && let Some(keyless) = KEYLESS.get()
    {
        fctx.replace_arg(at, keyless);
    }
}

/// Whether `command` is a guest command without key arguments.
fn has_no_keys(command: &[u8]) -> bool {
    registry::with_route(command, |route| route.spec.first_key == 0).unwrap_or(false)
}

/// `CLIENT UNBLOCK <id> [TIMEOUT | ERROR]` of a client the host has already unblocked, whose
/// answer Redis delivers at the end of the event-loop turn: Redis 7.0 would skip the timeout
/// (the handle is marked unblocked) and then forget the client, dropping its answer — the
/// client would get no reply at all, and its later replies would answer the wrong requests.
/// It is answered already, so the command asks about no client instead and answers 0, as for a
/// client that is not blocked.
fn guard_client_unblock(fctx: &FilterCtx) {
    let is_unblock = fctx
        .arg(1)
        .is_some_and(|sub| sub.eq_ignore_ascii_case(b"unblock"));
    // Digits only, without a sign or leading zeros: ids as Redis parses them (`string2ll`).
    let client_id = fctx
        .arg(2)
        .filter(|id| id.iter().all(u8::is_ascii_digit) && !id.starts_with(b"0"))
        .and_then(|id| std::str::from_utf8(id).ok()?.parse::<u64>().ok());
    if is_unblock
        && let Some(client_id) = client_id
        && crate::blocked::answer_pending(client_id)
        && let Some(no_client) = NO_CLIENT.get()
    {
        fctx.replace_arg(2, no_client);
    }
}

/// Redis's wrong-arity error, in the guest command's name.
pub fn wrong_arity_message(command: &str) -> String {
    format!("ERR wrong number of arguments for '{command}' command")
}

pub fn invoke_write_denyoom(ctx: Ctx, args: Args<'_>) {
    invoke(ctx, args, Variant::WriteDenyOom);
}

pub fn invoke_write(ctx: Ctx, args: Args<'_>) {
    invoke(ctx, args, Variant::Write);
}

pub fn invoke_readonly(ctx: Ctx, args: Args<'_>) {
    invoke(ctx, args, Variant::Readonly);
}

pub fn invoke_plain(ctx: Ctx, args: Args<'_>) {
    invoke(ctx, args, Variant::Plain);
}

/// A dispatcher call: `args[0]` is the dispatcher, `args[1]` the guest command.
fn invoke(ctx: Ctx, args: Args<'_>, variant: Variant) {
    let keys_request = ctx.is_keys_position_request();
    let Some(name) = args.get(1) else {
        if !keys_request {
            ctx.reply_error(&wrong_arity_message(variant.command_name()));
        }
        return;
    };
    // The host's own question about a key a guest did not declare (`ffi::key_check_in_progress`).
    if keys_request && let Some(access) = crate::ffi::key_check_in_progress() {
        ctx.key_at_pos_with_flags(2, access.key_spec_flags());
        return;
    }
    let routed = registry::with_route(name, |route| {
        run_routed(ctx, args, variant, keys_request, route)
    });
    if routed.is_none() && !keys_request {
        // The guest was unloaded after this command was queued (MULTI) or the dispatcher was
        // called directly with a name that is not a guest command.
        ctx.reply_error(&format!(
            "ERR unknown command '{}': no loaded guest provides it",
            crate::ffi::shown(name)
        ));
    }
}

/// A dispatcher call for the guest command `route` (`args[1]`).
fn run_routed(ctx: Ctx, args: Args<'_>, variant: Variant, keys_request: bool, route: &Route) {
    let guest_argc = args.len() - 1;
    if keys_request {
        // Positions are in the dispatcher's argv, one after the guest's. A command that cannot
        // write only reads its keys, so read-only ACL key patterns (`%R~`) let it run; one that
        // writes may also read them (the host cannot tell which), so it needs both.
        let read_only = !route.spec.flags.variant().may_write();
        for pos in route.spec.key_positions(guest_argc) {
            if let Ok(pos) = i32::try_from(pos + 1) {
                ctx.key_at_pos(pos, read_only);
            }
        }
        return;
    }
    if !variant.covers(route.spec.flags.variant()) {
        // Reachable by calling a dispatcher by hand, or by a command queued in MULTI before a
        // WASM.LOAD REPLACE changed its flags; refusing keeps a write command from running under
        // a read-only dispatcher's checks (the other way round, the stricter checks were made).
        ctx.reply_error(&format!(
            "ERR guest command '{}' runs through '{}', not '{}' (its flags changed since it was queued, or the dispatcher was called by hand)",
            route.spec.name,
            route.spec.flags.variant().command_name(),
            variant.command_name()
        ));
        return;
    }
    // Called by hand through a stricter dispatcher (or queued in MULTI before a REPLACE relaxed
    // its flags): Redis checked the user against that dispatcher, so check the command's own,
    // which ACL rules may deny (`-wasm.invoke-readonly`).
    let own = route.spec.flags.variant();
    if variant != own && !ctx_flags::replayed(ctx.flags()) {
        let line: Vec<Vec<u8>> = args.iter().skip(1).map(<[u8]>::to_vec).collect();
        let dispatcher = own.command_name();
        if !crate::scope::caller_may_run(ctx, dispatcher, dispatcher, &line) {
            ctx.reply_error(&format!(
                "NOPERM this user has no permissions to run the '{dispatcher}' command, which \
                 guest command '{}' runs through (it was called through '{}')",
                route.spec.name,
                variant.command_name()
            ));
            return;
        }
    }
    if !route.spec.arity_ok(guest_argc) {
        ctx.reply_error(&wrong_arity_message(&route.spec.name));
        return;
    }
    let flags = ctx.flags();
    if route.spec.flags.deny_oom && !variant.may_write() && flags & ctx_flags::OOM != 0 {
        ctx.reply_error("OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    // Guests call in script mode: what scripts may not run, guests may not either.
    if route.spec.flags.deny_script
        && (flags & ctx_flags::LUA != 0 || crate::api::called_by_a_guest())
    {
        ctx.reply_error("ERR This Redis command is not allowed from script");
        return;
    }
    route.guest.invoke(ctx, flags, route, args.skip(2));
}
