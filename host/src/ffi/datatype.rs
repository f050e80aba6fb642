//! Guest data types: Redis module types whose values the host owns as bytes.
//!
//! A guest declares a type by name; the host registers it with Redis (`RedisModule_CreateDataType`)
//! once, and every value of it is a [`TypeValue`]: the guest's encoding version and the bytes the
//! guest stored. The type callbacks (RDB load and save, AOF rewrite, digest, memory usage, free,
//! copy) are the host's and work on those bytes, so values never depend on a guest instance —
//! they survive traps, restarts, `WASM.UNLOAD` and upgrades, and persist even while no guest
//! owns the type. See `docs/data-types.md`.

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use redis_module::raw;

use super::keys::RawKey;
use super::rdb::Io;
use super::{Ctx, OK, catch};

/// The envelope version the host writes for every value (Redis's `encver` of the type). The
/// guest's own encoding version travels inside it.
const ENVELOPE_VERSION: c_int = 0;

/// A registered guest data type. Registered types live as long as the server.
#[derive(Debug)]
pub struct GuestType {
    pub name: String,
    ptr: NonNull<raw::RedisModuleType>,
    /// Registered for a load that then failed (another of its types was refused): Redis cannot
    /// unregister a type, so the host treats it as unregistered — unknown to `find_type`, left
    /// out of the RDB's guest record, its values refused (a `RESTORE` replicas and the AOF would
    /// refuse) — until a registration claims it again.
    withdrawn: AtomicBool,
}

// SAFETY: the type pointer is only passed to Redis under its global lock; Redis never frees it
// while the module is loaded.
unsafe impl Send for GuestType {}
// SAFETY: as above; the struct is read-only after registration but for an atomic flag.
unsafe impl Sync for GuestType {}

/// The value of a key of a guest type.
#[derive(Clone, Debug)]
pub struct TypeValue {
    pub ty: &'static GuestType,
    /// The guest's encoding version when it stored `data`.
    pub encver: i32,
    pub data: Vec<u8>,
}

/// Most types one server can register in its life.
const MAX_TYPES: usize = 1024;

/// Every type registered in this server's life, in registration order. Append-only and
/// lock-free: only the main thread appends, and readers include a BGSAVE child, which could
/// never take a lock that another thread held when Redis forked.
static TYPES: [OnceLock<&'static GuestType>; MAX_TYPES] = [const { OnceLock::new() }; MAX_TYPES];
static TYPE_COUNT: AtomicUsize = AtomicUsize::new(0);

fn types() -> impl Iterator<Item = &'static GuestType> {
    let count = TYPE_COUNT.load(Ordering::Acquire);
    TYPES[..count].iter().filter_map(|slot| slot.get().copied())
}

/// The registered types, but withdrawn ones.
fn types_in_use() -> impl Iterator<Item = &'static GuestType> {
    types().filter(|t| !t.withdrawn.load(Ordering::Relaxed))
}

/// The registered type of this name.
pub fn find_type(name: &str) -> Option<&'static GuestType> {
    types_in_use().find(|t| t.name == name)
}

/// The names of every registered type, in registration order.
pub fn type_names() -> Vec<String> {
    types_in_use().map(|t| t.name.clone()).collect()
}

/// Whether `name` can name a guest's Redis module type: exactly 9 characters of
/// `A-Z a-z 0-9 - _`, and not the host's own type's name (Redis 7.0 lets a module register a
/// name twice while it loads, and then finds either type by it: keys and the guest record
/// would be read with each other's loaders).
pub fn check_type_name(name: &str) -> Result<(), String> {
    if name == super::rdb::GUEST_RECORD_TYPE {
        return Err(format!(
            "data type name '{name}' is taken: it is the host's own (its record of the guests)"
        ));
    }
    if name.len() != 9
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "data type name '{}' must be exactly 9 characters of A-Z, a-z, 0-9, '-' and '_'",
            crate::ffi::shown(name.as_bytes())
        ));
    }
    Ok(())
}

