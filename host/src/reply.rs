//! The reply a guest is building, checked before any byte reaches the client.
//!
//! Guest reply calls append to a [`ReplyBuffer`]; the structure (array lengths, one top-level
//! reply) is tracked as items arrive. Only a complete, well-formed reply is sent, with
//! [`ReplyBuffer::send`]; anything else becomes an error reply naming the mistake, so a buggy
//! guest can never leave a client's connection with a partial or corrupt RESP stream.

use crate::ffi::Ctx;

/// Deepest nesting of arrays a guest may reply with.
pub const MAX_REPLY_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub enum ReplyItem {
    Integer(i64),
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
    Null,
    Array(u32),
    /// A map of `len` key/value pairs (an array of `2 * len` elements in RESP2).
    Map(u32),
}

/// A reply under construction.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    items: Vec<ReplyItem>,
    /// Elements still expected by each open aggregate, innermost last.
    open: Vec<u64>,
    /// Whether a complete top-level reply has been produced.
    complete: bool,
    /// The first mistake; once set, the reply is an error.
    error: Option<String>,
}

impl ReplyBuffer {
    pub fn clear(&mut self) {
        self.items.clear();
        self.open.clear();
        self.complete = false;
        self.error = None;
    }

    /// The first mistake made so far, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Marks the reply as wrong; the first mistake is the one reported.
    pub fn fail(&mut self, why: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(why.into());
        }
    }

    pub fn push(&mut self, item: ReplyItem) {
        if self.error.is_some() {
            return;
        }
        if self.complete {
            self.fail("the command replied more than once");
            return;
        }
        if let ReplyItem::Simple(text) = &item {
            if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                self.fail("a simple string reply cannot contain CR, LF or NUL");
                return;
            }
        }
        let opens = match item {
            ReplyItem::Array(len) => Some(u64::from(len)),
            ReplyItem::Map(len) => Some(2 * u64::from(len)),
            _ => None,
        };
        self.items.push(item);
        match opens {
            Some(len) if len > 0 => {
                if self.open.len() >= MAX_REPLY_DEPTH {
                    self.fail(format!(
                        "the reply nests arrays deeper than {MAX_REPLY_DEPTH} levels"
                    ));
                    return;
                }
                self.open.push(len);
            }
            _ => self.element_done(),
        }
    }

    /// One element (scalar or finished array) was completed: close every array it fills.
    fn element_done(&mut self) {
        loop {
            match self.open.last_mut() {
                None => {
                    self.complete = true;
                    return;
                }
                Some(remaining) => {
                    *remaining -= 1;
                    if *remaining > 0 {
                        return;
                    }
                    self.open.pop();
                }
            }
        }
    }

    /// Checks that exactly one complete reply was produced.
    pub fn finish(&self) -> Result<(), String> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if !self.open.is_empty() {
            let missing: u64 = self.open.iter().sum();
            return Err(format!(
                "the reply is incomplete: an array still expects {missing} more element(s)"
            ));
        }
        if !self.complete {
            return Err("the command did not reply".to_owned());
        }
        Ok(())
    }

    /// Sends the buffered reply. Call only after [`finish`](Self::finish) succeeded.
    pub fn send(&self, ctx: Ctx) {
        for item in &self.items {
            match item {
                ReplyItem::Integer(v) => ctx.reply_long_long(*v),
                ReplyItem::Simple(s) => ctx.reply_simple_string(s.as_bytes()),
                ReplyItem::Error(e) => ctx.reply_error(&normalize_error(e)),
                ReplyItem::Bulk(b) => ctx.reply_string_buffer(b),
                ReplyItem::Null => ctx.reply_null(),
                ReplyItem::Array(n) => ctx.reply_array(i64::from(*n)),
                ReplyItem::Map(n) => ctx.reply_map(i64::from(*n)),
            }
        }
    }
}

/// Gives an error message its code: the leading uppercase word, or `ERR` when there is none.
pub fn normalize_error(message: &str) -> String {
    let message = message.strip_prefix('-').unwrap_or(message);
    let code = message.split(' ').next().unwrap_or("");
    let has_code = code.len() >= 2
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if has_code {
        message.to_owned()
    } else {
        format!("ERR {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scalar_is_complete() {
        let mut r = ReplyBuffer::default();
        assert_eq!(r.finish().unwrap_err(), "the command did not reply");
        r.push(ReplyItem::Integer(1));
        assert!(r.finish().is_ok());
        r.push(ReplyItem::Null);
        assert!(r.finish().unwrap_err().contains("more than once"));
    }

    #[test]
    fn arrays_count_their_elements() {
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Array(2));
        r.push(ReplyItem::Array(1));
        r.push(ReplyItem::Integer(1));
        assert!(r.finish().unwrap_err().contains("1 more"));
        r.push(ReplyItem::Array(0));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn simple_strings_cannot_break_the_protocol() {
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Simple("OK\r\n+INJECTED".into()));
        assert!(r.finish().unwrap_err().contains("CR, LF"));
    }

    #[test]
    fn depth_is_limited() {
        let mut r = ReplyBuffer::default();
        for _ in 0..=MAX_REPLY_DEPTH {
            r.push(ReplyItem::Array(1));
        }
        assert!(r.finish().unwrap_err().contains("deeper"));
    }

    #[test]
    fn errors_get_a_code() {
        assert_eq!(normalize_error("oops"), "ERR oops");
        assert_eq!(normalize_error("WRONGTYPE bad"), "WRONGTYPE bad");
        assert_eq!(normalize_error("-NOPERM x"), "NOPERM x");
        assert_eq!(normalize_error("Error here"), "ERR Error here");
    }
}
