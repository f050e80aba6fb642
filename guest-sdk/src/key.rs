//! Low-level key access (`RedisModule_OpenKey` and the key APIs).
//!
//! Besides what the C API does, the host enforces: a key open for writing cannot be opened a
//! second time in the same command (nor a key open for reading then opened for writing — both
//! give [`KeyError::AlreadyOpen`]); keys are closed around every `call` and keyspace notification
//! and reopened on next use;
//! and a [`Key`] used after the command returned gives [`KeyError::Closed`].

use crate::datatype::{DataType, DataValue};
use crate::string::RedisString;
use crate::value::RedisError;
use crate::wit::redis::module::keys as wit;

pub use wit::{HashSetFlags, KeyType, ListWhere, ZaddFlags, ZaddOutcome};

/// Why a key operation failed.
pub type KeyError = wit::KeyError;

impl From<KeyError> for RedisError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::WrongType => RedisError::WrongType,
            KeyError::NotWritable => RedisError::Str("ERR the key is not open for writing"),
            KeyError::AlreadyOpen => RedisError::Str("ERR the key is already open in this command"),
            KeyError::Closed => RedisError::Str("ERR unknown or closed key handle"),
            KeyError::OutOfRange => RedisError::Str("ERR index out of range"),
            KeyError::Invalid(message) => RedisError::String(message),
            KeyError::NoRange => RedisError::Str("ERR no sorted set range is active"),
        }
    }
}

/// The no-expire value of [`Key::get_expire`] (`REDISMODULE_NO_EXPIRE`).
pub const NO_EXPIRE: i64 = -1;

/// An open key (`RedisModuleKey`). Closed when dropped: the host is told at the next
/// [`open_key`](crate::Context::open_key) or when the command returns (where it closes every
/// key anyway), whichever comes first, so the last key a command drops costs no call into the
/// host. Until then Redis keeps it open, as it keeps the keys a command holds: the host closes
/// every key around each `call`, keyspace notification and yield, where other code could change
/// the keyspace, and the dropped key still counts toward the handles a command may hold.
/// [`close`](Key::close) closes at once.
pub struct Key(pub(crate) wit::Key);

thread_local! {
    /// The key dropped last and not yet closed (see [`Key`]).
    static DROPPED: std::cell::Cell<Option<wit::Key>> = const { std::cell::Cell::new(None) };
}

/// Closes the key dropped last, if any: called before opening a key, which could conflict
/// with it (a key open for writing cannot be opened again).
pub(crate) fn close_dropped() {
    if let Some(key) = DROPPED.take() {
        wit::close_key(key);
    }
}

/// Forgets the key dropped last without closing it: called when a command starts, since the
/// host closed every key of the one before (and never gives a closed key's number again, so
/// closing it late would do nothing but cost a call).
pub(crate) fn forget_dropped() {
    DROPPED.set(None);
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Some(earlier) = DROPPED.replace(Some(self.0)) {
            wit::close_key(earlier);
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key")
    }
}

type Result<T> = std::result::Result<T, KeyError>;

impl Key {
    /// `RedisModule_CloseKey`, at once (dropping the key closes it later: see [`Key`]).
    pub fn close(self) {
        let key = std::mem::ManuallyDrop::new(self);
        wit::close_key(key.0);
    }

    /// `RedisModule_KeyType`: [`KeyType::Empty`] for a missing key.
    pub fn key_type(&self) -> Result<KeyType> {
        wit::type_of(self.0)
    }