/// The value behind a module-type pointer of one of our types.
///
/// # Safety
/// `value` must be a pointer this module returned for one of its guest types.
unsafe fn value_ref<'a>(value: *mut c_void) -> Option<&'a mut TypeValue> {
    // SAFETY: per the contract, a live Box<TypeValue> we leaked.
    unsafe { value.cast::<TypeValue>().as_mut() }
}

/// A type's `rdb_load` callback.
type RdbLoad = extern "C" fn(*mut raw::RedisModuleIO, c_int) -> *mut c_void;

/// Registration slots are numbered `row * 32 + column`; each slot has its own `rdb_load`.
const SLOT_COLUMNS: usize = 32;

/// `rdb_load` for the type registered in slot `ROW * 32 + COLUMN`. Redis does not tell a load
/// callback which type it loads (the type's id is in the payload before the value, and
/// `RESTORE` takes any payload with a valid checksum), so each type has its own instance of the
/// callback, and a value whose envelope names another type than the one Redis loads is refused
/// rather than stored under the wrong type.
extern "C" fn rdb_load_slot<const ROW: usize, const COLUMN: usize>(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    rdb_load(ROW * SLOT_COLUMNS + COLUMN, rdb, encver)
}

/// The load callbacks of every slot: `slot_table!(rows; columns)`.
macro_rules! slot_table {
    ($($row:literal)*; $columns:tt) => {
        [$(slot_table!(@row $row $columns)),*]
    };
    (@row $row:literal ($($column:literal)*)) => {
        [$(rdb_load_slot::<$row, $column> as RdbLoad),*]
    };
}

/// The load callback of every registration slot.
#[rustfmt::skip]
static RDB_LOADERS: [[RdbLoad; SLOT_COLUMNS]; MAX_TYPES / SLOT_COLUMNS] = slot_table!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31;
    (0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
);

fn rdb_load(slot: usize, rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    let Some(io) = NonNull::new(rdb).map(Io) else {
        return ptr::null_mut();
    };
    let loaded = catch("loading a guest data type value", || {
        if encver != ENVELOPE_VERSION {
            return None;
        }
        let ty = *TYPES.get(slot)?.get()?;
        if ty.withdrawn.load(Ordering::Relaxed) {
            super::log_host(
                super::LogLevel::Warning,
                &format!(
                    "refused a value of data type '{}': the type was registered for a load that failed, which replicas and the AOF know nothing of",
                    ty.name
                ),
            );
            return None;
        }
        // The envelope names the type as well (the format dates from one callback for all
        // types); it must name the type Redis is loading. Said in the log, which Redis's own
        // message ("Bad data format", or a failed RDB load) points to.
        let named = io.load_bytes()?;
        if named != ty.name.as_bytes() {
            super::log_host(
                super::LogLevel::Warning,
                &format!(
                    "refused a value of data type '{}' whose envelope names the type '{}'",
                    ty.name,
                    super::shown(&named)
                ),
            );
            return None;
        }
        let guest_encver = i32::try_from(io.load_unsigned()?).ok()?;
        let data = io.load_bytes()?;
        Some(TypeValue {
            ty,
            encver: guest_encver,
            data,
        })
    })
    .flatten();
    match loaded {
        Some(value) => Box::into_raw(Box::new(value)).cast(),
        None => ptr::null_mut(),
    }
}

extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(io) = NonNull::new(rdb).map(Io) else {
        return;
    };
    catch("saving a guest data type value", || {
        // SAFETY: Redis passes a value of this type.
        if let Some(value) = unsafe { value_ref(value) } {
            io.save_bytes(value.ty.name.as_bytes());
            io.save_unsigned(value.encver as u64);
            io.save_bytes(&value.data);
        }
    });
}

extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    catch("rewriting a guest data type value to the AOF", || {
        // SAFETY: Redis passes a value of this type.
        let Some(value) = (unsafe { value_ref(value) }) else {
            return;
        };
        let encver = i64::from(value.encver);
        let name = CString::new(value.ty.name.as_str()).unwrap_or_default();
        // SAFETY: valid AOF IO and key string; format "sclb": the key, the type name, the
        // encoding version and the bytes, all alive for the call. The emitted command is the
        // one that restores a value (see `commands::wasm_setvalue`).
        unsafe {
            api!(RedisModule_EmitAOF)(
                aof,
                c"WASM.SETVALUE".as_ptr(),
                c"sclb".as_ptr(),
                key,
                name.as_ptr(),
                encver,
                value.data.as_ptr().cast::<c_char>(),
                value.data.len(),
            )
        };
    });
}

extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: Redis passes a value of this type.
    match unsafe { value.cast::<TypeValue>().as_ref() } {
        Some(v) => std::mem::size_of::<TypeValue>() + v.data.capacity(),
        None => 0,
    }
}

extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    catch("digesting a guest data type value", || {
        // SAFETY: Redis passes a value of this type and a live digest.
        unsafe {
            let Some(value) = value_ref(value) else {
                return;
            };
            // The type too: two servers must not digest alike when a key's type differs.
            let name = &value.ty.name;
            api!(RedisModule_DigestAddStringBuffer)(md, name.as_ptr().cast::<c_char>(), name.len());
            api!(RedisModule_DigestAddLongLong)(md, i64::from(value.encver));
            api!(RedisModule_DigestAddStringBuffer)(
                md,
                value.data.as_ptr().cast::<c_char>(),
                value.data.len(),
            );
            api!(RedisModule_DigestEndSequence)(md);
        }
    });
}

extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        catch("freeing a guest data type value", || {
            // SAFETY: a Box<TypeValue> this module leaked; Redis frees each value once.
            drop(unsafe { Box::from_raw(value.cast::<TypeValue>()) })
        });
    }
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    let copied = catch("copying a guest data type value", || {
        // SAFETY: Redis passes a value of this type.
        unsafe { value.cast::<TypeValue>().as_ref() }.cloned()
    })
    .flatten();
    match copied {
        Some(v) => Box::into_raw(Box::new(v)).cast(),
        None => ptr::null_mut(),
    }
}

impl Ctx {
    /// Registers with Redis the types of `names` it does not know yet: all of them, or none (a
    /// refused one withdraws those registered before it, see [`GuestType`]).
    pub fn register_guest_types<'a>(
        self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        let mut new: Vec<&str> = names
            .into_iter()
            .filter(|name| find_type(name).is_none())
            .collect();
        new.sort_unstable();
        new.dedup();
        let unregistered = new
            .iter()
            .filter(|name| types().all(|t| t.name != **name))
            .count();
        if let Some(name) = new.first()
            && TYPE_COUNT.load(Ordering::Acquire) + unregistered > MAX_TYPES
        {
            return Err(format!(
                "cannot register data type '{name}': this server already has {MAX_TYPES}"
            ));
        }
        let mut registered = Vec::with_capacity(new.len());
        for name in new {
            match self.register_guest_type(name) {
                Ok(ty) => registered.push(ty),
                Err(why) => {
                    for ty in registered {
                        ty.withdrawn.store(true, Ordering::Relaxed);
                    }
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    /// The type of this name, registering it with Redis if needed. Redis 7.0 accepts new types
    /// at any time; 7.2+ only while the module loads (`OnLoad`), which is why types can be
    /// reserved with the `TYPE` module argument.
    pub fn register_guest_type(self, name: &str) -> Result<&'static GuestType, String> {
        check_type_name(name)?;
        if let Some(ty) = types().find(|t| t.name == name) {
            ty.withdrawn.store(false, Ordering::Relaxed);
            return Ok(ty);
        }
        let count = TYPE_COUNT.load(Ordering::Acquire);
        if count >= MAX_TYPES {
            return Err(format!(
                "cannot register data type '{name}': this server already has {MAX_TYPES}"
            ));
        }
        let mut methods = raw::RedisModuleTypeMethods {
            version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
            rdb_load: Some(RDB_LOADERS[count / SLOT_COLUMNS][count % SLOT_COLUMNS]),
            rdb_save: Some(rdb_save),
            aof_rewrite: Some(aof_rewrite),
            mem_usage: Some(mem_usage),
            digest: Some(digest),
            free: Some(free),
            aux_load: None,
            aux_save: None,
            aux_save_triggers: 0,
            free_effort: None,
            unlink: None,
            copy: Some(copy),
            defrag: None,
            mem_usage2: None,
            free_effort2: None,
            unlink2: None,
            copy2: None,
            aux_save2: None,
        };
        let c_name = CString::new(name).map_err(|_| "a type name cannot contain NUL".to_owned())?;
        // SAFETY: valid context of this module; Redis copies the methods and the name.
        let ptr = unsafe {
            api!(RedisModule_CreateDataType)(
                self.0.as_ptr(),
                c_name.as_ptr(),
                ENVELOPE_VERSION,
                &mut methods,
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            format!(
                "Redis refused to register data type '{name}' (another module owns the name, or \
                 this Redis only accepts types while the host loads: reserve it with the module \
                 argument TYPE {name})"
            )
        })?;
        let ty: &'static GuestType = Box::leak(Box::new(GuestType {
            name: name.to_owned(),
            ptr,
            withdrawn: AtomicBool::new(false),
        }));
        // Only the main thread registers (it needs a command's context), so `count` is still
        // the first free slot.
        let _ = TYPES[count].set(ty);
        TYPE_COUNT.store(count + 1, Ordering::Release);
        Ok(ty)
    }
}

