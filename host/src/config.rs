//! The host's configs (`CONFIG GET/SET wasm.*`), documented in docs/configuration.md.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::ffi::{Ctx, NumericConfig, StringConfig};

const MB: i64 = 1 << 20;

const DEFAULT_MAX_MEMORY: i64 = 128 * MB;
const DEFAULT_MAX_TOTAL_MEMORY: i64 = 1024 * MB;
const DEFAULT_MAX_INIT_MS: i64 = 10_000;
const DEFAULT_MAX_MODULE_SIZE: i64 = 64 * MB;
const DEFAULT_MAX_REPLY_BYTES: i64 = 256 * MB;
const DEFAULT_MAX_BACKGROUND_JOBS: i64 = 16;
const DEFAULT_MAX_COMPILES: i64 = 2;

/// Bumped by every `CONFIG SET` (of any config: a limit of the host's or Redis's may have
/// changed), so that what waited on the configuration can try again.
pub static CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Largest linear memory one guest instance may have, in bytes.
pub static MAX_MEMORY: AtomicI64 = AtomicI64::new(DEFAULT_MAX_MEMORY);
/// Largest total linear memory of all guests, in bytes.
pub static MAX_TOTAL_MEMORY: AtomicI64 = AtomicI64::new(DEFAULT_MAX_TOTAL_MEMORY);
/// Hard limit on one guest command, in milliseconds (0: none; the busy mechanism still applies).
pub static MAX_CALL_MS: AtomicI64 = AtomicI64::new(0);
/// Limit on a guest's init, in milliseconds (loads from the master or the AOF are not limited).
pub static MAX_INIT_MS: AtomicI64 = AtomicI64::new(DEFAULT_MAX_INIT_MS);
/// Largest module accepted by `WASM.LOAD`, in bytes.
pub static MAX_MODULE_SIZE: AtomicI64 = AtomicI64::new(DEFAULT_MAX_MODULE_SIZE);
/// Largest reply a guest command may build, in bytes.
pub static MAX_REPLY_BYTES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_REPLY_BYTES);
/// Most background jobs (`run-in-background`) running at once, across guests.
pub static MAX_BACKGROUND_JOBS: AtomicI64 = AtomicI64::new(DEFAULT_MAX_BACKGROUND_JOBS);
/// Most `WASM.LOAD`s compiling at once in the background; more wait their turn.
pub static MAX_COMPILES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_COMPILES);
/// Whether `WASM.DEBUG` (fault injection for tests) is allowed: 1 or 0.
pub static ENABLE_DEBUG: AtomicI64 = AtomicI64::new(0);
/// Whether each guest command's time is measured (`WASM.LIST`, `INFO wasm_commandstats`): 1 or
/// 0. Off by default: the two clock reads cost about 0.07 µs per call (the integer reply
/// benchmark: 0.42 -> 0.50 µs).
pub static TIME_COMMANDS: AtomicI64 = AtomicI64::new(0);
/// Whether wasmtime writes the guests' compiled functions to `/tmp/perf-<pid>.map`, so that
/// `perf` names them in a profile of the server: 1 or 0. Read once, when the host loads.
pub static PERF_MAP: AtomicI64 = AtomicI64::new(0);
/// Directory that `WASM.LOAD <path>` may read from ("" allows any path).
pub static LOAD_DIR: Mutex<String> = Mutex::new(String::new());

const NUMERIC: &[NumericConfig] = &[
    NumericConfig {
        name: c"max-memory",
        default: DEFAULT_MAX_MEMORY,
        min: MB,
        max: 4096 * MB,
        memory: true,
        immutable: false,
        value: &MAX_MEMORY,
    },
    NumericConfig {
        name: c"max-total-memory",
        default: DEFAULT_MAX_TOTAL_MEMORY,
        min: MB,
        max: i64::MAX / 2,
        memory: true,
        immutable: false,
        value: &MAX_TOTAL_MEMORY,
    },
    NumericConfig {
        name: c"max-call-ms",
        default: 0,
        min: 0,
        max: i64::MAX / 2,
        memory: false,
        immutable: false,
        value: &MAX_CALL_MS,
    },
    NumericConfig {
        name: c"max-init-ms",
        default: DEFAULT_MAX_INIT_MS,
        min: 1,
        max: i64::MAX / 2,
        memory: false,
        immutable: false,
        value: &MAX_INIT_MS,
    },
    NumericConfig {
        name: c"max-module-size",
        default: DEFAULT_MAX_MODULE_SIZE,
        min: 1024,
        max: 1024 * MB,
        memory: true,
        immutable: false,
        value: &MAX_MODULE_SIZE,
    },
    NumericConfig {
        name: c"max-reply-bytes",
        default: DEFAULT_MAX_REPLY_BYTES,
        min: 1024,
        max: 4096 * MB,
        memory: true,
        immutable: false,
        value: &MAX_REPLY_BYTES,
    },
    NumericConfig {
        name: c"max-background-jobs",
        default: DEFAULT_MAX_BACKGROUND_JOBS,
        min: 0,
        max: 1024,
        memory: false,
        immutable: false,
        value: &MAX_BACKGROUND_JOBS,
    },
    NumericConfig {
        name: c"max-compiles",
        default: DEFAULT_MAX_COMPILES,
        min: 1,
        max: 64,
        memory: false,
        immutable: false,
        value: &MAX_COMPILES,
    },
    NumericConfig {
        name: c"time-commands",
        default: 0,
        min: 0,
        max: 1,
        memory: false,
        immutable: false,
        value: &TIME_COMMANDS,
    },
    NumericConfig {
        name: c"enable-debug",
        default: 0,
        min: 0,
        max: 1,
        memory: false,
        // Set at startup only, as Redis's own `enable-debug-command`.
        immutable: true,
        value: &ENABLE_DEBUG,
    },
    NumericConfig {
        name: c"perf-map",
        default: 0,
        min: 0,
        max: 1,
        memory: false,
        // The engine is made once, when the host loads.
        immutable: true,
        value: &PERF_MAP,
    },
];

static STRINGS: [StringConfig; 1] = [StringConfig {
    name: c"load-dir",
    default: c"",
    value: &LOAD_DIR,
    check: check_load_dir,
    previous: &LOAD_DIR_BEFORE,
}];

static LOAD_DIR_BEFORE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// `wasm.load-dir`: empty (any path), or an absolute path to a directory that exists.
fn check_load_dir(dir: &str) -> Result<(), String> {
    if dir.is_empty() {
        return Ok(());
    }
    if !std::path::Path::new(dir).is_absolute() {
        return Err(format!(
            "wasm.load-dir must be an absolute path, not '{dir}'"
        ));
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("wasm.load-dir '{dir}' is not a directory")),
        Err(e) => Err(format!(
            "wasm.load-dir '{dir}': {}",
            crate::ffi::io_error_text(&e)
        )),
    }
}

/// Sets every config to its default (done by `register` in Redis; used alone by the fuzz targets).
pub fn set_defaults() {
    for config in NUMERIC {
        config.value.store(config.default, Ordering::Relaxed);
    }
}

pub fn register(ctx: Ctx) -> bool {
    ctx.register_configs(NUMERIC, &STRINGS)
}

/// A numeric config as `usize`.
pub fn get_usize(config: &AtomicI64) -> usize {
    usize::try_from(config.load(Ordering::Relaxed)).unwrap_or(0)
}

/// A millisecond config as a duration, `None` for 0.
pub fn get_ms(config: &AtomicI64) -> Option<std::time::Duration> {
    let ms = config.load(Ordering::Relaxed);
    (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
}
