//! Test guest written against the bare WIT bindings, to break the init rules on purpose.
//! Its first load argument picks the mistake: `api-version-2`, `no-init-module`, `init-error`,
//! `init-panic`, `create-before-init`, `reply-in-init`, `type-clash` (declares `hellotype`), `host-type` (declares the host's `wasmguest`),
//! `bad-type` (a type name of the wrong length), or `fine`. `RAW.CMD` replies `OK` through the
//! reply interface; `RAW.CMD returned` returns the integer 7 from `invoke` instead, and
//! `RAW.CMD both` does both (a second reply).

use redis_wasm_sdk::wit::exports::redis::module::guest::Guest;
use redis_wasm_sdk::wit::redis::module::{registration, reply};

struct Raw;

impl Guest for Raw {
    fn init(args: Vec<Vec<u8>>) -> Result<(), String> {
        let mode = args
            .first()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        let spec = registration::CommandSpec {
            name: "raw.cmd",
            flags: "readonly",
            first_key: 0,
            last_key: 0,
            key_step: 0,
            arity: 0,
        };
        match mode.as_str() {
            "api-version-2" => registration::init_module("raw", 1, 2),
            "no-init-module" => Ok(()),
            "init-error" => Err("ERR the guest refuses to start".into()),
            "init-panic" => panic!("init blew up"),
            "create-before-init" => registration::create_command(spec).map(|_| ()),
            "type-clash" => {
                registration::init_module("raw", 1, 1)?;
                registration::create_data_type("hellotype", 0).map(|_| ())
            }
            "host-type" => {
                registration::init_module("raw", 1, 1)?;
                registration::create_data_type("wasmguest", 0).map(|_| ())
            }
            "bad-type" => {
                registration::init_module("raw", 1, 1)?;
                registration::create_data_type("short", 0).map(|_| ())
            }
            "reply-in-init" => {
                registration::init_module("raw", 1, 1)?;
                reply::reply_with_long_long(1);
                Ok(())
            }
            _ => {
                registration::init_module("raw", 1, 1)?;
                registration::create_command(spec).map(|_| ())
            }
        }
    }

    fn invoke(_command: u32, args: Vec<Vec<u8>>) -> Option<i64> {
        match args.first().map(Vec::as_slice) {
            Some(b"returned") => Some(7),
            Some(b"both") => {
                reply::reply_with_simple_string("OK");
                Some(7)
            }
            _ => {
                reply::reply_with_simple_string("OK");
                None
            }
        }
    }
}

redis_wasm_sdk::wit::export_guest!(Raw with_types_in redis_wasm_sdk::wit);
