//! Arbitrary bytes through the whole load path: format checks, compilation, import and version
//! checks, instantiation and the guest's init. Nothing may panic or crash.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    redis_wasm::fuzzing::load(data);
});
