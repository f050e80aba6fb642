//! Calling Redis commands (`RedisModule_Call`) and reading their replies.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::key::{piece_ranges, split_at_ends};
use crate::string::RedisString;
use crate::value::{RedisError, RedisValue};
use crate::wit::redis::module::call as wit;

pub use wit::{CallFlags, ReplyType};

/// Something that can be a `call` argument: text, bytes, a [`RedisString`], an integer, an
/// `f64` (the C format's `c`, `b`, `s`, `l` and `d` kinds) or a slice/`Vec` of them (the `v`
/// kind, spread).
pub trait CallArg {
    /// Appends this argument (or these arguments) to `out`: bytes are borrowed, numbers
    /// formatted.
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>);

    /// This argument as one byte string, when it is one as it stands (text and bytes, not
    /// numbers or lists). Calls whose arguments all are need not collect them.
    fn as_one_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// Types that are one byte string as they stand: lent to the host, never copied.
macro_rules! slice_args {
    ($($t:ty => |$this:ident| $bytes:expr;)*) => {$(
        impl CallArg for $t {
            fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
                let $this = self;
                out.push(Cow::Borrowed($bytes));
            }

            fn as_one_slice(&self) -> Option<&[u8]> {
                let $this = self;
                Some($bytes)
            }
        }
    )*};
}
slice_args! {
    str => |text| text.as_bytes();
    String => |text| text.as_bytes();
    [u8] => |bytes| bytes;
    Vec<u8> => |bytes| bytes;
    RedisString => |string| string.as_slice();
}

impl<const N: usize> CallArg for [u8; N] {
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        out.push(Cow::Borrowed(self));
    }

    fn as_one_slice(&self) -> Option<&[u8]> {
        Some(self)
    }
}

macro_rules! integer_args {
    ($($t:ty),*) => {$(
        impl CallArg for $t {
            fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
                out.push(Cow::Owned(self.to_string().into_bytes()));
            }
        }
    )*};
}
integer_args!(i64, i32, u64, u32, usize);

impl CallArg for f64 {
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        out.push(Cow::Owned(
            crate::wit::redis::module::strings::double_to_string(*self),
        ));
    }
}

impl<T: CallArg + ?Sized> CallArg for &T {
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        (**self).push_to(out);
    }

    fn as_one_slice(&self) -> Option<&[u8]> {
        (**self).as_one_slice()
    }
}

impl<T: CallArg> CallArg for [T] {
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        for item in self {
            item.push_to(out);
        }
    }
}

impl<T: CallArg> CallArg for Vec<T> {
    fn push_to<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        self.as_slice().push_to(out);
    }
}

/// Runs `f` with `args` as the byte slices the WIT functions take (borrowed: no copies of
/// strings or bytes; the usual few text or byte arguments are not even collected on the heap).
pub(crate) fn with_args<R>(args: &[&dyn CallArg], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    const ON_STACK: usize = 8;
    if args.len() <= ON_STACK {
        let mut slices: [&[u8]; ON_STACK] = [&[]; ON_STACK];
        let all_slices = args
            .iter()
            .zip(&mut slices)
            .all(|(arg, slot)| arg.as_one_slice().map(|bytes| *slot = bytes).is_some());
        if all_slices {
            return f(&slices[..args.len()]);
        }
    }
    let mut collected = Vec::with_capacity(args.len());
    for arg in args {
        arg.push_to(&mut collected);
    }
    let slices: Vec<&[u8]> = collected.iter().map(|a| a.as_ref()).collect();
    f(&slices)
}

/// Why a call did not run (errors returned *by* the command are [`ReplyType::Error`] replies).
pub type CallError = wit::CallError;

impl CallError {
    /// Redis's message for this error.
    pub fn message(&self) -> &str {
        match self {
            CallError::UnknownCommand(m)
            | CallError::WrongArity(m)
            | CallError::NonLocalKey(m)
            | CallError::ClusterDown(m)
            | CallError::NoPermission(m)
            | CallError::OutOfMemory(m)
            | CallError::WriteNotAllowed(m)
            | CallError::NotAllowed(m)
            | CallError::Other(m) => m,
        }
    }
}

