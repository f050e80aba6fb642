//! The RDB side: a module data type whose only job is the aux record carrying the guests.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::{self, NonNull};

use redis_module::raw;

use super::{Ctx, LogLevel, OK, catch, log_host};

/// The module IO of an aux callback.
pub struct Io(pub(super) NonNull<raw::RedisModuleIO>);

impl Io {
    pub fn save_unsigned(&self, value: u64) {
        // SAFETY: valid IO for this callback.
        unsafe { api!(RedisModule_SaveUnsigned)(self.0.as_ptr(), value) };
    }

    pub fn save_bytes(&self, bytes: &[u8]) {
        // SAFETY: valid IO; Redis copies `len` bytes.
        unsafe {
            api!(RedisModule_SaveStringBuffer)(
                self.0.as_ptr(),
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
    }

    /// `None` on a read error (short read, corrupt data).
    pub fn load_unsigned(&self) -> Option<u64> {
        // SAFETY: valid IO; with HANDLE_IO_ERRORS set, errors are flagged, not fatal.
        let value = unsafe { api!(RedisModule_LoadUnsigned)(self.0.as_ptr()) };
        (!self.error()).then_some(value)
    }

    pub fn load_bytes(&self) -> Option<Vec<u8>> {
        let mut len = 0usize;
        // SAFETY: valid IO; the buffer is allocated with RedisModule_Alloc and freed below.
        unsafe {
            let p = api!(RedisModule_LoadStringBuffer)(self.0.as_ptr(), &mut len);
            if self.error() || p.is_null() {
                return None;
            }
            let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec();
            api!(RedisModule_Free)(p.cast::<c_void>());
            Some(bytes)
        }
    }

    fn error(&self) -> bool {
        // SAFETY: valid IO.
        unsafe { api!(RedisModule_IsIOError)(self.0.as_ptr()) != 0 }
    }

    /// The context of the loading or saving operation.
    pub fn ctx(&self) -> Option<Ctx> {
        // SAFETY: valid IO; the context lives as long as the IO.
        NonNull::new(unsafe { api!(RedisModule_GetContextFromIO)(self.0.as_ptr()) }).map(Ctx)
    }
}

/// What the aux record does: write the guests, and read them back (false = the RDB load fails).
pub struct AuxHandlers {
    /// Whether there is anything to save (Redis 7.2+ then writes no aux record at all).
    pub has_data: fn() -> bool,
    pub save: fn(&Io),
    /// Writes a record holding only the data types (when `save` failed before writing
    /// anything): the keys after it need them to load; the guests are lost from this RDB.
    pub save_types_only: fn(&Io),
    /// The guest count that says the guests could not be saved; if `save_types_only` fails
    /// too, the record is that count and no data types.
    pub guests_not_saved: u64,
    pub load: fn(&Io, encver: i32) -> bool,
}

static AUX: std::sync::OnceLock<AuxHandlers> = std::sync::OnceLock::new();

extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, _when: c_int) {
    let (Some(io), Some(handlers)) = (NonNull::new(rdb).map(Io), AUX.get()) else {
        return;
    };
    if catch("saving guests to the RDB", || (handlers.save)(&io)).is_none() {
        // The save handler prepares everything before its first write, so a failure means
        // nothing was written. Redis 7.0 gives no way to fail the save from here, so keep the
        // RDB loadable: its keys need their data types registered before them.
        log_host(
            LogLevel::Warning,
            "the guests could not be saved in this RDB (see above): it holds only the \
             guest data types, so its keys load; load the guests again after loading it",
        );
        // That prepares before writing too; if it fails as well, a record without guests and
        // types, which cannot.
        if catch("saving the guest data types to the RDB", || {
            (handlers.save_types_only)(&io)
        })
        .is_none()
        {
            io.save_unsigned(handlers.guests_not_saved);
            io.save_unsigned(0);
        }
    }
}

/// Redis 7.2+: an aux record is written only if this writes something.
extern "C" fn aux_save2(rdb: *mut raw::RedisModuleIO, when: c_int) {
    let has_data = catch("checking for guests to save", || {
        AUX.get().is_some_and(|handlers| (handlers.has_data)())
    });
    if has_data.unwrap_or(true) {
        aux_save(rdb, when);
    }
}

extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    let (Some(io), Some(handlers)) = (NonNull::new(rdb).map(Io), AUX.get()) else {
        return super::ERR;
    };
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return OK;
    }
    match catch("loading guests from the RDB", || {
        (handlers.load)(&io, encver)
    }) {
        Some(true) => OK,
        _ => super::ERR,
    }
}

/// Returns 0, the length of a value of this type: there never is one.
extern "C" fn no_value_load(_rdb: *mut raw::RedisModuleIO, _encver: c_int) -> *mut c_void {
    ptr::null_mut()
}

extern "C" fn no_value_save(_rdb: *mut raw::RedisModuleIO, _value: *mut c_void) {}

extern "C" fn no_value_free(_value: *mut c_void) {}

/// The name of the host's own data type, which carries the guest record.
pub const GUEST_RECORD_TYPE: &str = "wasmguest";
const GUEST_RECORD_TYPE_C: &std::ffi::CStr = c"wasmguest";

impl Ctx {
    /// Registers the `wasmguest` data type, used only for its aux record (saved before the keys,
    /// so guests exist before any key that needs them). Also asks Redis to report RDB read
    /// errors to us instead of panicking.
    pub fn register_guest_aux(self, encver: i32, handlers: AuxHandlers) -> bool {
        let _ = AUX.set(handlers);
        // SAFETY: valid OnLoad context; the option only changes how IO errors are reported.
        unsafe {
            api!(RedisModule_SetModuleOptions)(
                self.0.as_ptr(),
                raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS as c_int,
            )
        };
        let mut methods = raw::RedisModuleTypeMethods {
            // Version 5: Redis 7.2+ uses `aux_save2`, which writes nothing when there is nothing
            // to save; 7.0 reads the fields it knows and uses `aux_save`.
            version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
            rdb_load: Some(no_value_load),
            rdb_save: Some(no_value_save),
            aof_rewrite: None,
            mem_usage: None,
            digest: None,
            free: Some(no_value_free),
            aux_load: Some(aux_load),
            aux_save: Some(aux_save),
            aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as c_int,
            free_effort: None,
            unlink: None,
            copy: None,
            defrag: None,
            mem_usage2: None,
            free_effort2: None,
            unlink2: None,
            copy2: None,
            aux_save2: Some(aux_save2),
        };
        // SAFETY: valid OnLoad context; Redis copies the methods; the name is 9 characters.
        let ty = unsafe {
            api!(RedisModule_CreateDataType)(
                self.0.as_ptr(),
                GUEST_RECORD_TYPE_C.as_ptr(),
                encver,
                &mut methods,
            )
        };
        !ty.is_null()
    }
}
