//! `redis:module/log`: `RedisModule_Log` and panic reports.

use super::bindings::redis::module::log::Host;
use super::bindings::redis::module::types::LogLevel;
use crate::ffi::{self, LogLevel as RedisLevel};
use crate::state::GuestState;

/// Longest log message a guest may write; longer ones are cut (and logged in several lines).
const MAX_LOG_LINE: usize = 16 * 1024;

impl Host for GuestState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            LogLevel::Debug => RedisLevel::Debug,
            LogLevel::Verbose => RedisLevel::Verbose,
            LogLevel::Notice => RedisLevel::Notice,
            LogLevel::Warning => RedisLevel::Warning,
        };
        let mut text = message;
        if text.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        ffi::log_guest_text(level, &self.label, text.as_bytes());
        Ok(())
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        self.panic_message = Some(message);
        Ok(())
    }
}
