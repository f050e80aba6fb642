//! The reply a guest is building, checked before any byte reaches the client.
//!
//! Guest reply calls append to a [`ReplyBuffer`]; the structure (aggregate lengths, postponed
//! lengths, one top-level reply) is tracked as items arrive. Only a complete, well-formed reply
//! is sent, with [`ReplyBuffer::send`]; anything else becomes an error reply naming the mistake,
//! so a buggy guest can never leave a client's connection with a partial or corrupt RESP stream.
//! RESP2 fallbacks (maps as flat arrays, doubles as bulk strings, ...) are Redis's own: sending
//! goes through the `RedisModule_ReplyWith*` functions.

use crate::api::bindings::redis::module::reply::ReplyValue;
use crate::ffi::{CallReply, Ctx, ReplyKind, ReplyRef, ctx_flags};

/// Deepest nesting of aggregates a guest may reply with.
pub const MAX_REPLY_DEPTH: usize = 128;

/// What one reply element costs in host memory besides its payload, counted against
/// `wasm.max-reply-bytes`: the limit bounds the memory a reply holds, not only its bytes.
const ELEMENT_BYTES: usize = {
    let (item, value) = (size_of::<ReplyItem>(), size_of::<ReplyValue>());
    if item > value { item } else { value }
};

/// Items whose room a buffer keeps for the next reply; a larger one is given back when cleared,
/// so that one big reply does not hold its memory (counted in Redis's `used_memory`, where it
/// could make Redis evict keys) for the life of the instance.
const KEPT_ITEMS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Array,
    Map,
    Set,
}

impl Aggregate {
    fn name(self) -> &'static str {
        match self {
            Aggregate::Array => "array",
            Aggregate::Map => "map",
            Aggregate::Set => "set",
        }
    }

    /// The name with its article.
    fn a_name(self) -> &'static str {
        match self {
            Aggregate::Array => "an array",
            Aggregate::Map => "a map",
            Aggregate::Set => "a set",
        }
    }

    /// Replies one unit of length stands for (a map pair is two).
    fn width(self) -> u64 {
        if self == Aggregate::Map { 2 } else { 1 }
    }
}

#[derive(Clone, Debug)]
pub enum ReplyItem {
    Integer(i64),
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
    Null,
    NullArray,
    Double(f64),
    Bool(bool),
    BigNumber(String),
    Verbatim(String, Vec<u8>),
    /// An aggregate of `len` elements (pairs for a map) that follow.
    Aggregate(Aggregate, u32),
    /// An aggregate whose length is set later; patched to `Aggregate` when it is.
    Postponed(Aggregate),
    /// A reply from `call`, sent as it is. `resp3` says which protocol the call used.
    CallReply {
        reply: CallReply,
        resp3: bool,
    },
    /// The replies of one `reply-with-values`, kept as the guest sent them (checked one by one
    /// as they came, like the other items; not converted, so a long aggregate costs one pass).
    Values(Vec<ReplyValue>),
}

/// What the checks need to know of one reply.
struct Shape {
    /// Bytes counted against `wasm.max-reply-bytes`.
    payload: usize,
    /// The aggregate it opens, and how many replies that expects (`None`: postponed).
    opens: Option<(Aggregate, Option<u64>)>,
    /// How deep aggregates nest inside it, for an item that opens none (a forwarded call
    /// reply): they count toward [`MAX_REPLY_DEPTH`] where it is placed.
    nests: usize,
}

impl Shape {
    fn scalar(payload: usize) -> Result<Shape, String> {
        Ok(Shape {
            payload,
            opens: None,
            nests: 0,
        })
    }

    fn aggregate(kind: Aggregate, len: u32) -> Result<Shape, String> {
        Ok(Shape {
            payload: 0,
            opens: (len > 0).then(|| (kind, Some(u64::from(len) * kind.width()))),
            // An empty one opens nothing, but is a level all the same.
            nests: usize::from(len == 0),
        })
    }

