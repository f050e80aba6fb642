//! `redis:module/reply`: `RedisModule_ReplyWith*`, buffered and checked (see `reply.rs`).

use super::bindings::redis::module::reply::Host;
use crate::reply::ReplyItem;
use crate::state::{GuestState, Phase};

impl GuestState {
    fn reply_item(&mut self, item: ReplyItem) {
        match &self.phase {
            Phase::Command(_) => self.reply.push(item),
            _ => self
                .reply
                .fail("reply functions can only be called while a command runs"),
        }
    }
}

impl Host for GuestState {
    fn reply_with_long_long(&mut self, value: i64) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Integer(value));
        Ok(())
    }

    fn reply_with_simple_string(&mut self, value: String) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Simple(value));
        Ok(())
    }

    fn reply_with_error(&mut self, message: String) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Error(message));
        Ok(())
    }

    fn reply_with_string_buffer(&mut self, value: Vec<u8>) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Bulk(value));
        Ok(())
    }

    fn reply_with_null(&mut self) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Null);
        Ok(())
    }

    fn reply_with_array(&mut self, len: u32) -> wasmtime::Result<()> {
        self.reply_item(ReplyItem::Array(len));
        Ok(())
    }

    fn wrong_arity(&mut self) -> wasmtime::Result<()> {
        let message = match &self.phase {
            Phase::Command(scope) => crate::dispatch::wrong_arity_message(&scope.command.name),
            _ => String::new(),
        };
        self.reply_item(ReplyItem::Error(message));
        Ok(())
    }
}
