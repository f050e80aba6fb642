//! `redis:module/reply`: `RedisModule_ReplyWith*`, buffered and checked (see `reply.rs`).

use super::bindings::redis::module::reply::{Host, ReplyValue};
use crate::reply::{Aggregate, ReplyItem};
use crate::state::{GuestState, Phase};

type Done = wasmtime::Result<()>;

impl GuestState {
    fn reply_item(&mut self, item: ReplyItem) -> Done {
        match &self.phase {
            Phase::Command(_) => self.reply.push(item),
            _ => self
                .reply
                .fail("reply functions can only be called while a command runs"),
        }
        Ok(())
    }

    fn reply_length(&mut self, kind: Aggregate, len: u32) -> Done {
        match &self.phase {
            Phase::Command(_) => self.reply.set_length(kind, len),
            _ => self
                .reply
                .fail("reply functions can only be called while a command runs"),
        }
        Ok(())
    }
}

impl Host for GuestState {
    fn reply_with_values(&mut self, values: Vec<ReplyValue>) -> Done {
        if !matches!(self.phase, Phase::Command(_)) {
            self.reply
                .fail("reply functions can only be called while a command runs");
            return Ok(());
        }
        self.reply.push_values(values);
        Ok(())
    }

    fn reply_with_long_long(&mut self, value: i64) -> Done {
        self.reply_item(ReplyItem::Integer(value))
    }

    fn reply_with_simple_string(&mut self, value: String) -> Done {
        self.reply_item(ReplyItem::Simple(value))
    }

    fn reply_with_error(&mut self, message: String) -> Done {
        self.reply_item(ReplyItem::Error(message))
    }

    fn reply_with_string_buffer(&mut self, value: Vec<u8>) -> Done {
        self.reply_item(ReplyItem::Bulk(value))
    }

    fn reply_with_null(&mut self) -> Done {
        self.reply_item(ReplyItem::Null)
    }

    fn reply_with_array(&mut self, len: u32) -> Done {
        self.reply_item(ReplyItem::Aggregate(Aggregate::Array, len))
    }

    fn wrong_arity(&mut self) -> Done {
        let message = match &self.phase {
            Phase::Command(scope) => crate::dispatch::wrong_arity_message(&scope.command.name),
            _ => String::new(),
        };
        self.reply_item(ReplyItem::Error(message))
    }

    fn fail(&mut self, message: String) -> Done {
        match &self.phase {
            Phase::Command(_) => self.reply.replace_with_error(message),
            _ => self
                .reply
                .fail("reply functions can only be called while a command runs"),
        }
        Ok(())
    }

    fn reply_with_double(&mut self, value: f64) -> Done {
        self.reply_item(ReplyItem::Double(value))
    }

    fn reply_with_bool(&mut self, value: bool) -> Done {
        self.reply_item(ReplyItem::Bool(value))
    }

    fn reply_with_big_number(&mut self, value: String) -> Done {
        self.reply_item(ReplyItem::BigNumber(value))
    }

    fn reply_with_verbatim_string(&mut self, format: String, text: Vec<u8>) -> Done {
        self.reply_item(ReplyItem::Verbatim(format, text))
    }

    fn reply_with_map(&mut self, len: u32) -> Done {
        self.reply_item(ReplyItem::Aggregate(Aggregate::Map, len))
    }

    fn reply_with_set(&mut self, len: u32) -> Done {
        self.reply_item(ReplyItem::Aggregate(Aggregate::Set, len))
    }

    fn reply_with_null_array(&mut self) -> Done {
        self.reply_item(ReplyItem::NullArray)
    }

    fn reply_with_empty_array(&mut self) -> Done {
        self.reply_item(ReplyItem::Aggregate(Aggregate::Array, 0))
    }

    fn reply_with_postponed_array(&mut self) -> Done {
        self.reply_item(ReplyItem::Postponed(Aggregate::Array))
    }

    fn reply_set_array_length(&mut self, len: u32) -> Done {
        self.reply_length(Aggregate::Array, len)
    }

    fn reply_with_postponed_map(&mut self) -> Done {
        self.reply_item(ReplyItem::Postponed(Aggregate::Map))
    }

    fn reply_set_map_length(&mut self, len: u32) -> Done {
        self.reply_length(Aggregate::Map, len)
    }

    fn reply_with_postponed_set(&mut self) -> Done {
        self.reply_item(ReplyItem::Postponed(Aggregate::Set))
    }

    fn reply_set_set_length(&mut self, len: u32) -> Done {
        self.reply_length(Aggregate::Set, len)
    }

    fn reply_with_call_reply(&mut self, reply: u32) -> Done {
        let found = match &self.phase {
            Phase::Command(scope) => scope
                .replies
                .get(&reply)
                .map(|r| (r.reply.clone(), r.resp3)),
            _ => None,
        };
        match found {
            // An attribute's protocol is only its pairs: the client would take them as the
            // attribute of the command's next reply, one reply out of step.
            Some((reply, _)) if reply.kind() == crate::ffi::ReplyKind::Attribute => {
                self.reply.fail(
                    "reply-with-call-reply cannot forward an attribute on its own: reply the \
                     reply it belongs to",
                );
                Ok(())
            }
            Some((reply, resp3)) => self.reply_item(ReplyItem::CallReply { reply, resp3 }),
            None => {
                self.reply
                    .fail("reply-with-call-reply was given a call reply that was already released");
                Ok(())
            }
        }
    }
}