    fn simple(text: &str) -> Result<Shape, String> {
        if text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("a simple string reply cannot contain CR, LF or NUL".to_owned());
        }
        Shape::scalar(text.len())
    }

    fn big_number(text: &str) -> Result<Shape, String> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "'{}' is not a big number (digits with an optional '-')",
                text.escape_debug()
            ));
        }
        Shape::scalar(text.len())
    }

    fn verbatim(format: &str, text: &[u8]) -> Result<Shape, String> {
        if format.len() != 3
            || format
                .bytes()
                .any(|b| matches!(b, b'\r' | b'\n' | b':' | 0))
        {
            return Err(format!(
                "a verbatim string format must be exactly three bytes, none of them ':', CR, LF \
                 or NUL, not '{}'",
                format.escape_debug()
            ));
        }
        Shape::scalar(text.len())
    }

    /// The shape of an item other than `Values`.
    fn of_item(item: &ReplyItem) -> Result<Shape, String> {
        match item {
            ReplyItem::Integer(_)
            | ReplyItem::Null
            | ReplyItem::NullArray
            | ReplyItem::Double(_)
            | ReplyItem::Bool(_) => Shape::scalar(0),
            ReplyItem::Simple(text) => Shape::simple(text),
            ReplyItem::Error(text) => Shape::scalar(text.len()),
            ReplyItem::BigNumber(text) => Shape::big_number(text),
            ReplyItem::Bulk(bytes) => Shape::scalar(bytes.len()),
            ReplyItem::Verbatim(format, text) => Shape::verbatim(format, text),
            ReplyItem::Aggregate(kind, len) => Shape::aggregate(*kind, *len),
            ReplyItem::Postponed(kind) => Ok(Shape {
                payload: 0,
                opens: Some((*kind, None)),
                nests: 0,
            }),
            // Its nesting counts like the guest's own aggregates: through a chain of guests
            // each forwarding the last one's reply inside its own, a client (or a Lua script,
            // whose reply parser kills the server past its stack) would get any depth.
            ReplyItem::CallReply { reply, .. } => Ok(Shape {
                payload: reply.proto_len(),
                opens: None,
                nests: reply.nesting(MAX_REPLY_DEPTH),
            }),
            ReplyItem::Values(_) => unreachable!("push hands values to push_values"),
        }
    }

    #[inline(always)]
    fn of_value(value: &ReplyValue) -> Result<Shape, String> {
        match value {
            ReplyValue::Integer(_)
            | ReplyValue::Null
            | ReplyValue::NullArray
            | ReplyValue::Double(_)
            | ReplyValue::Boolean(_) => Shape::scalar(0),
            ReplyValue::SimpleString(text) => Shape::simple(text),
            ReplyValue::Error(text) => Shape::scalar(text.len()),
            ReplyValue::BigNumber(text) => Shape::big_number(text),
            ReplyValue::StringBuffer(bytes) => Shape::scalar(bytes.len()),
            ReplyValue::VerbatimString((format, text)) => Shape::verbatim(format, text),
            ReplyValue::Array(len) => Shape::aggregate(Aggregate::Array, *len),
            ReplyValue::Map(len) => Shape::aggregate(Aggregate::Map, *len),
            ReplyValue::Set(len) => Shape::aggregate(Aggregate::Set, *len),
        }
    }
}

/// An open aggregate.
#[derive(Debug)]
struct Frame {
    kind: Aggregate,
    /// Elements expected; `None` while the length is postponed.
    expected: Option<u64>,
    received: u64,
    /// Index of the item to patch when a postponed length is set.
    item: usize,
}

/// A reply under construction.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    items: Vec<ReplyItem>,
    open: Vec<Frame>,
    /// Whether a complete top-level reply has been produced.
    complete: bool,
    /// The first mistake; once set, the reply is an error.
    error: Option<String>,
    /// Bytes so far, payload and `ELEMENT_BYTES` per element (checked against
    /// `wasm.max-reply-bytes`).
    bytes: usize,
    /// Not checked against `wasm.max-reply-bytes`: the command replays the master's or the
    /// AOF's work (its reply goes nowhere, and an error would tell the master of a failure).
    pub unlimited: bool,
}

impl ReplyBuffer {
    pub fn clear(&mut self) {
        if self.items.capacity() > KEPT_ITEMS {
            self.items = Vec::new();
        } else {
            self.items.clear();
        }
        self.open.clear();
        self.complete = false;
        self.error = None;
        self.bytes = 0;
    }

