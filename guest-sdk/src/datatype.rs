//! Guest data types (`RedisModule_CreateDataType`): values of your own type in Redis keys.
//!
//! Declare a type as a `static`, list it in [`redis_module!`](crate::redis_module)'s
//! `data_types`, and read and write its values through [`Key::get_value`](crate::Key::get_value)
//! and [`Key::set_value`](crate::Key::set_value). A value is the bytes your guest encodes; the
//! host stores them with the type's encoding version and does everything Redis needs with them
//! (RDB, AOF rewrite, replication, `DEBUG DIGEST`, `MEMORY USAGE`, `COPY`), so values outlive any
//! instance of the guest.
//!
//! ```no_run
//! use redis_wasm_sdk::DataType;
//!
//! static COUNTERS: DataType = DataType::new("counters1", 0);
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use crate::key::KeyError;

const UNREGISTERED: u32 = u32::MAX;

/// A data type: a name of exactly 9 characters (`A-Z a-z 0-9 - _`) and the encoding version of
/// the values this guest writes.
#[derive(Debug)]
pub struct DataType {
    name: &'static str,
    encoding_version: i32,
    index: AtomicU32,
}

impl DataType {
    /// A type to register in init (list it in `redis_module!`'s `data_types`).
    pub const fn new(name: &'static str, encoding_version: i32) -> Self {
        DataType {
            name,
            encoding_version,
            index: AtomicU32::new(UNREGISTERED),
        }
    }

    /// The type's name, as `TYPE` shows it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The encoding version new values are written with.
    pub fn encoding_version(&self) -> i32 {
        self.encoding_version
    }

    pub(crate) fn set_index(&self, index: u32) {
        self.index.store(index, Ordering::Relaxed);
    }

    pub(crate) fn index(&self) -> Result<u32, KeyError> {
        match self.index.load(Ordering::Relaxed) {
            UNREGISTERED => Err(KeyError::Invalid(format!(
                "ERR data type '{}' was not registered in init (list it in redis_module!'s \
                 data_types, or call InitContext::create_data_type)",
                self.name
            ))),
            index => Ok(index),
        }
    }
}

/// A stored value of a data type: the encoding version it was written with and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataValue {
    /// The encoding version of the guest that stored it (older values keep theirs until
    /// rewritten, so a new guest version can convert them).
    pub encoding_version: i32,
    /// The encoded value.
    pub data: Vec<u8>,
}
