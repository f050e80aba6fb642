//! What a command returns: [`RedisValue`] on success, [`RedisError`] on failure.

use std::fmt;

use crate::string::RedisString;
use crate::wit::redis::module::reply;

/// The result of a command function.
pub type RedisResult = Result<RedisValue, RedisError>;

/// A reply value. Returned from a command function, it is sent to the client.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RedisValue {
    /// A status reply from a static string, such as `OK`.
    SimpleStringStatic(&'static str),
    /// A status reply. Must not contain CR, LF or NUL.
    SimpleString(String),
    /// A bulk string from UTF-8 text.
    BulkString(String),
    /// A bulk string from bytes.
    StringBuffer(Vec<u8>),
    /// A bulk string from a [`RedisString`].
    BulkRedisString(RedisString),
    /// An integer reply.
    Integer(i64),
    /// The null reply.
    Null,
    /// An array reply.
    Array(Vec<RedisValue>),
    /// The null array (`*-1` in RESP2).
    NullArray,
    /// An error reply as an element (a top-level error is better returned as `Err`).
    Error(String),
    /// A double (a bulk string for RESP2 clients).
    Double(f64),
    /// A boolean (1 or 0 for RESP2 clients).
    Bool(bool),
    /// A big number: decimal digits with an optional `-` (a bulk string for RESP2 clients).
    BigNumber(String),
    /// A verbatim string: a three-character format (`txt`, `mkd`) and the text.
    VerbatimString(String, Vec<u8>),
    /// A map, in order (a flat array for RESP2 clients).
    Map(Vec<(RedisValue, RedisValue)>),
    /// A set (an array for RESP2 clients).
    Set(Vec<RedisValue>),
    /// The command already replied through the [`Context`](crate::Context) `reply_with_*`
    /// methods; nothing more is sent.
    NoReply,
}

impl RedisValue {
    /// Sends this value through the reply interface: a scalar with its `reply-with-*` function,
    /// an aggregate flattened into one `reply-with-values` call (one crossing instead of one per
    /// element).
    pub(crate) fn emit(&self) {
        match self {
            RedisValue::SimpleStringStatic(s) => reply::reply_with_simple_string(s),
            RedisValue::SimpleString(s) => reply::reply_with_simple_string(s),
            RedisValue::BulkString(s) => reply::reply_with_string_buffer(s.as_bytes()),
            RedisValue::StringBuffer(b) => reply::reply_with_string_buffer(b),
            RedisValue::BulkRedisString(s) => reply::reply_with_string_buffer(s.as_slice()),
            RedisValue::Integer(i) => reply::reply_with_long_long(*i),
            RedisValue::Null => reply::reply_with_null(),
            RedisValue::NullArray => reply::reply_with_null_array(),
            RedisValue::Error(message) => reply::reply_with_error(message),
            RedisValue::Double(d) => reply::reply_with_double(*d),
            RedisValue::Bool(b) => reply::reply_with_bool(*b),
            RedisValue::BigNumber(n) => reply::reply_with_big_number(n),
            RedisValue::VerbatimString(format, text) => {
                reply::reply_with_verbatim_string(format, text)
            }
            RedisValue::Array(_) | RedisValue::Map(_) | RedisValue::Set(_) => {
                let mut flat = Vec::new();
                let mut hollow = false;
                self.flatten(&mut flat, &mut hollow);
                if hollow {
                    reply::fail(&crate::runtime::bad_reply(
                        "RedisValue::NoReply inside an array, map or set (NoReply stands only \
                         for a whole reply already sent)",
                    ));
                } else {
                    reply::reply_with_values(&flat);
                }
            }
            RedisValue::NoReply => {}
        }
    }