    /// Whether nothing was replied (and no mistake made).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.error.is_none()
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

    /// The guest's `reply.fail`: whatever was replied so far (mistakes included) is dropped and
    /// the reply becomes this one error.
    pub fn replace_with_error(&mut self, message: String) {
        self.clear();
        self.bytes = message.len();
        self.items.push(ReplyItem::Error(message));
        self.complete = true;
    }

    /// The message, when the whole reply is one error.
    pub fn top_level_error(&self) -> Option<std::borrow::Cow<'_, str>> {
        if self.error.is_some() {
            return None;
        }
        match self.items.as_slice() {
            [ReplyItem::Error(message)] => Some(message.into()),
            [ReplyItem::Values(values)] => match values.as_slice() {
                [ReplyValue::Error(message)] => Some(message.into()),
                _ => None,
            },
            // A call's error reply forwarded as it is.
            [ReplyItem::CallReply { reply, .. }] if reply.kind() == ReplyKind::Error => {
                reply.string_bytes().map(String::from_utf8_lossy)
            }
            _ => None,
        }
    }

    fn byte_limit(&self) -> usize {
        match self.unlimited {
            true => usize::MAX,
            false => crate::config::get_usize(&crate::config::MAX_REPLY_BYTES),
        }
    }

    pub fn push(&mut self, item: ReplyItem) {
        if let ReplyItem::Values(values) = item {
            return self.push_values(values);
        }
        let limit = self.byte_limit();
        if self.admit(Shape::of_item(&item), limit) {
            self.items.push(item);
        }
    }

    /// `reply-with-values`: the replies in order, as `push` on each would add them, kept as
    /// one item.
    pub fn push_values(&mut self, values: Vec<ReplyValue>) {
        let limit = self.byte_limit();
        for value in &values {
            if !self.admit(Shape::of_value(value), limit) {
                return;
            }
        }
        if !values.is_empty() {
            self.items.push(ReplyItem::Values(values));
        }
    }

    /// Checks one more reply against what came before (it is to be the next item) and records
    /// its place in the structure. False, with the mistake recorded, if it cannot be added.
    /// Inlined: it runs once per element of a `reply-with-values` batch.
    #[inline(always)]
    fn admit(&mut self, shape: Result<Shape, String>, limit: usize) -> bool {
        if self.error.is_some() {
            return false;
        }
        if self.complete {
            self.fail("the command replied more than once");
            return false;
        }
        let shape = match shape {
            Ok(shape) => shape,
            Err(why) => {
                self.fail(why);
                return false;
            }
        };
        self.bytes += shape.payload + ELEMENT_BYTES;
        if self.bytes > limit {
            self.fail(format!(
                "the reply is larger than wasm.max-reply-bytes ({limit} bytes)"
            ));
            return false;
        }
        match shape.opens {
            Some((kind, expected)) => {
                if self.open.len() >= MAX_REPLY_DEPTH {
                    self.fail(format!(
                        "the reply nests aggregates deeper than {MAX_REPLY_DEPTH} levels"
                    ));
                    return false;
                }
                // Only a postponed aggregate, always an item of its own, is patched by index.
                self.open.push(Frame {
                    kind,
                    expected,
                    received: 0,
                    item: self.items.len(),
                });
            }
            None if self.open.len() + shape.nests > MAX_REPLY_DEPTH => {
                self.fail(format!(
                    "the reply nests aggregates deeper than {MAX_REPLY_DEPTH} levels ({} more \
                     inside {} open)",
                    shape.nests,
                    self.open.len()
                ));
                return false;
            }
            None => self.element_done(),
        }
        true
    }

    /// `RedisModule_ReplySet*Length`: closes the innermost open aggregate, which must be a
    /// postponed one of this kind that received exactly `len` elements.
    pub fn set_length(&mut self, kind: Aggregate, len: u32) {
        if self.error.is_some() {
            return;
        }
        let Some(frame) = self.open.last() else {
            self.fail(format!(
                "reply-set-{}-length called with no postponed reply open",
                kind.name()
            ));
            return;
        };
        if frame.expected.is_some() {
            self.fail(format!(
                "reply-set-{}-length called while {} of fixed length is still open",
                kind.name(),
                frame.kind.a_name()
            ));
            return;
        }
        if frame.kind != kind {
            self.fail(format!(
                "reply-set-{}-length called, but the innermost postponed reply is {}",
                kind.name(),
                frame.kind.a_name()
            ));
            return;
        }
        let expected = u64::from(len) * kind.width();
        if frame.received != expected {
            self.fail(format!(
                "a postponed {} was given length {len} but has {} element(s)",
                kind.name(),
                frame.received / kind.width()
            ));
            return;
        }
        let frame = self.open.pop().expect("checked above");
        self.items[frame.item] = ReplyItem::Aggregate(kind, len);
        self.element_done();
    }

    /// One element (scalar or finished aggregate) was completed: close every aggregate it fills.
    fn element_done(&mut self) {
        loop {
            let Some(frame) = self.open.last_mut() else {
                self.complete = true;
                return;
            };
            frame.received += 1;
            if frame.expected != Some(frame.received) {
                return;
            }
            self.open.pop();
        }
    }

    /// Checks that exactly one complete reply was produced.
    pub fn finish(&self) -> Result<(), String> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if let Some(frame) = self.open.last() {
            return Err(match frame.expected {
                Some(expected) => format!(
                    "the reply is incomplete: {} still expects {} more element(s)",
                    frame.kind.a_name(),
                    expected - frame.received
                ),
                None => format!(
                    "the reply is incomplete: {} with a postponed length was never given it",
                    frame.kind.a_name()
                ),
            });
        }
        if !self.complete {
            return Err("the command did not reply".to_owned());
        }
        Ok(())
    }

    /// Sends the buffered reply. Call only after [`finish`](Self::finish) succeeded.
    pub fn send(&self, ctx: Ctx) {
        for item in &self.items {
            send_item(ctx, item);
        }
    }

    /// The same reply with every call reply turned into plain items, so it can be sent after
    /// the context the calls were made with is gone (call replies point to it). As items, a
    /// call reply takes more host memory than its RESP bytes (counted when it was added):
    /// that, too, must stay within `wasm.max-reply-bytes`, or the error says so.
    pub fn detach(mut self) -> Result<ReplyBuffer, String> {
        let forwarded: usize = self
            .items
            .iter()
            .map(|item| match item {
                ReplyItem::CallReply { reply, .. } => reply.proto_len() + ELEMENT_BYTES,
                _ => 0,
            })
            .sum();
        if forwarded == 0 {
            return Ok(self);
        }
        let limit = self.byte_limit();
        let mut budget = limit.saturating_sub(self.bytes.saturating_sub(forwarded));
        // Measured first, so that the items are made only when they fit, in a vector of the
        // exact size (growing one would hold up to three times as much).
        let mut count = self.items.len();
        for item in &self.items {
            if let ReplyItem::CallReply { reply, .. } = item {
                let Some((items, bytes)) = flattened_size(reply, 0, budget) else {
                    return Err(format!(
                        "the reply is larger than wasm.max-reply-bytes ({limit} bytes) as it \
                         is kept for a blocked client (its call replies copied)"
                    ));
                };
                budget -= bytes;
                count += items - 1;
            }
        }
        let mut items = Vec::with_capacity(count);
        for item in self.items.drain(..) {
            match item {
                ReplyItem::CallReply { reply, .. } => {
                    flatten(&reply, 0, &mut |item| items.push(item));
                }
                other => items.push(other),
            }
        }
        self.items = items;
        Ok(self)
    }
}