impl From<CallError> for RedisError {
    fn from(e: CallError) -> Self {
        RedisError::String(e.message().to_owned())
    }
}

/// A reply from [`Context::call`](crate::Context::call), or an element of one
/// (`RedisModuleCallReply`). Integers, errors, status replies and short bulk strings arrive with
/// the call (no further crossing into the host to read them); other replies are host handles,
/// released when dropped and, at the latest, when the command returns.
pub struct CallReply(Inner);

enum Inner {
    Integer(i64),
    Bulk(Bytes),
    Status(Bytes),
    Error(Bytes),
    Handle(Handle),
}

/// The bytes of a scalar reply: its own, or its piece of a batch that the elements
/// [`CallReply::iter`] read together share (so that no element needs an allocation).
enum Bytes {
    Owned(Vec<u8>),
    InBatch(Arc<wit::CallReplyBatch>, Range<usize>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(bytes) => bytes,
            Bytes::InBatch(batch, range) => batch.bytes.get(range.clone()).unwrap_or_default(),
        }
    }
}

/// A call reply the host holds (its number), freed when dropped.
struct Handle(wit::CallReply);

impl Drop for Handle {
    fn drop(&mut self) {
        wit::free_call_reply(self.0);
    }
}

impl Handle {
    fn reply_type(&self) -> ReplyType {
        wit::call_reply_type(self.0)
    }
    fn length(&self) -> u64 {
        wit::call_reply_length(self.0)
    }
    fn integer(&self) -> i64 {
        wit::call_reply_integer(self.0)
    }
    fn string(&self) -> Option<Vec<u8>> {
        wit::call_reply_string(self.0)
    }
    fn double(&self) -> f64 {
        wit::call_reply_double(self.0)
    }
    fn bool(&self) -> bool {
        wit::call_reply_bool(self.0)
    }
    fn big_number(&self) -> Option<String> {
        wit::call_reply_big_number(self.0)
    }
    fn verbatim(&self) -> Option<(String, Vec<u8>)> {
        wit::call_reply_verbatim(self.0)
    }
    fn array_element(&self, index: u64) -> Option<wit::CallValue> {
        wit::call_reply_array_element(self.0, index)
    }
    fn set_element(&self, index: u64) -> Option<wit::CallValue> {
        wit::call_reply_set_element(self.0, index)
    }
    fn map_element(&self, index: u64) -> Option<(wit::CallValue, wit::CallValue)> {
        wit::call_reply_map_element(self.0, index)
    }
    fn attribute(&self) -> Option<wit::CallReply> {
        wit::call_reply_attribute(self.0)
    }
    fn elements(&self, start: u64, max: u32) -> wit::CallReplyBatch {
        wit::call_reply_elements(self.0, start, max)
    }
    fn proto(&self) -> Vec<u8> {
        wit::call_reply_proto(self.0)
    }
}

impl From<wit::CallValue> for CallReply {
    fn from(value: wit::CallValue) -> Self {
        CallReply(match value {
            wit::CallValue::Integer(n) => Inner::Integer(n),
            wit::CallValue::Bulk(b) => Inner::Bulk(Bytes::Owned(b)),
            wit::CallValue::Status(s) => Inner::Status(Bytes::Owned(s)),
            wit::CallValue::Error(e) => Inner::Error(Bytes::Owned(e)),
            wit::CallValue::Reply(number) => Inner::Handle(Handle(number)),
        })
    }
}