    /// Whether the key is missing.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.key_type()? == KeyType::Empty)
    }

    /// `RedisModule_ValueLength`.
    pub fn value_length(&self) -> Result<usize> {
        wit::value_length(self.0).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `RedisModule_DeleteKey`.
    pub fn delete(&self) -> Result<()> {
        wit::delete(self.0)
    }

    /// `RedisModule_UnlinkKey`.
    pub fn unlink(&self) -> Result<()> {
        wit::unlink(self.0)
    }

    /// `RedisModule_GetExpire`: milliseconds left, or [`NO_EXPIRE`].
    pub fn get_expire(&self) -> Result<i64> {
        wit::get_expire(self.0)
    }

    /// `RedisModule_SetExpire`: milliseconds from now; [`NO_EXPIRE`] removes the expire.
    pub fn set_expire(&self, milliseconds: i64) -> Result<()> {
        wit::set_expire(self.0, milliseconds)
    }

    /// `RedisModule_GetAbsExpire`: Unix milliseconds, or [`NO_EXPIRE`].
    pub fn get_abs_expire(&self) -> Result<i64> {
        wit::get_abs_expire(self.0)
    }

    /// `RedisModule_SetAbsExpire`.
    pub fn set_abs_expire(&self, unix_milliseconds: i64) -> Result<()> {
        wit::set_abs_expire(self.0, unix_milliseconds)
    }

    /// `RedisModule_StringSet`.
    pub fn string_set(&self, value: impl AsRef<[u8]>) -> Result<()> {
        wit::string_set(self.0, value.as_ref())
    }

    /// The whole string value (empty for a missing key).
    pub fn string_get(&self) -> Result<RedisString> {
        wit::string_read(self.0, 0, u64::MAX).map(RedisString::from)
    }

    /// Reads `len` bytes at `offset` (the read half of `RedisModule_StringDMA`).
    pub fn string_read(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        wit::string_read(self.0, offset as u64, len as u64)
    }

    /// `RedisModule_ModuleTypeGetValue`: the key's value of `data_type` (`None` for an empty
    /// key; [`KeyError::WrongType`] for any other value).
    pub fn get_value(&self, data_type: &DataType) -> Result<Option<DataValue>> {
        Ok(
            wit::module_type_get_value(self.0, data_type.index()?)?.map(|v| DataValue {
                encoding_version: v.encoding_version,
                data: v.data,
            }),
        )
    }

    /// `RedisModule_ModuleTypeSetValue`: stores `data` as the key's value of `data_type`, with
    /// the type's encoding version. Replacing a value of the same type keeps the key's expire;
    /// any other value (or none) is replaced. Needs a key opened for writing.
    pub fn set_value(&self, data_type: &DataType, data: impl AsRef<[u8]>) -> Result<()> {
        wit::module_type_set_value(self.0, data_type.index()?, data.as_ref())
    }

    /// The name of the guest data type the key holds, if it holds one (any guest's).
    pub fn data_type_name(&self) -> Result<Option<String>> {
        wit::module_type_name(self.0)
    }

    /// Overwrites bytes at `offset` in place (the write half of `RedisModule_StringDMA`).
    pub fn string_write(&self, offset: usize, data: &[u8]) -> Result<()> {
        wit::string_write(self.0, offset as u64, data)
    }

    /// `RedisModule_StringTruncate`: shortens, or enlarges with zero bytes.
    pub fn string_truncate(&self, len: usize) -> Result<()> {
        wit::string_truncate(self.0, len as u64)
    }

    /// `RedisModule_ListPush`.
    pub fn list_push(&self, where_: ListWhere, value: impl AsRef<[u8]>) -> Result<()> {
        wit::list_push(self.0, where_, value.as_ref())
    }

    /// `RedisModule_ListPop`: `None` when the list is empty.
    pub fn list_pop(&self, where_: ListWhere) -> Result<Option<RedisString>> {
        wit::list_pop(self.0, where_).map(|v| v.map(RedisString::from))
    }

    /// `RedisModule_ListGet`.
    pub fn list_get(&self, index: i64) -> Result<RedisString> {
        wit::list_get(self.0, index).map(RedisString::from)
    }

    /// Up to `max` elements from index `start` on (negative counts from the tail; before the
    /// head starts at the head), in list order, in one crossing: what
    /// [`list_get`](Self::list_get) of each index gives, much faster. A batch also stops at the
    /// end and after about 1 MiB. To read a whole list, start at 0 and go on from
    /// `start + batch.len()` until a batch is empty (with a negative `start`, that sum can come
    /// back to 0 or below and read the same elements again).
    pub fn list_range(&self, start: i64, max: u32) -> Result<ListRangeBatch> {
        wit::list_range(self.0, start, max).map(ListRangeBatch)
    }

    /// `RedisModule_ListSet`.
    pub fn list_set(&self, index: i64, value: impl AsRef<[u8]>) -> Result<()> {
        wit::list_set(self.0, index, value.as_ref())
    }

    /// `RedisModule_ListInsert`.
    pub fn list_insert(&self, index: i64, value: impl AsRef<[u8]>) -> Result<()> {
        wit::list_insert(self.0, index, value.as_ref())
    }

    /// `RedisModule_ListDelete`.
    pub fn list_delete(&self, index: i64) -> Result<()> {
        wit::list_delete(self.0, index)
    }

    /// `RedisModule_ZsetAdd`.
    pub fn zset_add(
        &self,
        score: f64,
        member: impl AsRef<[u8]>,
        flags: ZaddFlags,
    ) -> Result<ZaddOutcome> {
        wit::zset_add(self.0, score, member.as_ref(), flags)
    }

    /// `RedisModule_ZsetIncrby`: the new score.
    pub fn zset_incrby(
        &self,
        increment: f64,
        member: impl AsRef<[u8]>,
        flags: ZaddFlags,
    ) -> Result<(f64, ZaddOutcome)> {
        wit::zset_incrby(self.0, increment, member.as_ref(), flags)
    }

    /// `RedisModule_ZsetScore`.
    pub fn zset_score(&self, member: impl AsRef<[u8]>) -> Result<Option<f64>> {
        wit::zset_score(self.0, member.as_ref())
    }

    /// `RedisModule_ZsetRem`: whether it was removed.
    pub fn zset_rem(&self, member: impl AsRef<[u8]>) -> Result<bool> {
        wit::zset_rem(self.0, member.as_ref())
    }

    /// `RedisModule_ZsetFirstInScoreRange`.
    pub fn zset_first_in_score_range(
        &self,
        min: f64,
        max: f64,
        min_exclusive: bool,
        max_exclusive: bool,
    ) -> Result<()> {
        wit::zset_first_in_score_range(self.0, min, max, min_exclusive, max_exclusive)
    }

    /// `RedisModule_ZsetLastInScoreRange`.
    pub fn zset_last_in_score_range(
        &self,
        min: f64,
        max: f64,
        min_exclusive: bool,
        max_exclusive: bool,
    ) -> Result<()> {
        wit::zset_last_in_score_range(self.0, min, max, min_exclusive, max_exclusive)
    }

    /// `RedisModule_ZsetFirstInLexRange` (`[a`, `(a`, `-`, `+` bounds).
    pub fn zset_first_in_lex_range(
        &self,
        min: impl AsRef<[u8]>,
        max: impl AsRef<[u8]>,
    ) -> Result<()> {
        wit::zset_first_in_lex_range(self.0, min.as_ref(), max.as_ref())
    }

    /// `RedisModule_ZsetLastInLexRange`.
    pub fn zset_last_in_lex_range(
        &self,
        min: impl AsRef<[u8]>,
        max: impl AsRef<[u8]>,
    ) -> Result<()> {
        wit::zset_last_in_lex_range(self.0, min.as_ref(), max.as_ref())
    }

    /// `RedisModule_ZsetRangeCurrentElement`: member and score.
    pub fn zset_range_current_element(&self) -> Result<Option<(RedisString, f64)>> {
        wit::zset_range_current_element(self.0).map(|e| e.map(|(m, s)| (RedisString::from(m), s)))
    }

    /// `RedisModule_ZsetRangeNext`.
    pub fn zset_range_next(&self) -> Result<bool> {
        wit::zset_range_next(self.0)
    }

    /// Up to `max` elements from the range's current position on, moving past them, in one
    /// crossing: what repeated [`zset_range_current_element`](Self::zset_range_current_element)
    /// and [`zset_range_next`](Self::zset_range_next) give, much faster. Empty once the end is
    /// reached.
    pub fn zset_range_next_batch(&self, max: u32) -> Result<ZsetRangeBatch> {
        wit::zset_range_next_batch(self.0, max).map(ZsetRangeBatch)
    }

    /// `RedisModule_ZsetRangePrev`.
    pub fn zset_range_prev(&self) -> Result<bool> {
        wit::zset_range_prev(self.0)
    }

    /// `RedisModule_ZsetRangeEndReached`.
    pub fn zset_range_end_reached(&self) -> Result<bool> {
        wit::zset_range_end_reached(self.0)
    }

    /// `RedisModule_ZsetRangeStop`.
    pub fn zset_range_stop(&self) {
        wit::zset_range_stop(self.0);
    }

    /// `RedisModule_HashSet`: sets fields, deletes those whose value is `None`.
    pub fn hash_set(&self, flags: HashSetFlags, fields: &[(&[u8], Option<&[u8]>)]) -> Result<u64> {
        wit::hash_set(self.0, flags, fields)
    }

    /// `RedisModule_HashGet`.
    pub fn hash_get(&self, fields: &[&[u8]]) -> Result<Vec<Option<RedisString>>> {
        wit::hash_get(self.0, fields).map(|values| {
            values
                .into_iter()
                .map(|v| v.map(RedisString::from))
                .collect()
        })
    }

    /// `RedisModule_HashGet` with `REDISMODULE_HASH_EXISTS`.
    pub fn hash_exists(&self, fields: &[&[u8]]) -> Result<Vec<bool>> {
        wit::hash_exists(self.0, fields)
    }

    /// The next entries of this key's scan (`RedisModule_ScanKey`, with a cursor the key
    /// keeps): up to `max` fields of a hash with their values, members of a set, or members of
    /// a sorted set with their scores as text, in one crossing (a batch also stops after about
    /// 1 MiB). As with `HSCAN`/`SSCAN`/`ZSCAN`, the order is unspecified, an entry present for
    /// the whole scan comes at least once (again if the table was resized), and writes between
    /// batches are allowed. An empty key gives one empty batch that [`is_done`]. Go on until a
    /// batch [`is_done`] (a batch may be empty before that); [`scan_restart`](Self::scan_restart)
    /// starts over. A `max` of 0 is taken as 1 (a scan reading nothing would never be done).
    ///
    /// ```no_run
    /// # use redis_wasm_sdk::{Context, RedisResult, RedisString, RedisValue, parse_integer};
    /// fn hsum(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    ///     let key = ctx.open_key(&args[1])?;
    ///     let mut sum: i64 = 0;
    ///     loop {
    ///         let batch = key.scan(128)?;
    ///         for (_field, value) in batch.iter() {
    ///             sum += parse_integer(value)?;
    ///         }
    ///         if batch.is_done() {
    ///             return Ok(RedisValue::Integer(sum));
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// [`is_done`]: ScanBatch::is_done
    pub fn scan(&self, max: u32) -> Result<ScanBatch> {
        wit::scan_key(self.0, max.max(1)).map(ScanBatch)
    }

    /// Starts this key's [`scan`](Self::scan) over (`RedisModule_ScanCursorRestart`).
    pub fn scan_restart(&self) {
        wit::scan_key_restart(self.0)
    }
}