fn send_item(ctx: Ctx, item: &ReplyItem) {
    match item {
        ReplyItem::Integer(v) => ctx.reply_long_long(*v),
        ReplyItem::Simple(s) => ctx.reply_simple_string(s.as_bytes()),
        ReplyItem::Error(e) => ctx.reply_error(e),
        ReplyItem::Bulk(b) => ctx.reply_string_buffer(b),
        ReplyItem::Null => ctx.reply_null(),
        ReplyItem::NullArray => ctx.reply_null_array(),
        ReplyItem::Double(d) => ctx.reply_double(*d),
        ReplyItem::Bool(b) => ctx.reply_bool(*b),
        ReplyItem::BigNumber(n) => ctx.reply_big_number(n.as_bytes()),
        ReplyItem::Verbatim(format, text) => ctx.reply_verbatim(format.as_bytes(), text),
        ReplyItem::Aggregate(kind, n) => send_aggregate(ctx, *kind, i64::from(*n)),
        ReplyItem::Postponed(_) => {
            unreachable!("finish() refuses unclosed postponed replies")
        }
        ReplyItem::CallReply { reply, resp3 } => send_call_reply(ctx, reply, *resp3),
        ReplyItem::Values(values) => values.iter().for_each(|value| send_value(ctx, value)),
    }
}

