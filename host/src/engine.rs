//! The one wasmtime engine of the server, its linker, and the epoch ticker.
//!
//! Epoch interruption gives every running guest a periodic callback (see `guest.rs`) at a cost
//! of ≈0% on tight loops; a background thread advances the epoch every [`EPOCH_TICK`].

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, OptLevel};

use crate::state::GuestState;

/// How often running guests get control back to the host.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Creates the engine and linker and starts the epoch ticker. Idempotent.
pub fn start() -> anyhow::Result<()> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    crate::ffi::signals::before_engine();
    let engine =
        Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    // wasmtime installs its trap handlers lazily, with the first store: make one now so they are
    // in place (and remembered) before any guest runs.
    drop(wasmtime::Store::new(&engine, ()));
    crate::ffi::signals::after_engine();
    let linker =
        crate::api::linker(&engine).map_err(|e| anyhow::anyhow!("cannot build the linker: {e}"))?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match ticker.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
    let _ = RUNTIME.set(Runtime { engine, linker });
    Ok(())
}

pub fn engine() -> &'static Engine {
    &RUNTIME.get().expect("engine::start runs in OnLoad").engine
}

pub fn linker() -> &'static Linker<GuestState> {
    &RUNTIME.get().expect("engine::start runs in OnLoad").linker
}