impl CallReply {
    /// The reply's type. Status replies (`+OK`) are [`ReplyType::String`].
    pub fn reply_type(&self) -> ReplyType {
        match &self.0 {
            Inner::Integer(_) => ReplyType::Integer,
            Inner::Bulk(_) | Inner::Status(_) => ReplyType::String,
            Inner::Error(_) => ReplyType::Error,
            Inner::Handle(h) => h.reply_type(),
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        self.reply_type() == ReplyType::Error
    }

    /// The reply, or its error reply as an `Err` carrying the error's text, which a command
    /// returning it answers its client (as Lua's `redis.call` raises it):
    /// `ctx.call("INCR", &[&key])?.into_result()?` reads only a reply that is not an error.
    pub fn into_result(self) -> Result<CallReply, RedisError> {
        if !self.is_error() {
            return Ok(self);
        }
        let text = self.bytes().unwrap_or_default();
        Err(RedisError::String(
            String::from_utf8_lossy(&text).into_owned(),
        ))
    }

    /// Whether this is a status reply (`+OK`), which [`reply_type`](Self::reply_type) calls a
    /// string, as the C API does. (Status replies come with the call; one longer than 8 KiB,
    /// which no Redis command sends, would read as a bulk string.)
    pub fn is_status(&self) -> bool {
        matches!(self.0, Inner::Status(_))
    }

    /// `RedisModule_CallReplyLength`: bytes of a string, elements of an array or set, pairs of
    /// a map.
    pub fn len(&self) -> usize {
        match &self.0 {
            Inner::Integer(_) => 0,
            Inner::Bulk(b) | Inner::Status(b) | Inner::Error(b) => b.len(),
            Inner::Handle(h) => usize::try_from(h.length()).unwrap_or(usize::MAX),
        }
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `RedisModule_CallReplyInteger`: the value, or `i64::MIN` when this is not an integer.
    pub fn integer(&self) -> i64 {
        match &self.0 {
            Inner::Integer(n) => *n,
            Inner::Handle(h) => h.integer(),
            _ => i64::MIN,
        }
    }

    /// The integer value, if this is an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        (self.reply_type() == ReplyType::Integer).then(|| self.integer())
    }

    /// The bytes of a string, status or error reply (`RedisModule_CreateStringFromCallReply`).
    pub fn string(&self) -> Option<RedisString> {
        match &self.0 {
            Inner::Integer(_) => None,
            Inner::Bulk(b) | Inner::Status(b) | Inner::Error(b) => {
                Some(RedisString::from(b.to_vec()))
            }
            Inner::Handle(h) => h.string().map(RedisString::from),
        }
    }

    /// The bytes of a string, status or error reply, without copying them when the reply came
    /// inline.
    pub fn bytes(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match &self.0 {
            Inner::Integer(_) => None,
            Inner::Bulk(b) | Inner::Status(b) | Inner::Error(b) => Some(Cow::Borrowed(b)),
            Inner::Handle(h) => h.string().map(Into::into),
        }
    }

    /// `RedisModule_CallReplyDouble`.
    pub fn double(&self) -> Option<f64> {
        match &self.0 {
            Inner::Handle(h) if h.reply_type() == ReplyType::Double => Some(h.double()),
            _ => None,
        }
    }

    /// `RedisModule_CallReplyBool`.
    pub fn boolean(&self) -> Option<bool> {
        match &self.0 {
            Inner::Handle(h) if h.reply_type() == ReplyType::Bool => Some(h.bool()),
            _ => None,
        }
    }

    /// `RedisModule_CallReplyBigNumber`.
    pub fn big_number(&self) -> Option<String> {
        self.handle()?.big_number()
    }

    /// `RedisModule_CallReplyVerbatim`: format and text.
    pub fn verbatim(&self) -> Option<(String, Vec<u8>)> {
        self.handle()?.verbatim()
    }

    /// `RedisModule_CallReplyArrayElement`.
    pub fn element(&self, index: usize) -> Option<CallReply> {
        self.handle()?
            .array_element(index as u64)
            .map(CallReply::from)
    }

    /// `RedisModule_CallReplySetElement`.
    pub fn set_element(&self, index: usize) -> Option<CallReply> {
        self.handle()?
            .set_element(index as u64)
            .map(CallReply::from)
    }

    /// `RedisModule_CallReplyMapElement`: key and value of pair `index`.
    pub fn map_element(&self, index: usize) -> Option<(CallReply, CallReply)> {
        self.handle()?
            .map_element(index as u64)
            .map(|(k, v)| (CallReply::from(k), CallReply::from(v)))
    }

    /// `RedisModule_CallReplyAttribute`.
    pub fn attribute(&self) -> Option<CallReply> {
        self.handle()?
            .attribute()
            .map(|number| CallReply(Inner::Handle(Handle(number))))
    }

    /// The elements of an array or set reply, or a map reply's keys and values taken
    /// alternately. They are read 128 at a time (see [`elements`](Self::elements));
    /// only aggregates, nulls and the like cost a crossing each.
    pub fn iter(&self) -> impl Iterator<Item = CallReply> + '_ {
        let reply_type = self.reply_type();
        let mut next = 0;
        let mut pending = Vec::new().into_iter();
        std::iter::from_fn(move || {
            loop {
                if let Some(element) = pending.next() {
                    return Some(element);
                }
                let batch = Arc::new(self.elements(next, ITER_BATCH).0);
                if batch.kinds.is_empty() {
                    return None;
                }
                let first = next;
                next += batch.kinds.len();
                let pieces = piece_ranges(&batch.ends);
                let elements: Vec<CallReply> = (batch.kinds.iter().zip(pieces).enumerate())
                    .filter_map(|(i, (kind, range))| {
                        let piece = || Bytes::InBatch(batch.clone(), range);
                        let inner = match kind {
                            wit::ElementKind::Integer => Inner::Integer(integer_of(&piece())),
                            wit::ElementKind::Bulk => Inner::Bulk(piece()),
                            wit::ElementKind::Status => Inner::Status(piece()),
                            wit::ElementKind::Error => Inner::Error(piece()),
                            wit::ElementKind::Null | wit::ElementKind::Other => {
                                return self.element_of(reply_type, first + i);
                            }
                        };
                        Some(CallReply(inner))
                    })
                    .collect();
                pending = elements.into_iter();
            }
        })
    }

