//! Binary-safe strings: command arguments and their parsing.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use crate::value::RedisError;

/// A binary-safe string, such as a command argument (`RedisModuleString`).
///
/// A long argument may share the buffer all of its command's arguments came in (up to 64 KiB of
/// them): to keep one past the command (in a `thread_local!`), keep a `clone()`, which copies
/// just its bytes.
#[derive(Clone, Default)]
pub struct RedisString(Bytes);

enum Bytes {
    Own(Cow<'static, [u8]>),
    /// Up to [`INLINE`] bytes, kept in place of a pointer: short arguments (keys, numbers,
    /// fields) copied out of packed arguments without an allocation.
    Inline(u8, [u8; INLINE]),
    /// A longer argument: its range of the buffer the arguments came packed in, shared rather
    /// than copied (which would hold its bytes twice while the command runs).
    Shared(Arc<Vec<u8>>, Range<usize>),
}

/// The most bytes a string holds without an allocation: with their length and the variant's
/// tag, 24 bytes, the size of a `Bytes` on `wasm32` (twice a `Cow`'s, for no allocation).
pub(crate) const INLINE: usize = 22;

impl Clone for Bytes {
    /// A shared argument's clone is a copy of its bytes: a clone kept does not keep the
    /// command's whole argument buffer alive.
    fn clone(&self) -> Self {
        match self {
            Bytes::Own(bytes) => Bytes::Own(bytes.clone()),
            Bytes::Inline(len, bytes) => Bytes::Inline(*len, *bytes),
            Bytes::Shared(buffer, range) => Bytes::Own(Cow::Owned(buffer[range.clone()].to_vec())),
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::Own(Cow::Borrowed(&[]))
    }
}

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_A_FLOAT: &str = "ERR value is not a valid float";

impl RedisString {
    /// Wraps bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        RedisString(Bytes::Own(Cow::Owned(bytes.into())))
    }

    /// A string holding the decimal form of `value` (`RedisModule_CreateStringFromLongLong`),
    /// made without an allocation (at most 20 bytes: an inline string).
    pub fn from_i64(value: i64) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut magnitude = value.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if value < 0 {
            at -= 1;
            digits[at] = b'-';
        }
        RedisString::copied(&digits[at..])
    }

    /// A string of bytes that live as long as the guest (a command's name), without a copy.
    pub(crate) fn from_static(bytes: &'static [u8]) -> Self {
        RedisString(Bytes::Own(Cow::Borrowed(bytes)))
    }

    /// The bytes at `range` of `buffer`, without a copy (`range` must lie within it).
    pub(crate) fn shared(buffer: &Arc<Vec<u8>>, range: Range<usize>) -> Self {
        debug_assert!(buffer.get(range.clone()).is_some());
        RedisString(Bytes::Shared(Arc::clone(buffer), range))
    }

    /// Whether it shares a packed-arguments buffer.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.0, Bytes::Shared(..))
    }

    /// A copy of `bytes`, allocated only when they are longer than [`INLINE`].
    pub(crate) fn copied(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            RedisString(Bytes::Inline(bytes.len() as u8, inline))
        } else {
            RedisString::new(bytes)
        }
    }

    /// The first `len` bytes of `window` (at most [`INLINE`]), copied whole: a fixed-size copy
    /// is a few loads and stores, where one of `len` bytes is a call out of the guest's code
    /// (`memory.copy`). The bytes past `len` are kept but never read.
    pub(crate) fn inline_prefix(window: &[u8; INLINE], len: usize) -> Self {
        debug_assert!(len <= INLINE);
        RedisString(Bytes::Inline(len as u8, *window))
    }

    /// The bytes (`RedisModule_StringPtrLen`).
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Bytes::Own(bytes) => bytes,
            Bytes::Inline(len, bytes) => &bytes[..*len as usize],
            Bytes::Shared(buffer, range) => &buffer[range.clone()],
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Bytes::Own(bytes) => bytes.into_owned(),
            Bytes::Inline(len, bytes) => bytes[..len as usize].to_vec(),
            Bytes::Shared(buffer, range) => buffer[range].to_vec(),
        }
    }

    /// The string as UTF-8, or an error naming the problem.
    pub fn try_as_str(&self) -> Result<&str, RedisError> {
        std::str::from_utf8(self.as_slice())
            .map_err(|_| RedisError::Str("ERR argument is not valid UTF-8"))
    }

    /// The string as text, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_slice()).into_owned()
    }

    /// Parses the string as Redis parses integers (`RedisModule_StringToLongLong`): an optional
    /// `-`, decimal digits, no leading zeros, no spaces or `+`, within `i64`.
    pub fn parse_integer(&self) -> Result<i64, RedisError> {
        parse_integer(self.as_slice())
    }

    /// Parses the string as [`parse_integer`](Self::parse_integer) does, refusing a negative
    /// number: from 0 to `i64::MAX` (as the `redis-module` crate does; Redis's own arguments are
    /// signed 64-bit integers).
    pub fn parse_unsigned_integer(&self) -> Result<u64, RedisError> {
        let v = self.parse_integer()?;
        u64::try_from(v).map_err(|_| RedisError::Str(NOT_AN_INTEGER))
    }

    /// Parses the string as a double exactly as Redis does (`RedisModule_StringToDouble`, asked
    /// of the host): no spaces, not NaN.
    pub fn parse_float(&self) -> Result<f64, RedisError> {
        parse_float(self.as_slice())
    }
}

