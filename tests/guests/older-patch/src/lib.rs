//! Test guest built for redis:module@0.3.0, an older patch of the host's 0.3 world: it must load
//! and run. `OLDPATCH.LEN key` replies the key's length through the 0.3.0 `keys` interface.

wit_bindgen::generate!({ world: "module", path: "wit" });

use redis::module::keys::{self, OpenMode};
use redis::module::registration::{self, CommandSpec};

struct OlderPatch;

impl exports::redis::module::guest::Guest for OlderPatch {
    fn init(_args: Vec<Vec<u8>>) -> Result<(), String> {
        registration::init_module("oldpatch", 1, 1)?;
        registration::create_command(&CommandSpec {
            name: "oldpatch.len".into(),
            flags: "readonly".into(),
            first_key: 1,
            last_key: 1,
            key_step: 1,
            arity: 2,
        })?;
        Ok(())
    }

    fn invoke(_command: u32, args: Vec<Vec<u8>>) -> Option<i64> {
        let length = keys::open_key(&args[0], OpenMode::READ)
            .and_then(keys::value_length)
            .unwrap_or(0);
        Some(length as i64)
    }
}

export!(OlderPatch);