    /// The key-value pairs of a map reply, read like [`iter`](Self::iter); nothing for any
    /// other reply.
    pub fn pairs(&self) -> impl Iterator<Item = (CallReply, CallReply)> + '_ {
        let is_map = self.reply_type() == ReplyType::Map;
        let mut elements = self.iter().take(if is_map { usize::MAX } else { 0 });
        std::iter::from_fn(move || Some((elements.next()?, elements.next()?)))
    }

    /// Elements `start..` of an array or set reply, or of a map reply's keys and values taken
    /// alternately, up to `max` (and about 1 MiB) in one crossing, without copying their bytes
    /// out of the batch: what the element accessors ([`element`](Self::element),
    /// [`set_element`](Self::set_element), [`map_element`](Self::map_element)) give one crossing
    /// each, much faster.
    /// Aggregates and other replies that are not plain scalars come as
    /// [`BatchElement::Other`]: read them by index. Empty past the end, and for any other reply.
    pub fn elements(&self, start: usize, max: u32) -> CallReplyBatch {
        let batch = match self.handle() {
            Some(handle) => handle.elements(start as u64, max),
            None => wit::CallReplyBatch {
                kinds: Vec::new(),
                bytes: Vec::new(),
                ends: Vec::new(),
            },
        };
        CallReplyBatch(batch)
    }

    /// Element `index` as [`iter`](Self::iter) counts them, read on its own.
    fn element_of(&self, reply_type: ReplyType, index: usize) -> Option<CallReply> {
        match reply_type {
            ReplyType::Set => self.set_element(index),
            ReplyType::Map => self
                .map_element(index / 2)
                .map(|(key, value)| if index.is_multiple_of(2) { key } else { value }),
            _ => self.element(index),
        }
    }

    /// `RedisModule_CallReplyProto`: the reply's RESP encoding.
    pub fn proto(&self) -> Vec<u8> {
        let line = |kind: u8, text: &[u8]| {
            let mut out = Vec::with_capacity(text.len() + 3);
            out.push(kind);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
            out
        };
        match &self.0 {
            Inner::Integer(n) => line(b':', n.to_string().as_bytes()),
            Inner::Status(s) => line(b'+', s),
            Inner::Error(e) => line(b'-', e),
            Inner::Bulk(b) => {
                let mut out = line(b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
                out
            }
            Inner::Handle(h) => h.proto(),
        }
    }

    /// Replies with this reply as it is (`RedisModule_ReplyWithCallReply`).
    pub(crate) fn reply_with(&self) {
        use crate::wit::redis::module::reply;
        match &self.0 {
            Inner::Integer(n) => reply::reply_with_long_long(*n),
            Inner::Bulk(b) => reply::reply_with_string_buffer(b),
            Inner::Status(s) => reply::reply_with_simple_string(&String::from_utf8_lossy(s)),
            Inner::Error(e) => reply::reply_with_error(&String::from_utf8_lossy(e)),
            Inner::Handle(h) => reply::reply_with_call_reply(h.0),
        }
    }

    fn handle(&self) -> Option<&Handle> {
        match &self.0 {
            Inner::Handle(h) => Some(h),
            _ => None,
        }
    }
}

