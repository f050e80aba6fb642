//! `redis:module/strings`: Redis's own number parsing and formatting.

use super::bindings::redis::module::strings::Host;
use crate::ffi;
use crate::state::GuestState;

impl Host for GuestState {
    fn string_to_long_long(&mut self, value: Vec<u8>) -> wasmtime::Result<Result<i64, String>> {
        Ok(ffi::string_to_long_long(&value)
            .ok_or_else(|| "ERR value is not an integer or out of range".to_owned()))
    }

    fn string_to_double(&mut self, value: Vec<u8>) -> wasmtime::Result<Result<f64, String>> {
        Ok(
            ffi::string_to_double(&value)
                .ok_or_else(|| "ERR value is not a valid float".to_owned()),
        )
    }

    fn double_to_string(&mut self, value: f64) -> wasmtime::Result<Vec<u8>> {
        Ok(ffi::double_to_string(value))
    }
}