/// What a key holds, seen as a guest type value.
pub enum KeyValue<'k> {
    Empty,
    /// A value of one of the guest types.
    Guest(&'k mut TypeValue),
    /// Something else: another type, or another module's value.
    Other,
}

impl RawKey {
    /// The key's value as a guest type value.
    pub fn guest_value(&mut self) -> KeyValue<'_> {
        match self.key_type() {
            raw::REDISMODULE_KEYTYPE_EMPTY => return KeyValue::Empty,
            raw::REDISMODULE_KEYTYPE_MODULE => {}
            _ => return KeyValue::Other,
        }
        // SAFETY: an open key holding a module value.
        let ty = unsafe { api!(RedisModule_ModuleTypeGetType)(self.as_ptr()) };
        if !types().any(|t| t.ptr.as_ptr() == ty) {
            return KeyValue::Other;
        }
        // SAFETY: the value of one of our types is a Box<TypeValue> we own, alive while the key
        // is open and unchanged; the borrow is tied to `self`.
        match unsafe { value_ref(api!(RedisModule_ModuleTypeGetValue)(self.as_ptr())) } {
            Some(value) => KeyValue::Guest(value),
            None => KeyValue::Other,
        }
    }

    /// The guest type name of the key's value (`None` for anything else).
    pub fn guest_type_name(&mut self) -> Option<String> {
        match self.guest_value() {
            KeyValue::Guest(value) => Some(value.ty.name.clone()),
            _ => None,
        }
    }

    /// Stores `value` in the key (open for writing): in place when the key already holds a
    /// value of the same type (keeping its expire, as a C module changing its value does),
    /// otherwise replacing whatever the key held (`RedisModule_ModuleTypeSetValue`).
    pub fn set_guest_value(&mut self, value: TypeValue) -> bool {
        if let KeyValue::Guest(current) = self.guest_value()
            && std::ptr::eq(current.ty, value.ty)
        {
            *current = value;
            return true;
        }
        let ty = value.ty.ptr.as_ptr();
        let boxed = Box::into_raw(Box::new(value));
        // SAFETY: an open key (Redis checks the write mode) and a value Redis then owns and
        // frees with `free`.
        let status =
            unsafe { api!(RedisModule_ModuleTypeSetValue)(self.as_ptr(), ty, boxed.cast()) };
        if status != OK {
            // SAFETY: Redis did not take the value.
            drop(unsafe { Box::from_raw(boxed) });
            return false;
        }
        true
    }
}