fn send_value(ctx: Ctx, value: &ReplyValue) {
    match value {
        ReplyValue::Integer(v) => ctx.reply_long_long(*v),
        ReplyValue::SimpleString(s) => ctx.reply_simple_string(s.as_bytes()),
        ReplyValue::Error(e) => ctx.reply_error(e),
        ReplyValue::StringBuffer(b) => ctx.reply_string_buffer(b),
        ReplyValue::Null => ctx.reply_null(),
        ReplyValue::NullArray => ctx.reply_null_array(),
        ReplyValue::Double(d) => ctx.reply_double(*d),
        ReplyValue::Boolean(b) => ctx.reply_bool(*b),
        ReplyValue::BigNumber(n) => ctx.reply_big_number(n.as_bytes()),
        ReplyValue::VerbatimString((format, text)) => ctx.reply_verbatim(format.as_bytes(), text),
        ReplyValue::Array(n) => send_aggregate(ctx, Aggregate::Array, i64::from(*n)),
        ReplyValue::Map(n) => send_aggregate(ctx, Aggregate::Map, i64::from(*n)),
        ReplyValue::Set(n) => send_aggregate(ctx, Aggregate::Set, i64::from(*n)),
    }
}

fn send_aggregate(ctx: Ctx, kind: Aggregate, len: i64) {
    match kind {
        Aggregate::Array => ctx.reply_array(len),
        Aggregate::Map => ctx.reply_map(len),
        Aggregate::Set => ctx.reply_set(len),
    }
}

/// Forwards a call reply. Redis forwards the raw protocol, which it refuses for a RESP3 reply to
/// a RESP2 client; then the reply is rebuilt element by element with Redis's RESP2 fallbacks.
fn send_call_reply(ctx: Ctx, reply: &CallReply, resp3: bool) {
    let client_resp3 = ctx.flags() & ctx_flags::RESP3 != 0;
    if (!resp3 || client_resp3) && ctx.reply_call_reply(reply) {
        return;
    }
    // A RESP3 reply to a RESP2 client: rebuilt with the reply functions, which downgrade it,
    // item by item as it is walked (nothing held).
    flatten(reply, 0, &mut |item| send_item(ctx, &item));
}

/// The host memory a reply item holds besides itself: a heap buffer of at least 8 bytes.
fn heap_bytes(len: usize) -> usize {
    if len == 0 { 0 } else { len.max(8) }
}

/// What [`flatten`] makes of a call reply: how many items, and the host memory they hold
/// (each [`ELEMENT_BYTES`] and its payload), measured up to `budget` bytes (None past it, or
/// past the nesting an admitted reply can have).
fn flattened_size(reply: &ReplyRef, depth: usize, budget: usize) -> Option<(usize, usize)> {
    if depth > MAX_REPLY_DEPTH {
        return None;
    }
    let kind = reply.kind();
    let (payload, elements) = match kind {
        ReplyKind::String | ReplyKind::Error => {
            (heap_bytes(reply.string_bytes().map_or(0, <[u8]>::len)), 0)
        }
        ReplyKind::BigNumber | ReplyKind::Verbatim => (heap_bytes(reply.proto_len()), 0),
        ReplyKind::Array | ReplyKind::Set => (0, reply.length()),
        ReplyKind::Map => (0, reply.length().saturating_mul(2)),
        _ => (0, 0),
    };
    let (mut items, mut bytes) = (1, ELEMENT_BYTES + payload);
    for index in 0..elements {
        if bytes > budget {
            return None;
        }
        let (more, used) = reply
            .read_element(kind, index, |element| {
                flattened_size(element, depth + 1, budget - bytes)
            })
            .unwrap_or(Some((1, ELEMENT_BYTES)))?;
        items += more;
        bytes += used;
    }
    (bytes <= budget).then_some((items, bytes))
}

