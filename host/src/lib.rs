//! # redis-wasm: WebAssembly guests as Redis commands
//!
//! A Redis module (`MODULE LOAD libredis_wasm.so`) that embeds wasmtime. Guests are WebAssembly
//! components targeting the `redis:module` WIT world (`wit/`); `WASM.LOAD` compiles one, runs its
//! init, and its commands answer under their own names, sandboxed.
//!
//! ## What lives where
//! - `ffi/` — the boundary with Redis: every `extern "C"` entry point (panic-safe) and every
//!   raw Module API call, behind small safe wrappers (keys, calls, blocked clients, data types,
//!   RDB I/O, configs and INFO, signal handlers). The only module with raw pointers.
//! - `commands.rs` — the `WASM.*` commands (load, unload, list, dump, restore, set a data type
//!   value, kill, debug hooks, help).
//! - `blocked.rs` — blocked clients and background jobs of guest commands.
//! - `dispatch.rs` — the command filter and dispatcher commands that route guest command names.
//! - `registry.rs` — loaded guests and their command names.
//! - `loader.rs` — checking and compiling module bytes; import and WIT-version checks.
//! - `guest.rs` — a loaded guest: compiled program, long-lived instance, running a command.
//! - `engine.rs` — the wasmtime engine, linker and epoch ticker.
//! - `busy.rs` — runaway guests: yielding while busy, `WASM.KILL`, time limits.
//! - `limits.rs` — memory limits per guest and across guests.
//! - `config.rs` — the `wasm.*` configs.
//! - `persist.rs` — guests in the RDB (aux record) and `WASM.DUMP`/`WASM.RESTORE` payloads.
//! - `info.rs` — the `INFO wasm` section.
//! - `inject.rs` — fault injection for tests (`WASM.DEBUG`, off unless `wasm.enable-debug`).
//! - `state.rs` — per-store state host functions see.
//! - `api/` — the host side of each WIT interface (one file per interface).
//! - `reply.rs` — replies buffered and checked before they reach the client.
//! - `scope.rs` — what one running command owns: keys, call replies, replication effects.
//! - `scan.rs` — a key's scan (`scan-key`): Redis's cursor and the entries not yet handed out.
//! - `flags.rs` — guest command flags and which dispatcher carries them.
//! - `wasi.rs` — the small part of WASI granted to guests (printing goes to the Redis log; files
//!   and sockets without any capability).

mod api;
mod blocked;
mod busy;
mod commands;
mod config;
mod dispatch;
mod engine;
mod ffi;
mod flags;
mod guest;
mod info;
mod inject;
mod limits;
mod loader;
mod persist;
mod registry;
mod reply;
mod scan;
mod scope;
mod state;
mod wasi;

use ffi::{Args, Ctx, LogLevel};

/// Redis's allocator, so the host's memory shows in `INFO memory` and counts toward `maxmemory`.
#[cfg(not(any(test, fuzzing)))]
#[global_allocator]
static ALLOCATOR: redis_module::alloc::RedisAlloc = redis_module::alloc::RedisAlloc;

/// Entry points for the fuzz targets in `fuzz/`: the load path without a Redis server.
#[doc(hidden)]
pub mod fuzzing {
    /// Checks, compiles, instantiates and initializes arbitrary bytes as a guest. Must never
    /// panic or crash, whatever the bytes.
    pub fn load(bytes: &[u8]) {
        static START: std::sync::Once = std::sync::Once::new();
        START.call_once(|| {
            crate::config::set_defaults();
            // Inputs that loop (a start function, say) stop at the busy threshold, as a load
            // that cannot yield does: at 50 ms, not Redis's default 5 s.
            crate::busy::BUSY_THRESHOLD_MS.store(50, std::sync::atomic::Ordering::Relaxed);
            crate::engine::start().expect("engine");
        });
        if let Ok(program) = crate::loader::compile(bytes, false) {
            let _ = crate::guest::Guest::start(
                program,
                None,
                crate::guest::InitTiming::CannotYield(crate::guest::ENDING_A_LOAD),
                bytes.into(),
                crate::guest::Source::Bytes,
                Vec::new(),
            );
        }
    }
}

/// The module version Redis reports (`MODULE LIST`): major * 10000 + minor * 100 + patch.
pub const MODULE_VERSION: i32 = 100;