    /// This value as one `reply-with-values` entry, unless it is an aggregate (or `NoReply`).
    /// Strings are borrowed, not copied: the host reads them from the guest's memory.
    #[inline(always)]
    fn as_scalar(&self) -> Option<reply::ReplyValue<'_>> {
        use reply::ReplyValue as V;
        Some(match self {
            RedisValue::SimpleStringStatic(s) => V::SimpleString(s),
            RedisValue::SimpleString(s) => V::SimpleString(s),
            RedisValue::BulkString(s) => V::StringBuffer(s.as_bytes()),
            RedisValue::StringBuffer(b) => V::StringBuffer(b),
            RedisValue::BulkRedisString(s) => V::StringBuffer(s.as_slice()),
            RedisValue::Integer(i) => V::Integer(*i),
            RedisValue::Null => V::Null,
            RedisValue::NullArray => V::NullArray,
            RedisValue::Error(message) => V::Error(message),
            RedisValue::Double(d) => V::Double(*d),
            RedisValue::Bool(b) => V::Boolean(*b),
            RedisValue::BigNumber(n) => V::BigNumber(n),
            RedisValue::VerbatimString(format, text) => V::VerbatimString((format, text)),
            RedisValue::Array(_) | RedisValue::Map(_) | RedisValue::Set(_) => return None,
            RedisValue::NoReply => return None,
        })
    }

    /// [`flatten`](Self::flatten) for an element of an aggregate: a scalar is pushed here, in
    /// its aggregate's loop, not by a call each (most aggregates hold only scalars).
    #[inline(always)]
    fn flatten_element<'a>(&'a self, out: &mut Vec<reply::ReplyValue<'a>>, hollow: &mut bool) {
        match self.as_scalar() {
            Some(value) => out.push(value),
            None => self.flatten(out, hollow),
        }
    }

    /// Appends this value, then its elements, as `reply-with-values` takes them. `hollow` is
    /// set when an element is `NoReply`, which has nothing to send.
    fn flatten<'a>(&'a self, out: &mut Vec<reply::ReplyValue<'a>>, hollow: &mut bool) {
        use reply::ReplyValue as V;
        // An aggregate longer than u32::MAX cannot be declared; the host rejects the mismatch
        // rather than sending a corrupt reply.
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match self {
            RedisValue::Array(items) | RedisValue::Set(items) => {
                out.reserve(items.len() + 1);
                out.push(match self {
                    RedisValue::Set(_) => V::Set(len(items.len())),
                    _ => V::Array(len(items.len())),
                });
                for item in items {
                    item.flatten_element(out, hollow);
                }
            }
            RedisValue::Map(pairs) => {
                out.reserve(pairs.len().saturating_mul(2) + 1);
                out.push(V::Map(len(pairs.len())));
                for (k, v) in pairs {
                    k.flatten_element(out, hollow);
                    v.flatten_element(out, hollow);
                }
            }
            RedisValue::NoReply => *hollow = true,
            scalar => out.extend(scalar.as_scalar()),
        }
    }
}

impl From<i64> for RedisValue {
    fn from(i: i64) -> Self {
        RedisValue::Integer(i)
    }
}

impl From<i32> for RedisValue {
    fn from(i: i32) -> Self {
        RedisValue::Integer(i64::from(i))
    }
}

impl From<u32> for RedisValue {
    fn from(i: u32) -> Self {
        RedisValue::Integer(i64::from(i))
    }
}

/// Counts and lengths: past `i64::MAX` (which no count in Redis reaches) the value is clamped.
impl From<u64> for RedisValue {
    fn from(i: u64) -> Self {
        RedisValue::Integer(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

/// As for `u64`.
impl From<usize> for RedisValue {
    fn from(i: usize) -> Self {
        RedisValue::Integer(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<f64> for RedisValue {
    fn from(d: f64) -> Self {
        RedisValue::Double(d)
    }
}

impl From<bool> for RedisValue {
    fn from(b: bool) -> Self {
        RedisValue::Bool(b)
    }
}

impl From<String> for RedisValue {
    fn from(s: String) -> Self {
        RedisValue::BulkString(s)
    }
}

impl From<&str> for RedisValue {
    fn from(s: &str) -> Self {
        RedisValue::BulkString(s.to_owned())
    }
}

impl From<Vec<u8>> for RedisValue {
    fn from(b: Vec<u8>) -> Self {
        RedisValue::StringBuffer(b)
    }
}

impl From<RedisString> for RedisValue {
    fn from(s: RedisString) -> Self {
        RedisValue::BulkRedisString(s)
    }
}

impl<T: Into<RedisValue>> From<Option<T>> for RedisValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(RedisValue::Null, Into::into)
    }
}

impl<T: Into<RedisValue>> From<Vec<T>> for RedisValue {
    fn from(items: Vec<T>) -> Self {
        RedisValue::Array(items.into_iter().map(Into::into).collect())
    }
}

/// A command failure, sent to the client as an error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisError {
    /// The standard wrong-number-of-arguments error for the running command.
    WrongArity,
    /// The standard `WRONGTYPE` error.
    WrongType,
    /// An error message, sent as written: start it with an error code (`ERR`, ...).
    Str(&'static str),
    /// An error message, like [`RedisError::Str`].
    String(String),
}

/// The message of [`RedisError::WrongType`], as Redis words it (`REDISMODULE_ERRORMSG_WRONGTYPE`).
pub const ERRORMSG_WRONGTYPE: &str =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

impl RedisError {
    /// An error from any message.
    pub fn new(message: impl Into<String>) -> Self {
        RedisError::String(message.into())
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::WrongArity => f.write_str("ERR wrong number of arguments"),
            RedisError::WrongType => f.write_str(ERRORMSG_WRONGTYPE),
            RedisError::Str(s) => f.write_str(s),
            RedisError::String(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RedisError {}

impl From<String> for RedisError {
    fn from(s: String) -> Self {
        RedisError::String(s)
    }
}

impl From<&'static str> for RedisError {
    fn from(s: &'static str) -> Self {
        RedisError::Str(s)
    }
}
