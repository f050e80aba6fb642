//! Test guest written against the bare WIT bindings, to break the init rules on purpose.
//! Its first load argument picks the mistake: `api-version-2`, `no-init-module`, `init-error`,
//! `init-panic`, `create-before-init`, `reply-in-init`, `type-clash` (declares `hellotype`), `native-clash` (declares
//! `aleftover` and the native twin's `nativetyp`), `host-type` (declares the host's `wasmguest`),
//! `bad-type` (a type name of the wrong length), `init-error-forged` and `log-forged` (an init
//! error and a log message with a newline and a would-be log line after it), or `fine`. `RAW.CMD` replies `OK` through the
//! reply interface; `RAW.CMD returned` returns the integer 7 from `invoke` instead, and
//! `RAW.CMD both` does both (a second reply). `RAW.CMD transport <arg>...` replies which export
//! the host called (`words` for `word-arguments.invoke`, `packed` for
//! `packed-arguments.invoke`, `lists` for `guest.invoke`) and each argument's length.
//!
//! With `relay <name>` it loads as guest `<name>` (so several copies can be loaded) with one
//! command, `<name>.relay <frames> [<command> <arg>...]`: it recurses `frames` deep (about 2,000
//! fit in wasm's stack allowance), then calls `<command>` (another copy's relay, to chain guests
//! calling guests) and replies 1, or the call's error.

use std::cell::RefCell;
use std::hint::black_box;

use redis_wasm_sdk::wit::exports::redis::module::guest::Guest;
use redis_wasm_sdk::wit::redis::module::call::{CallFlags, CallValue, call};
use redis_wasm_sdk::wit::redis::module::types::LogLevel;
use redis_wasm_sdk::wit::redis::module::{log, registration, reply};

/// A line in the Redis log's format, which `init-error-forged` and `log-forged` try to write
/// after a newline of their own.
const FORGED: &str = "1:M 01 Jan 2026 00:00:00.000 * forged by a guest";

thread_local! {
    /// Set by a `relay` load: `invoke` relays.
    static RELAY: RefCell<bool> = const { RefCell::new(false) };
}

/// Recurses `frames` deep, then runs `at_bottom`.
fn recurse<T>(frames: u32, at_bottom: &mut dyn FnMut() -> T) -> T {
    let mut frame = black_box([frames as u8; 16]);
    if frames == 0 {
        return at_bottom();
    }
    let result = recurse(frames - 1, at_bottom);
    frame[0] = black_box(frame[15]);
    black_box(frame);
    result
}

fn relay(args: &[Vec<u8>]) {
    let frames = args
        .first()
        .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
        .unwrap_or(0);
    let next = args.get(1).map(|c| String::from_utf8_lossy(c).into_owned());
    let failure = recurse(frames, &mut || {
        let command = next.as_deref()?;
        let rest: Vec<&[u8]> = args[2..].iter().map(Vec::as_slice).collect();
        match call(command, &rest, CallFlags::empty()) {
            Ok(CallValue::Error(e)) => Some(String::from_utf8_lossy(&e).into_owned()),
            Ok(_) => None,
            Err(e) => Some(format!("{e:?}")),
        }
    });
    match failure {
        Some(error) => reply::reply_with_error(&error),
        None => reply::reply_with_long_long(1),
    }
}

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
            "relay" => {
                let name = args.get(1).map(|n| String::from_utf8_lossy(n).into_owned());
                let name = name.unwrap_or_else(|| "relay".to_owned());
                registration::init_module(&name, 1, 1)?;
                RELAY.with_borrow_mut(|relay| *relay = true);
                let command = format!("{name}.relay");
                registration::create_command(registration::CommandSpec {
                    name: &command,
                    arity: -2,
                    ..spec
                })
                .map(|_| ())
            }
            "api-version-2" => registration::init_module("raw", 1, 2),
            "no-init-module" => Ok(()),
            "init-error" => Err("ERR the guest refuses to start".into()),
            "init-error-forged" => Err(format!("ERR refused\n{FORGED}")),
            "log-forged" => {
                log::log(LogLevel::Warning, &format!("hello\n{FORGED}"));
                registration::init_module("raw", 1, 1)?;
                registration::create_command(spec).map(|_| ())
            }
            "init-panic" => panic!("init blew up"),
            "create-before-init" => registration::create_command(spec).map(|_| ()),
            "type-clash" => {
                registration::init_module("raw", 1, 1)?;
                registration::create_data_type("hellotype", 0).map(|_| ())
            }
            "native-clash" => {
                registration::init_module("raw", 1, 1)?;
                registration::create_data_type("aleftover", 0)?;
                registration::create_data_type("nativetyp", 0).map(|_| ())
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
        run(args, "lists")
    }
}

impl redis_wasm_sdk::wit::exports::redis::module::packed_arguments::Guest for Raw {
    fn invoke(_command: u32, packed: Option<Vec<u8>>) -> Option<i64> {
        run(unpack(&packed.unwrap_or_default()), "packed")
    }
}

/// The fourteen words `word-arguments.invoke` takes.
#[rustfmt::skip]
type Words = (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);

impl redis_wasm_sdk::wit::exports::redis::module::word_arguments::Guest for Raw {
    fn invoke(
        _command: u32,
        length: u32,
        (a, b, c, d, e, f, g, h, i, j, k, l, m, n): Words,
    ) -> Option<i64> {
        let bytes: Vec<u8> = [a, b, c, d, e, f, g, h, i, j, k, l, m, n]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect();
        assert!(
            bytes[length as usize..].iter().all(|&byte| byte == 0),
            "zeros after the packed arguments"
        );
        run(unpack(&bytes[..length as usize]), "words")
    }
}

/// The arguments in `packed`: each one's length (a little-endian u32), then its bytes.
fn unpack(packed: &[u8]) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut rest = packed;
    while let Some((length, after)) = rest.split_first_chunk::<4>() {
        let (arg, after) = after.split_at(u32::from_le_bytes(*length) as usize);
        args.push(arg.to_vec());
        rest = after;
    }
    assert!(rest.is_empty(), "a partial length");
    args
}

/// Runs `RAW.CMD` (or a relay) with `args`, passed through `transport`.
fn run(args: Vec<Vec<u8>>, transport: &str) -> Option<i64> {
    if RELAY.with_borrow(|relay| *relay) {
        relay(&args);
        return None;
    }
    match args.first().map(Vec::as_slice) {
        Some(b"returned") => Some(7),
        Some(b"both") => {
            reply::reply_with_simple_string("OK");
            Some(7)
        }
        Some(b"transport") => {
            // How the arguments came, then each one's length: what the host sent.
            reply::reply_with_array(args.len() as u32);
            reply::reply_with_simple_string(transport);
            for arg in &args[1..] {
                reply::reply_with_long_long(arg.len() as i64);
            }
            None
        }
        _ => {
            reply::reply_with_simple_string("OK");
            None
        }
    }
}

redis_wasm_sdk::wit::export_guest!(Raw with_types_in redis_wasm_sdk::wit);