/// A call reply as a reply value, aggregates included (reading their elements as
/// [`CallReply::iter`] does), so it can be sent inside a larger reply. Status replies stay
/// status replies; an unknown reply becomes `Null`. To send a call reply on its own,
/// [`Context::reply_with_call_reply`](crate::Context::reply_with_call_reply) does it without
/// a copy.
impl From<&CallReply> for RedisValue {
    fn from(reply: &CallReply) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let handle = match &reply.0 {
            Inner::Integer(n) => return RedisValue::Integer(*n),
            Inner::Bulk(b) => return RedisValue::StringBuffer(b.to_vec()),
            Inner::Status(s) => return RedisValue::SimpleString(text(s)),
            Inner::Error(e) => return RedisValue::Error(text(e)),
            Inner::Handle(h) => h,
        };
        match handle.reply_type() {
            ReplyType::String => RedisValue::StringBuffer(handle.string().unwrap_or_default()),
            ReplyType::Error => RedisValue::Error(text(&handle.string().unwrap_or_default())),
            ReplyType::Integer => RedisValue::Integer(handle.integer()),
            ReplyType::Array => RedisValue::Array(reply.iter().map(|e| (&e).into()).collect()),
            ReplyType::Set => RedisValue::Set(reply.iter().map(|e| (&e).into()).collect()),
            ReplyType::Map => RedisValue::Map(
                reply
                    .pairs()
                    .map(|(k, v)| ((&k).into(), (&v).into()))
                    .collect(),
            ),
            ReplyType::Bool => RedisValue::Bool(handle.bool()),
            ReplyType::Double => RedisValue::Double(handle.double()),
            ReplyType::BigNumber => RedisValue::BigNumber(handle.big_number().unwrap_or_default()),
            ReplyType::VerbatimString => match handle.verbatim() {
                Some((format, text)) => RedisValue::VerbatimString(format, text),
                None => RedisValue::Null,
            },
            ReplyType::Null | ReplyType::Attribute | ReplyType::Unknown => RedisValue::Null,
        }
    }
}

impl From<CallReply> for RedisValue {
    fn from(reply: CallReply) -> Self {
        RedisValue::from(&reply)
    }
}

/// How many elements [`CallReply::iter`] reads per crossing.
const ITER_BATCH: u32 = 128;

/// Elements of an aggregate reply, from [`CallReply::elements`].
pub struct CallReplyBatch(wit::CallReplyBatch);

/// One element of a [`CallReplyBatch`], borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BatchElement<'a> {
    /// An integer reply.
    Integer(i64),
    /// A bulk string.
    Bulk(&'a [u8]),
    /// A status reply (`+OK`).
    Status(&'a [u8]),
    /// An error reply.
    Error(&'a [u8]),
    /// A null reply.
    Null,
    /// An aggregate, a double or anything else: read it with [`CallReply::element`] (or the set
    /// or map accessor) at its index.
    Other,
}

impl CallReplyBatch {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.0.kinds.len()
    }

    /// Whether there were no elements from the start index on.
    pub fn is_empty(&self) -> bool {
        self.0.kinds.is_empty()
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchElement<'_>> {
        split_at_ends(&self.0.bytes, &self.0.ends)
            .zip(&self.0.kinds)
            .map(|(bytes, kind)| match kind {
                wit::ElementKind::Integer => BatchElement::Integer(integer_of(bytes)),
                wit::ElementKind::Bulk => BatchElement::Bulk(bytes),
                wit::ElementKind::Status => BatchElement::Status(bytes),
                wit::ElementKind::Error => BatchElement::Error(bytes),
                wit::ElementKind::Null => BatchElement::Null,
                wit::ElementKind::Other => BatchElement::Other,
            })
    }
}

/// An integer element's value from its bytes in a batch (8 bytes, little-endian).
fn integer_of(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_le_bytes).unwrap_or(i64::MIN)
}

