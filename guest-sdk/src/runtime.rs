//! Glue between the WIT exports and the guest author's functions.
//!
//! [`redis_module!`](crate::redis_module) implements the `guest` export by calling [`init`] and
//! [`invoke`] here. The command table lives in a thread-local: a guest instance is single-threaded
//! and the host never enters it twice at once.
#![allow(missing_docs)] // macro support, hidden from the docs

use std::cell::RefCell;

use crate::context::Context;
use crate::init::{CommandFn, InitContext, InitFn};
use crate::string::RedisString;
use crate::value::{ERRORMSG_WRONGTYPE, RedisError};
use crate::wit::redis::module::{log, registration};

/// A module as [`redis_module!`](crate::redis_module) declares it.
pub struct ModuleDef {
    pub name: &'static str,
    pub version: i32,
    pub init: Option<InitFn>,
    pub commands: Vec<CommandDef>,
}

/// One row of the `commands` list.
pub struct CommandDef {
    pub name: &'static str,
    pub handler: CommandFn,
    pub flags: &'static str,
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub arity: i32,
}

struct Handler {
    name: String,
    function: CommandFn,
}

thread_local! {
    static HANDLERS: RefCell<Vec<Handler>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn add_handler(index: u32, name: &str, function: CommandFn) {
    HANDLERS.with_borrow_mut(|handlers| {
        let index = index as usize;
        if handlers.len() <= index {
            handlers.resize_with(index + 1, || Handler {
                name: String::new(),
                function: |_, _| Err(RedisError::Str("ERR command slot not registered")),
            });
        }
        handlers[index] = Handler {
            name: name.to_ascii_lowercase(),
            function,
        };
    });
}

/// Sends panic messages to the host so the client's error reply can carry them.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-string panic payload)");
        let text = match info.location() {
            Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
            None => message.to_owned(),
        };
        log::report_panic(&text);
    }));
}

/// The `guest.init` export.
pub fn init(def: ModuleDef, args: Vec<Vec<u8>>) -> Result<(), String> {
    install_panic_hook();
    registration::init_module(def.name, def.version, crate::API_VERSION)?;
    let ctx = InitContext::new();
    for command in &def.commands {
        ctx.create_command_with_arity(
            command.name,
            command.handler,
            command.flags,
            command.first_key,
            command.last_key,
            command.key_step,
            command.arity,
        )
        .map_err(|e| e.to_string())?;
    }
    if let Some(init) = def.init {
        let args: Vec<RedisString> = args.into_iter().map(RedisString::from).collect();
        init(&ctx, &args).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The `guest.invoke` export.
pub fn invoke(command: u32, args: Vec<Vec<u8>>) -> Result<(), String> {
    let function = HANDLERS
        .with_borrow(|handlers| handlers.get(command as usize).map(|h| h.function))
        .ok_or_else(|| format!("ERR no command with index {command} in this guest"))?;
    let args: Vec<RedisString> = args.into_iter().map(RedisString::from).collect();
    let ctx = Context::new();
    match function(&ctx, args) {
        Ok(value) => {
            value.emit();
            Ok(())
        }
        Err(RedisError::WrongArity) => {
            let name = HANDLERS.with_borrow(|handlers| handlers[command as usize].name.clone());
            Err(format!(
                "ERR wrong number of arguments for '{name}' command"
            ))
        }
        Err(RedisError::WrongType) => Err(ERRORMSG_WRONGTYPE.to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
