//! The host side of the `redis:module` WIT world: one file per interface.
//!
//! [`bindings`] is the only `bindgen!` expansion; the rest of the host uses the linker built by
//! [`linker`] and the trait impls below (one function, `call`, is defined over bindgen's with
//! `func_wrap` to read its arguments without allocating). Host functions return
//! `wasmtime::Result`: an `Err` is a
//! host fault and traps the guest; guest mistakes come back as WIT `result` errors or turn the
//! reply into an error (see `reply.rs`).

mod blocking;
mod call;
mod context;
mod keys;
mod log;
mod registration;
mod replication;
mod reply;
mod strings;

pub use call::{CallArgs, called_by_a_guest};

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::state::GuestState;

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "module",
        imports: { default: trappable },
    });
}

pub use bindings::redis::module::registration::CommandSpec as WitCommandSpec;

/// The WIT package every guest must be built against, and its version.
pub const WIT_PACKAGE: &str = "redis:module";
pub const WIT_VERSION: (u64, u64, u64) = (0, 3, 5);

/// Where a batch (`list-range`, `zset-range-next-batch`, `scan-key`, `call-reply-elements`)
/// stops adding elements: enough that the crossing is a small part of its cost, bounded so one
/// host call stays short.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Room a batch's vectors start with, so that filling them does not grow them step by step
/// (growing was ~5% of a 100-entry scan): `entries` of up to `max` wanted, `bytes_each`
/// bytes of payload per entry (short values need no growing at all). Bounded, since `max` is
/// the guest's and the entries may not be there.
fn batch_room(max: u32, available: u64, bytes_each: usize) -> (usize, usize) {
    let entries = u64::from(max).min(available).min(4096) as usize;
    (entries, entries * bytes_each)
}

/// A linker with every interface of the world defined.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    bindings::Module::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |state| state)?;
    call::define_call(&mut linker)?;
    keys::define_byte_readers(&mut linker)?;
    crate::wasi::add_to_linker(&mut linker)?;
    Ok(linker)
}

impl bindings::redis::module::types::Host for GuestState {}