/// Everything `OnLoad` does after the host commands and filter are registered. Returns false
/// (and logs why) to make the module load fail.
fn on_load(ctx: Ctx, args: Args<'_>) -> bool {
    if !config::register(ctx) {
        return false;
    }
    busy::mark_main_thread();
    busy::refresh_threshold(ctx);
    if !ctx.on_config_change(on_config_change) || !ctx.on_info(info::write) {
        ctx.log(
            LogLevel::Warning,
            "cannot subscribe to config changes or register the INFO section",
        );
        return false;
    }
    if let Err(e) = engine::start() {
        ctx.log(LogLevel::Warning, &format!("{e:#}"));
        return false;
    }
    dispatch::init();
    ctx.init_redis_lock();
    let aux = ffi::AuxHandlers {
        has_data: persist::has_data,
        save: persist::save_aux,
        save_types_only: persist::save_types_only_aux,
        guests_not_saved: persist::GUESTS_NOT_SAVED,
        load: persist::load_aux,
    };
    if !ctx.register_guest_aux(persist::AUX_ENCVER, aux) {
        ctx.log(
            LogLevel::Warning,
            "cannot register the data type that persists guests",
        );
        return false;
    }
    registry::hold_lock_across_forks();
    warn_if_no_preamble(ctx);
    let (types, requests) = match parse_module_args(args) {
        Ok(parsed) => parsed,
        Err(why) => {
            ctx.log(LogLevel::Warning, &format!("bad module arguments: {why}"));
            return false;
        }
    };
    // Reserved now, while Redis accepts new types on every version (7.2+ refuses them later).
    for name in types {
        if let Err(why) = ctx.register_guest_type(&name) {
            ctx.log(LogLevel::Warning, &why);
            return false;
        }
    }
    for request in requests {
        if let Err(why) = commands::load(ctx, request, commands::Origin::ModuleArgs) {
            ctx.log(LogLevel::Warning, &why);
            return false;
        }
    }
    true
}

/// After any `CONFIG SET`: keep wasmtime's signal handlers in front (Redis re-installs its own
/// on `crash-log-enabled`) and follow `busy-reply-threshold`. The threshold is read back with a
/// `CONFIG GET` call, which shows in `SLOWLOG` and `INFO commandstats`: only when it changed.
fn on_config_change(ctx: Ctx, names: &[&str]) {
    ffi::signals::after_config_change();
    config::CHANGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let changed = |config: &str| names.iter().any(|name| name.eq_ignore_ascii_case(config));
    if changed("busy-reply-threshold") || changed("lua-time-limit") {
        busy::refresh_threshold(ctx);
    }
    if changed("aof-use-rdb-preamble") {
        warn_if_no_preamble(ctx);
    }
}

/// At startup and when the setting changes: without the RDB preamble, AOF rewrites drop the
/// guests.
fn warn_if_no_preamble(ctx: Ctx) {
    if ctx.config_get("aof-use-rdb-preamble").as_deref() == Some("no") {
        ctx.log(
            LogLevel::Warning,
            "aof-use-rdb-preamble is no: guests are not kept across AOF rewrites (see docs/persistence.md)",
        );
    }
}

/// Module arguments: `TYPE <name>`, repeated, then `LOAD <path> [ARGS arg ...]`, repeated. A
/// guest's arguments run until the next `LOAD`. Returns the type names and the loads.
fn parse_module_args(args: Args<'_>) -> Result<(Vec<String>, Vec<commands::LoadRequest>), String> {
    let mut types = Vec::new();
    let mut requests = Vec::new();
    let mut words = args.iter().peekable();
    while let Some(word) = words.next() {
        if word.eq_ignore_ascii_case(b"type") && requests.is_empty() {
            let name = words.next().ok_or("TYPE needs a data type name")?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| "a data type name must be UTF-8".to_owned())?;
            ffi::check_type_name(&name)?;
            types.push(name);
            continue;
        }
        if !word.eq_ignore_ascii_case(b"load") {
            return Err(format!(
                "expected TYPE or LOAD, got '{}'",
                String::from_utf8_lossy(word)
            ));
        }
        let mut tokens: Vec<&[u8]> = Vec::new();
        while let Some(next) = words.next_if(|w| !w.eq_ignore_ascii_case(b"load")) {
            tokens.push(next);
        }
        // (After ARGS, TYPE is the guest's argument.)
        if tokens
            .iter()
            .take_while(|t| !t.eq_ignore_ascii_case(b"args"))
            .any(|t| t.eq_ignore_ascii_case(b"type"))
        {
            return Err("TYPE must come before the first LOAD".to_owned());
        }
        requests.push(commands::LoadRequest::parse(tokens.into_iter())?);
    }
    Ok((types, requests))
}