impl fmt::Debug for CallReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallReply({:?})", String::from_utf8_lossy(&self.proto()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected(args: &[&dyn CallArg]) -> Vec<Vec<u8>> {
        with_args(args, |slices| slices.iter().map(|s| s.to_vec()).collect())
    }

    #[test]
    fn a_batch_splits_into_its_elements() {
        let mut bytes = b"bulk".to_vec();
        bytes.extend_from_slice(&(-7i64).to_le_bytes());
        bytes.extend_from_slice(b"OKERR no");
        let batch = wit::CallReplyBatch {
            kinds: vec![
                wit::ElementKind::Bulk,
                wit::ElementKind::Integer,
                wit::ElementKind::Status,
                wit::ElementKind::Error,
                wit::ElementKind::Null,
                wit::ElementKind::Bulk,
            ],
            ends: vec![4, 12, 14, 20, 20, 20],
            bytes,
        };
        let whole = CallReplyBatch(batch.clone());
        let elements: Vec<BatchElement<'_>> = whole.iter().collect();
        assert_eq!(
            elements,
            [
                BatchElement::Bulk(b"bulk"),
                BatchElement::Integer(-7),
                BatchElement::Status(b"OK"),
                BatchElement::Error(b"ERR no"),
                BatchElement::Null,
                BatchElement::Bulk(b""),
            ]
        );
        // Elements made by `iter()` share the batch's bytes.
        let shared = Arc::new(batch);
        let reply = CallReply(Inner::Status(Bytes::InBatch(shared.clone(), 12..14)));
        assert_eq!(reply.bytes().as_deref(), Some(&b"OK"[..]));
        assert_eq!(reply.len(), 2);
        assert_eq!(reply.proto(), b"+OK\r\n");
        let reply = CallReply(Inner::Bulk(Bytes::InBatch(shared, 0..4)));
        assert_eq!(reply.reply_type(), ReplyType::String);
        assert_eq!(reply.proto(), b"$4\r\nbulk\r\n");
    }

    #[test]
    fn an_error_reply_becomes_an_err_with_its_text() {
        let error = CallReply::from(wit::CallValue::Error(b"WRONGTYPE no".to_vec()));
        match error.into_result() {
            Err(RedisError::String(text)) => assert_eq!(text, "WRONGTYPE no"),
            other => panic!("{other:?}"),
        }
        let integer = CallReply::from(wit::CallValue::Integer(7));
        assert_eq!(integer.into_result().map(|r| r.integer()).ok(), Some(7));
        let status = CallReply::from(wit::CallValue::Status(b"OK".to_vec()));
        assert!(status.into_result().is_ok());
    }

    #[test]
    fn text_and_bytes_pass_as_they_are() {
        let owned = String::from("two");
        let name = RedisString::from_static(b"four");
        let args: [&dyn CallArg; 5] = [&"one", &owned, &b"three", &name, &vec![5u8]];
        assert_eq!(
            collected(&args),
            [&b"one"[..], b"two", b"three", b"four", &[5]]
        );
    }

    #[test]
    fn numbers_and_lists_are_collected() {
        let list = vec!["b", "c"];
        let args: [&dyn CallArg; 4] = [&"a", &list, &-7i64, &3u32];
        assert_eq!(collected(&args), [&b"a"[..], b"b", b"c", b"-7", b"3"]);
    }

    #[test]
    fn many_arguments_are_collected() {
        let args: Vec<&dyn CallArg> = vec![&"x"; 20];
        assert_eq!(collected(&args), vec![b"x".to_vec(); 20]);
    }
}