/// Parses bytes as [`RedisString::parse_integer`] does, without making a `RedisString` of them
/// (for the elements of a batch, say).
pub fn parse_integer(bytes: &[u8]) -> Result<i64, RedisError> {
    parse_redis_integer(bytes).ok_or(RedisError::Str(NOT_AN_INTEGER))
}

/// Parses bytes as [`RedisString::parse_float`] does, without making a `RedisString` of them
/// (the scores of a sorted-set scan, say).
pub fn parse_float(bytes: &[u8]) -> Result<f64, RedisError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wit::redis::module::strings::string_to_double(bytes)
            .map_err(|_| RedisError::Str(NOT_A_FLOAT))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        parse_redis_double(bytes).ok_or(RedisError::Str(NOT_A_FLOAT))
    }
}

/// Redis's `string2ll`: strict decimal integers that round-trip exactly.
pub(crate) fn parse_redis_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // 19 digits always fit in a u64 and 20 never fit in an i64, so the loop needs no overflow
    // checks (on wasm32 a checked 64-bit multiply is a call to a 128-bit multiply).
    if digits.len() > 19 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude * 10 + u64::from(b - b'0');
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
            .or((magnitude == 1 << 63).then_some(i64::MIN))
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// An approximation of Redis's double parsing for native builds (unit tests); guests ask the host.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn parse_redis_double(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let value = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => text.parse::<f64>().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

impl PartialEq for RedisString {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for RedisString {}

impl Hash for RedisString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialOrd for RedisString {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RedisString {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for RedisString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RedisString({:?})",
            String::from_utf8_lossy(self.as_slice())
        )
    }
}

impl fmt::Display for RedisString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_slice()))
    }
}

impl From<Vec<u8>> for RedisString {
    fn from(bytes: Vec<u8>) -> Self {
        RedisString::new(bytes)
    }
}

impl From<&[u8]> for RedisString {
    fn from(bytes: &[u8]) -> Self {
        RedisString::new(bytes)
    }
}

impl From<&str> for RedisString {
    fn from(s: &str) -> Self {
        RedisString::new(s)
    }
}

impl From<String> for RedisString {
    fn from(s: String) -> Self {
        RedisString::new(s)
    }
}

impl AsRef<[u8]> for RedisString {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Reading command arguments one at a time, as in the `redis-module` crate.
///
/// ```
/// use redis_wasm_sdk::{NextArg, RedisString, RedisError};
/// let mut args = vec![RedisString::from("cmd"), RedisString::from("42")].into_iter().skip(1);
/// assert_eq!(args.next_i64().unwrap(), 42);
/// assert_eq!(args.next_arg(), Err(RedisError::WrongArity));
/// ```
pub trait NextArg {
    /// The next argument, or [`RedisError::WrongArity`] when there is none.
    fn next_arg(&mut self) -> Result<RedisString, RedisError>;
    /// The next argument as an integer.
    fn next_i64(&mut self) -> Result<i64, RedisError>;
    /// The next argument as a non-negative integer (0 to `i64::MAX`, see
    /// [`RedisString::parse_unsigned_integer`]).
    fn next_u64(&mut self) -> Result<u64, RedisError>;
    /// The next argument as a double.
    fn next_f64(&mut self) -> Result<f64, RedisError>;
    /// The next argument as UTF-8 text.
    fn next_string(&mut self) -> Result<String, RedisError>;
    /// [`RedisError::WrongArity`] if any argument is left.
    fn done(&mut self) -> Result<(), RedisError>;
}

impl<T: Iterator<Item = RedisString>> NextArg for T {
    fn next_arg(&mut self) -> Result<RedisString, RedisError> {
        self.next().ok_or(RedisError::WrongArity)
    }