/// Entries of a hash, set or sorted set, from [`Key::scan`].
pub struct ScanBatch(wit::ScanBatch);

impl ScanBatch {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.field_ends.len()
    }

    /// Whether the batch has no entries (which does not mean the scan is complete).
    pub fn is_empty(&self) -> bool {
        self.0.field_ends.is_empty()
    }

    /// Whether the scan is complete: no entries follow this batch.
    pub fn is_done(&self) -> bool {
        self.0.done
    }

    /// The entries: a hash field and its value, a sorted-set member and its score as text
    /// (parse it with [`parse_float`](crate::parse_float)), or a set member and an empty value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        split_at_ends(&self.0.fields, &self.0.field_ends)
            .zip(split_at_ends(&self.0.values, &self.0.value_ends))
    }
}

/// Elements of a list, from [`Key::list_range`].
pub struct ListRangeBatch(wit::ListRangeBatch);

impl ListRangeBatch {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.0.ends.len()
    }

    /// Whether there were no elements from the start index on.
    pub fn is_empty(&self) -> bool {
        self.0.ends.is_empty()
    }

    /// The elements, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        split_at_ends(&self.0.elements, &self.0.ends)
    }
}

/// Elements of a sorted-set range, from [`Key::zset_range_next_batch`].
pub struct ZsetRangeBatch(wit::ZsetRangeBatch);

impl ZsetRangeBatch {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.0.scores.len()
    }

    /// Whether the range had no more elements.
    pub fn is_empty(&self) -> bool {
        self.0.scores.is_empty()
    }

    /// The scores, in range order.
    pub fn scores(&self) -> &[f64] {
        &self.0.scores
    }

    /// The members and their scores, in range order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], f64)> {
        split_at_ends(&self.0.members, &self.0.ends).zip(self.0.scores.iter().copied())
    }
}

/// The pieces of `bytes` ending at each offset of `ends` (a batch's layout).
pub(crate) fn split_at_ends<'a>(
    bytes: &'a [u8],
    ends: &'a [u32],
) -> impl Iterator<Item = &'a [u8]> {
    piece_ranges(ends).map(|range| bytes.get(range).unwrap_or_default())
}

/// The ranges of the pieces ending at each offset of `ends`.
pub(crate) fn piece_ranges(ends: &[u32]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let starts = std::iter::once(0).chain(ends.iter().map(|&end| end as usize));
    starts.zip(ends).map(|(start, &end)| start..end as usize)
}