/// A call reply as reply items (no reference to the call reply left), handed to `out` in order.
/// Called on admitted replies, which nest at most [`MAX_REPLY_DEPTH`] levels (deeper, the rest
/// is an error element, never silently something else).
fn flatten(reply: &ReplyRef, depth: usize, out: &mut dyn FnMut(ReplyItem)) {
    if depth > MAX_REPLY_DEPTH {
        out(ReplyItem::Error(format!(
            "ERR the reply nests deeper than {MAX_REPLY_DEPTH} levels"
        )));
        return;
    }
    let count = |len: u64| u32::try_from(len).unwrap_or(u32::MAX);
    let text = |reply: &ReplyRef| {
        String::from_utf8_lossy(reply.string_bytes().unwrap_or_default()).into_owned()
    };
    let kind = reply.kind();
    let (item, elements) = match kind {
        ReplyKind::String if reply.string_is_status() => (ReplyItem::Simple(text(reply)), 0),
        ReplyKind::String => (ReplyItem::Bulk(reply.string().unwrap_or_default()), 0),
        ReplyKind::Error => (ReplyItem::Error(text(reply)), 0),
        ReplyKind::Integer => (ReplyItem::Integer(reply.integer()), 0),
        ReplyKind::Null if reply.null_is_array() => (ReplyItem::NullArray, 0),
        ReplyKind::Null | ReplyKind::Unknown | ReplyKind::Attribute => (ReplyItem::Null, 0),
        ReplyKind::Bool => (ReplyItem::Bool(reply.boolean()), 0),
        ReplyKind::Double => (ReplyItem::Double(reply.double()), 0),
        ReplyKind::BigNumber => (
            ReplyItem::BigNumber(reply.big_number().unwrap_or_default()),
            0,
        ),
        ReplyKind::Verbatim => {
            let (format, text) = reply.verbatim().unwrap_or_default();
            (ReplyItem::Verbatim(format, text), 0)
        }
        ReplyKind::Array | ReplyKind::Set => {
            let len = count(reply.length());
            let aggregate = match kind {
                ReplyKind::Set => Aggregate::Set,
                _ => Aggregate::Array,
            };
            (ReplyItem::Aggregate(aggregate, len), u64::from(len))
        }
        ReplyKind::Map => {
            let len = count(reply.length());
            (
                ReplyItem::Aggregate(Aggregate::Map, len),
                2 * u64::from(len),
            )
        }
    };
    out(item);
    for index in 0..elements {
        let read = reply.read_element(kind, index, |element| flatten(element, depth + 1, out));
        if read.is_none() {
            out(ReplyItem::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(n: u32) -> ReplyItem {
        ReplyItem::Aggregate(Aggregate::Array, n)
    }

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
    fn aggregates_count_their_elements() {
        let mut r = ReplyBuffer::default();
        r.push(array(2));
        r.push(array(1));
        r.push(ReplyItem::Integer(1));
        assert!(r.finish().unwrap_err().contains("1 more"));
        r.push(array(0));
        assert!(r.finish().is_ok());
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Aggregate(Aggregate::Map, 1));
        r.push(ReplyItem::Integer(1));
        assert!(r.finish().unwrap_err().contains("map still expects 1 more"));
        r.push(ReplyItem::Integer(2));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn postponed_lengths_close_innermost_first() {
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Postponed(Aggregate::Array));
        r.push(ReplyItem::Integer(1));
        r.push(ReplyItem::Postponed(Aggregate::Map));
        r.push(ReplyItem::Integer(2));
        r.push(ReplyItem::Integer(3));
        r.set_length(Aggregate::Map, 1);
        assert!(r.finish().unwrap_err().contains("was never given it"));
        r.set_length(Aggregate::Array, 2);
        assert!(r.finish().is_ok());
        assert!(matches!(
            r.items[0],
            ReplyItem::Aggregate(Aggregate::Array, 2)
        ));
    }

    #[test]
    fn postponed_length_mistakes_are_named() {
        let mut r = ReplyBuffer::default();
        r.set_length(Aggregate::Array, 0);
        assert!(r.finish().unwrap_err().contains("no postponed reply open"));
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Postponed(Aggregate::Array));
        r.push(ReplyItem::Integer(1));
        r.set_length(Aggregate::Array, 2);
        assert!(r.finish().unwrap_err().contains("given length 2 but has 1"));
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Postponed(Aggregate::Array));
        r.set_length(Aggregate::Set, 0);
        assert!(
            r.finish()
                .unwrap_err()
                .contains("innermost postponed reply is an array")
        );
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Postponed(Aggregate::Array));
        r.push(array(2));
        r.push(ReplyItem::Null);
        r.set_length(Aggregate::Array, 1);
        assert!(
            r.finish()
                .unwrap_err()
                .contains("fixed length is still open")
        );
    }

    #[test]
    fn unsafe_scalars_are_refused() {
        for item in [
            ReplyItem::Simple("OK\r\n+INJECTED".into()),
            ReplyItem::BigNumber("12\r\n:1".into()),
            ReplyItem::BigNumber("".into()),
            ReplyItem::Verbatim("text".into(), vec![]),
        ] {
            let mut r = ReplyBuffer::default();
            r.push(item);
            assert!(r.finish().is_err());
        }
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::BigNumber("-1234567890123456789012345".into()));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn values_follow_the_same_rules_as_single_replies() {
        use ReplyValue as V;
        // An aggregate opened by one batch is completed by a later one, inside a postponed
        // array opened before either: the postponed item is still the one patched.
        let mut r = ReplyBuffer::default();
        r.push(ReplyItem::Postponed(Aggregate::Array));
        r.push_values(vec![V::Array(2), V::Integer(1)]);
        assert!(r.finish().unwrap_err().contains("1 more"));
        r.push_values(vec![V::StringBuffer(b"x".to_vec()), V::Null]);
        r.set_length(Aggregate::Array, 2);
        assert!(r.finish().is_ok());
        assert!(matches!(
            r.items[0],
            ReplyItem::Aggregate(Aggregate::Array, 2)
        ));
        // A reply after the complete one, inside the same batch.
        let mut r = ReplyBuffer::default();
        r.push_values(vec![V::Integer(1), V::Integer(2)]);
        assert!(r.finish().unwrap_err().contains("more than once"));
        // Checks on the values themselves.
        for (value, mistake) in [
            (V::SimpleString("a\r\n".into()), "CR, LF or NUL"),
            (V::BigNumber("12a".into()), "not a big number"),
            (
                V::VerbatimString(("md".into(), b"x".to_vec())),
                "exactly three bytes",
            ),
        ] {
            let mut r = ReplyBuffer::default();
            r.push_values(vec![V::Array(1), value]);
            assert!(r.finish().unwrap_err().contains(mistake), "{mistake}");
            assert!(r.top_level_error().is_none());
        }
        // One error value is the whole reply's error (counted as a failed call).
        let mut r = ReplyBuffer::default();
        r.push_values(vec![V::Error("ERR no".into())]);
        assert!(r.finish().is_ok());
        assert_eq!(r.top_level_error().as_deref(), Some("ERR no"));
        // The nesting limit counts aggregates opened by values too.
        let mut r = ReplyBuffer::default();
        r.push_values(vec![V::Array(1); MAX_REPLY_DEPTH + 1]);
        assert!(r.finish().unwrap_err().contains("deeper"));
    }

    #[test]
    fn depth_is_limited() {
        let mut r = ReplyBuffer::default();
        for _ in 0..=MAX_REPLY_DEPTH {
            r.push(array(1));
        }
        assert!(r.finish().unwrap_err().contains("deeper"));
    }

    #[test]
    fn fail_replaces_a_partial_or_broken_reply() {
        let mut r = ReplyBuffer::default();
        r.push(array(3));
        r.push(ReplyItem::Simple("bad\r\n".into()));
        assert!(r.finish().is_err());
        r.replace_with_error("ERR gave up".into());
        assert!(r.finish().is_ok());
        assert_eq!(r.top_level_error().as_deref(), Some("ERR gave up"));
        r.push(ReplyItem::Integer(1));
        assert!(r.finish().unwrap_err().contains("more than once"));
        assert_eq!(r.top_level_error().as_deref(), None);
    }
}