    fn next_i64(&mut self) -> Result<i64, RedisError> {
        self.next_arg()?.parse_integer()
    }

    fn next_u64(&mut self) -> Result<u64, RedisError> {
        self.next_arg()?.parse_unsigned_integer()
    }

    fn next_f64(&mut self) -> Result<f64, RedisError> {
        self.next_arg()?.parse_float()
    }

    fn next_string(&mut self) -> Result<String, RedisError> {
        Ok(self.next_arg()?.try_as_str()?.to_owned())
    }

    fn done(&mut self) -> Result<(), RedisError> {
        match self.next() {
            None => Ok(()),
            Some(_) => Err(RedisError::WrongArity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_of_a_shared_argument_does_not_keep_its_buffer() {
        let buffer = Arc::new((0..100).collect::<Vec<u8>>());
        let argument = RedisString::shared(&buffer, 10..60);
        let kept = argument.clone();
        assert_eq!(kept, argument);
        drop(argument);
        assert_eq!(Arc::strong_count(&buffer), 1);
        assert_eq!(kept.as_slice(), &buffer[10..60]);
    }

    #[test]
    fn short_and_long_copies_are_the_same_strings() {
        use std::collections::HashSet;
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let copied = RedisString::copied(&bytes);
            let owned = RedisString::new(bytes.clone());
            assert_eq!(copied.as_slice(), &bytes[..]);
            assert_eq!(copied.len(), len);
            assert_eq!(copied, owned);
            assert_eq!(copied.cmp(&owned), Ordering::Equal);
            assert_eq!(HashSet::from([copied.clone()]), HashSet::from([owned]));
            assert_eq!(copied.clone().into_bytes(), bytes);
            assert_eq!(
                matches!(copied.0, Bytes::Inline(..)),
                len <= INLINE,
                "length {len}"
            );
        }
        assert!(RedisString::copied(b"a") < RedisString::new(b"b".to_vec()));
        assert_eq!(
            RedisString::from_i64(i64::MIN).as_slice(),
            b"-9223372036854775808"
        );
    }

    #[test]
    fn integers_format_as_decimal_inline_strings() {
        for value in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            100,
            123_456_789,
            -987_654_321_012,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ] {
            let string = RedisString::from_i64(value);
            assert_eq!(string.as_slice(), value.to_string().as_bytes());
            assert!(matches!(string.0, Bytes::Inline(..)), "{value}");
            assert_eq!(string.parse_integer(), Ok(value));
        }
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_redis_integer(b"0"), Some(0));
        assert_eq!(parse_redis_integer(b"-1"), Some(-1));
        assert_eq!(parse_redis_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_integer(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(
            parse_redis_integer(b"1000000000000000000"),
            Some(1_000_000_000_000_000_000)
        );
        for bad in [
            &b""[..],
            b"9223372036854775808",
            b"-9223372036854775809",
            b"01",
            b"-0",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"-",
            b"99999999999999999999999",
            b"9999999999999999999",
            b"-9999999999999999999",
            b"18446744073709551616",
            b"-10000000000000000000",
        ] {
            assert_eq!(
                parse_redis_integer(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn doubles_parse_like_redis() {
        assert_eq!(parse_redis_double(b"1.5"), Some(1.5));
        assert_eq!(parse_redis_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_redis_double(b"1e3"), Some(1000.0));
        for bad in [&b""[..], b" 1", b"nan", b"abc", b"1.5x"] {
            assert_eq!(parse_redis_double(bad), None);
        }
    }
}
