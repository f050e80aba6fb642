//! Glue between the WIT exports and the guest author's functions.
//!
//! [`redis_module!`](crate::redis_module) implements the `guest`, `packed-arguments` and
//! `word-arguments` exports by calling [`init`], [`invoke`], [`invoke_packed`] and
//! [`invoke_words`] here. The command table lives in a thread-local: a guest instance is
//! single-threaded and the host never enters it twice at once.
#![allow(missing_docs)] // macro support, hidden from the docs

use std::cell::{Cell, RefCell};

use crate::context::Context;
use crate::init::{CommandFunction, CommandHandler, FunctionPointer, InitContext, InitFn};
use crate::string::RedisString;
use crate::value::{ERRORMSG_WRONGTYPE, RedisError, RedisValue};
use crate::wit::redis::module::{log, registration, reply};

/// A module as [`redis_module!`](crate::redis_module) declares it.
pub struct ModuleDef {
    pub name: &'static str,
    pub version: i32,
    pub init: Option<InitFn>,
    pub data_types: Vec<&'static crate::DataType>,
    pub commands: Vec<CommandDef>,
}

/// One row of the `commands` list.
pub struct CommandDef {
    pub name: &'static str,
    pub handler: CommandHandler,
    pub flags: &'static str,
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub arity: i32,
}

/// The form of a command function `F`, for `redis_module!`'s rows (`form_of(&f).handler(f)`):
/// once the compiler knows the form, it turns a function item into a pointer of that form,
/// which it cannot do for a generic `F`. Called through a pointer, the function stays a
/// function of its own, named in profiles (`wasm.perf-map`), rather than being compiled into
/// the SDK's glue, and is called with one indirection.
pub struct CommandForm<F, Form>(std::marker::PhantomData<(F, Form)>);

pub fn form_of<Form, F: CommandFunction<Form>>(_: &F) -> CommandForm<F, Form> {
    CommandForm(std::marker::PhantomData)
}

impl<Form, F: CommandFunction<Form>> CommandForm<F, Form> {
    pub fn handler(self, function: F::Pointer) -> CommandHandler {
        function.into_handler()
    }
}

struct Handler {
    /// The lowercase name, passed to the command function as `args[0]` (kept for the life of
    /// the instance, so each call borrows it instead of copying it).
    name_bytes: &'static [u8],
    function: CommandHandler,
}

/// A spare argument vector holding more than this many arguments is dropped rather than kept.
const SPARE_ARGUMENTS_UP_TO: usize = 1024;

thread_local! {
    static HANDLERS: RefCell<Vec<Handler>> = const { RefCell::new(Vec::new()) };
    /// The argument vector commands that borrow their arguments ([`crate::CommandSliceFn`])
    /// get, emptied after each: no allocation per command.
    static SPARE_ARGUMENTS: Cell<Vec<RedisString>> = const { Cell::new(Vec::new()) };
    /// The guest's name and the running command's, for messages the SDK itself sends.
    static RUNNING: Cell<(&'static str, &'static [u8])> = const { Cell::new(("", b"")) };
}

/// A bad-reply error in the host's words (`guest.rs`, "sent a bad reply"), for a mistake the
/// SDK finds before the host could. Keep the two alike.
pub(crate) fn bad_reply(why: &str) -> String {
    let (guest, command) = RUNNING.get();
    format!(
        "ERR guest '{guest}' command '{}' sent a bad reply: {why}",
        String::from_utf8_lossy(command)
    )
}

fn unregistered(_: &Context, _: &[RedisString]) -> crate::RedisResult {
    Err(RedisError::Str("ERR command slot not registered"))
}

pub(crate) fn add_handler(index: u32, name: &str, function: CommandHandler) {
    HANDLERS.with_borrow_mut(|handlers| {
        let index = index as usize;
        if handlers.len() <= index {
            handlers.resize_with(index + 1, || Handler {
                name_bytes: &[],
                function: CommandHandler::BorrowedPointer(unregistered),
            });
        }
        handlers[index] = Handler {
            name_bytes: name.to_ascii_lowercase().into_bytes().leak(),
            function,
        };
    });
}

/// Sends panic messages to the host so the client's error reply can carry them.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(non-string panic payload)");
        let text = match info.location() {
            Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
            None => message.to_owned(),
        };
        log::report_panic(&text);
    }));
}

/// The `guest.init` export.
pub fn init(def: ModuleDef, args: Vec<Vec<u8>>) -> Result<(), String> {
    install_panic_hook();
    RUNNING.set((def.name, b""));
    registration::init_module(def.name, def.version, crate::API_VERSION)?;
    let ctx = InitContext::new();
    for data_type in &def.data_types {
        ctx.create_data_type(data_type).map_err(|e| e.to_string())?;
    }
    for command in &def.commands {
        let spec = registration::CommandSpec {
            name: command.name,
            flags: command.flags,
            first_key: command.first_key,
            last_key: command.last_key,
            key_step: command.key_step,
            arity: command.arity,
        };
        ctx.register(spec, command.handler)
            .map_err(|e| e.to_string())?;
    }
    if let Some(init) = def.init {
        let args: Vec<RedisString> = args.into_iter().map(RedisString::from).collect();
        init(&ctx, &args).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The `guest.invoke` export. The host passes the arguments without the command name (one
/// string less to copy across the boundary); command functions still see it as `args[0]`, in
/// the lowercase form it was registered under. An integer reply is returned rather than sent
/// (one call into the host less).
pub fn invoke(command: u32, args: Vec<Vec<u8>>) -> Option<i64> {
    let mut call = Call::start(command)?;
    call.arguments.reserve(args.len() + 1);
    call.arguments.push(RedisString::default());
    call.arguments
        .extend(args.into_iter().map(RedisString::from));
    call.run(Some(()))
}

/// The `packed-arguments.invoke` export: [`invoke`] with the arguments packed into one list
/// (each one's length as a little-endian u32, then its bytes), which the host sends when they
/// are short.
pub fn invoke_packed(command: u32, packed: Option<Vec<u8>>) -> Option<i64> {
    let mut call = Call::start(command)?;
    let unpacked = unpack_arguments(&mut call.arguments, packed.unwrap_or_default());
    call.run(unpacked)
}

/// The `word-arguments.invoke` export: [`invoke_packed`] with the packed arguments in fourteen
/// little-endian words (the first `length` bytes of them), which the host sends when they fit:
/// no list crosses, so nothing is allocated for them but the command's argument vector and a
/// copy of each argument over 22 bytes.
pub fn invoke_words(command: u32, length: u32, words: Words) -> Option<i64> {
    let mut call = Call::start(command)?;
    let unpacked = unpack_words(&mut call.arguments, length, words);
    call.run(unpacked)
}

/// Packed arguments as `word-arguments.invoke` takes them.
#[rustfmt::skip]
pub type Words = (u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64);

/// The bytes [`Words`] hold.
const WORDS_BYTES: usize = 14 * 8;

/// Packed arguments up to this size are shared by their longer arguments whatever their share
/// of them: an argument a guest keeps past its command keeps at most this much alive.
const SHARED_UP_TO: usize = 64 << 10;

/// Pushes onto the empty `full` an empty slot for the command's name, then the arguments in
/// `packed` (as `packed-arguments.invoke` takes them); `None` if a length runs past the end
/// (`full` is left as it was). Short arguments are copied into
/// their strings (no allocation); longer ones stay in the buffer, shared (so that a command's
/// arguments do not take twice their size), unless the buffer is over [`SHARED_UP_TO`] and the
/// argument less than a quarter of it (one kept would keep four times its size or more alive).
pub(crate) fn unpack_arguments(full: &mut Vec<RedisString>, packed: Vec<u8>) -> Option<()> {
    let (count, any_long) = count_packed(&packed)?;
    full.reserve(count + 1);
    full.push(RedisString::default());
    let (shared, plain) = match any_long {
        true => (Some(std::sync::Arc::new(packed)), Vec::new()),
        false => (None, packed),
    };
    let bytes = shared.as_deref().unwrap_or(&plain);
    push_arguments(full, bytes, bytes.len(), shared.as_ref());
    Some(())
}

/// [`unpack_arguments`] for the arguments in `length` bytes of `words` (as
/// `word-arguments.invoke` takes them); `None` if a length runs past `length` or `length` past
/// the words. Every argument is copied; the short ones as windows, as the words are followed by
/// zeros.
pub(crate) fn unpack_words(full: &mut Vec<RedisString>, length: u32, words: Words) -> Option<()> {
    let mut bytes = [0u8; WORDS_BYTES + crate::string::INLINE];
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n) = words;
    for (at, word) in [a, b, c, d, e, f, g, h, i, j, k, l, m, n]
        .into_iter()
        .enumerate()
    {
        bytes[at * 8..at * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    let packed = bytes
        .get(..length as usize)
        .filter(|p| p.len() <= WORDS_BYTES)?;
    let (count, _) = count_packed(packed)?;
    full.reserve(count + 1);
    full.push(RedisString::default());
    push_arguments(full, &bytes, length as usize, None);
    Some(())
}

/// How many arguments `packed` holds, and whether any is longer than an inline string; `None`
/// if a length runs past the end.
fn count_packed(packed: &[u8]) -> Option<(usize, bool)> {
    let mut count = 0;
    let mut any_long = false;
    let mut at = 0;
    while at < packed.len() {
        let length = packed.get(at..at + 4)?;
        let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
        at = (at + 4)
            .checked_add(length)
            .filter(|&end| end <= packed.len())?;
        any_long |= length > crate::string::INLINE;
        count += 1;
    }
    Some((count, any_long))
}

/// Pushes onto `full` the arguments packed in the first `end` bytes of `bytes`, which
/// [`count_packed`] accepted. An argument longer than an inline string shares `shared` (the
/// buffer `bytes` is) if that is worth it (see [`unpack_arguments`]); the others are copied.
#[inline(always)]
fn push_arguments(
    full: &mut Vec<RedisString>,
    bytes: &[u8],
    end: usize,
    shared: Option<&std::sync::Arc<Vec<u8>>>,
) {
    let mut at = 0;
    while at < end {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let range = at + 4..at + 4 + length;
        at = range.end;
        let share = length > crate::string::INLINE
            && (end <= SHARED_UP_TO || length.saturating_mul(4) >= end);
        full.push(match shared {
            Some(buffer) if share => RedisString::shared(buffer, range),
            _ => short_argument(bytes, range),
        });
    }
}

/// The argument at `range` of `bytes`, copied. A short argument followed by enough bytes is
/// copied as a fixed-size window: no `memory.copy` call per argument (~60 instructions each).
#[inline(always)]
fn short_argument(bytes: &[u8], range: std::ops::Range<usize>) -> RedisString {
    match bytes.get(range.start..range.start + crate::string::INLINE) {
        Some(window) if range.len() <= crate::string::INLINE => {
            RedisString::inline_prefix(window.try_into().expect("INLINE bytes"), range.len())
        }
        _ => RedisString::copied(&bytes[range]),
    }
}

/// A command about to run: its function and name, and the vector its arguments go into.
struct Call {
    function: CommandHandler,
    name: &'static [u8],
    /// Empty until the export pushes a slot for the name and the arguments onto it.
    arguments: Vec<RedisString>,
}

impl Call {
    /// Command `command`, or `None` when there is no such command (failed: the host's
    /// mistake, as the host checks the index it passes).
    #[inline(always)]
    fn start(command: u32) -> Option<Call> {
        let found = HANDLERS.with_borrow(|handlers| {
            handlers
                .get(command as usize)
                .map(|h| (h.function, h.name_bytes))
        });
        let Some((function, name)) = found else {
            reply::fail(&format!(
                "ERR no command with index {command} in this guest"
            ));
            return None;
        };
        let arguments = match function {
            CommandHandler::OwnedPointer(_) | CommandHandler::Owned(_) => Vec::new(),
            CommandHandler::BorrowedPointer(_) | CommandHandler::Borrowed(_) => {
                SPARE_ARGUMENTS.take()
            }
        };
        Some(Call {
            function,
            name,
            arguments,
        })
    }

    /// Runs the command if its arguments were `unpacked`, else fails it. Inlined into each
    /// export: called out of line, the call and the struct cost the shortest commands ~150
    /// wasm instructions.
    #[inline(always)]
    fn run(self, unpacked: Option<()>) -> Option<i64> {
        let Call {
            function,
            name,
            arguments: mut full,
        } = self;
        if unpacked.is_none() {
            reply::fail("ERR the host sent malformed packed arguments");
            return None;
        }
        RUNNING.set((RUNNING.get().0, name));
        crate::key::forget_dropped();
        full[0] = RedisString::from_static(name);
        let ctx = Context::new();
        let result = match function {
            CommandHandler::OwnedPointer(function) => function(&ctx, full),
            CommandHandler::Owned(function) => function.run(&ctx, full),
            CommandHandler::BorrowedPointer(function) => {
                let result = function(&ctx, &full);
                keep_spare(full);
                result
            }
            CommandHandler::Borrowed(function) => {
                let result = function.run(&ctx, &full);
                keep_spare(full);
                result
            }
        };
        if let Ok(RedisValue::Integer(value)) = result {
            // Nothing to drop in an integer; dropping the result would still call its drop
            // glue (~45 wasm instructions in every command that replies one).
            std::mem::forget(result);
            return Some(value);
        }
        send(result, name);
        None
    }
}

/// Keeps `arguments`, emptied, for the next command that borrows its arguments, unless it grew
/// past [`SPARE_ARGUMENTS_UP_TO`].
#[inline(always)]
fn keep_spare(mut arguments: Vec<RedisString>) {
    if arguments.capacity() <= SPARE_ARGUMENTS_UP_TO {
        arguments.clear();
        SPARE_ARGUMENTS.set(arguments);
    }
}

/// Sends command `name`'s `result`, other than an integer (which the export returns). Out of
/// line: it is most of the code, and each export inlines [`Call::run`].
#[inline(never)]
fn send(result: crate::RedisResult, name: &[u8]) {
    match result {
        Ok(value) => value.emit(),
        // As an error return, it replaces whatever the command replied so far (`fail`), which
        // `reply::wrong_arity` (a reply like any other) would not. Worded as Redis and the host
        // word it (`dispatch::wrong_arity_message`).
        Err(RedisError::WrongArity) => reply::fail(&format!(
            "ERR wrong number of arguments for '{}' command",
            String::from_utf8_lossy(name)
        )),
        Err(RedisError::WrongType) => reply::fail(ERRORMSG_WRONGTYPE),
        Err(e) => reply::fail(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_unpacked(packed: Vec<u8>) -> Option<Vec<RedisString>> {
        let mut full = Vec::new();
        unpack_arguments(&mut full, packed).map(|()| full)
    }

    fn words_unpacked(length: u32, words: Words) -> Option<Vec<RedisString>> {
        let mut full = Vec::new();
        unpack_words(&mut full, length, words).map(|()| full)
    }

    fn pack(args: &[&[u8]]) -> Vec<u8> {
        let mut packed = Vec::new();
        for arg in args {
            packed.extend_from_slice(&(arg.len() as u32).to_le_bytes());
            packed.extend_from_slice(arg);
        }
        packed
    }

    #[test]
    fn packed_arguments_unpack_to_the_same_bytes() {
        let long = vec![7u8; 1000];
        let cases: [&[&[u8]]; 5] = [
            &[],
            &[b""],
            &[b"k", b"", b"\x00\xff\r\n"],
            &[b"exactly twenty-two by", b"twenty-three bytes long", &long],
            &[&long, b"short", &long[..23]],
        ];
        for args in cases {
            let full = list_unpacked(pack(args)).expect("well formed");
            assert_eq!(full.len(), args.len() + 1);
            assert!(full[0].is_empty(), "the slot for the command's name");
            let got: Vec<&[u8]> = full[1..].iter().map(RedisString::as_slice).collect();
            assert_eq!(got, args);
        }
    }

    #[test]
    fn short_arguments_copied_as_windows_equal_their_bytes() {
        use std::hash::{BuildHasher, RandomState};
        // Each short argument but the last few is copied with the bytes after it: they must
        // not show in comparisons, hashes, lengths or clones.
        let args: [&[u8]; 5] = [b"k", b"", b"field", b"exactly twenty-two by", b"v"];
        let full = list_unpacked(pack(&args)).expect("well formed");
        let hasher = RandomState::new();
        for (got, want) in full[1..].iter().zip(args) {
            let plain = RedisString::copied(want);
            assert_eq!(got.as_slice(), want);
            assert_eq!(got, &plain);
            assert_eq!(got.clone(), plain);
            assert_eq!(got.cmp(&plain), std::cmp::Ordering::Equal);
            assert_eq!(hasher.hash_one(got), hasher.hash_one(&plain));
        }
    }

    #[test]
    fn only_arguments_worth_it_share_the_buffer() {
        let (key, small, big) = (vec![1u8; 22], vec![2u8; 30], vec![3u8; 40_000]);
        // A short command: its longer arguments share the buffer.
        let full = list_unpacked(pack(&[&key, &small])).unwrap();
        assert_eq!((full[1].is_shared(), full[2].is_shared()), (false, true));
        // Over 64 KiB: only an argument of a quarter of it or more (kept, a small one would
        // keep the whole buffer alive).
        let full = list_unpacked(pack(&[&small, &big, &big])).unwrap();
        let shared: Vec<bool> = full[1..].iter().map(RedisString::is_shared).collect();
        assert_eq!(shared, [false, true, true]);
        let got: Vec<&[u8]> = full[1..].iter().map(RedisString::as_slice).collect();
        assert_eq!(got, [&small[..], &big[..], &big[..]]);
    }

    /// `packed` (at most 112 bytes) as the host puts it into words.
    #[rustfmt::skip]
    fn words(packed: &[u8]) -> Words {
        let mut bytes = [0u8; 112];
        bytes[..packed.len()].copy_from_slice(packed);
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        (word(0), word(1), word(2), word(3), word(4), word(5), word(6),
         word(7), word(8), word(9), word(10), word(11), word(12), word(13))
    }

    #[test]
    fn arguments_in_words_unpack_to_the_same_bytes() {
        let cases: [&[&[u8]]; 5] = [
            &[b"counter:1"],
            &[b"", b"k", b"\x00\xff\r\n"],
            &[b"exactly twenty-two byt", b"twenty-three bytes long"],
            // 4 + 108 bytes: all of the words; the last argument longer than a window.
            &[&[0xab; 108]],
            &[&b"a"[..]; 22],
        ];
        for args in cases {
            let packed = pack(args);
            let full = words_unpacked(packed.len() as u32, words(&packed)).expect("well formed");
            assert!(full[0].is_empty(), "the slot for the command's name");
            let got: Vec<&[u8]> = full[1..].iter().map(RedisString::as_slice).collect();
            assert_eq!(got, args);
            assert!(full.iter().all(|s| !s.is_shared()));
        }
    }

    #[test]
    fn malformed_words_are_refused() {
        let mut past_the_length = pack(&[b"abc"]);
        past_the_length[0] = 4;
        assert!(words_unpacked(7, words(&past_the_length)).is_none());
        // A length past the fourteen words.
        assert!(words_unpacked(113, words(&pack(&[b"abc"]))).is_none());
        assert!(words_unpacked(u32::MAX, words(&pack(&[b"abc"]))).is_none());
    }

    #[test]
    fn a_reused_vector_holds_only_the_new_arguments() {
        // As commands that borrow their arguments get it: emptied, its capacity kept.
        let mut full = Vec::new();
        let packed = pack(&[b"a", b"bb", b"ccc"]);
        unpack_words(&mut full, packed.len() as u32, words(&packed)).expect("well formed");
        full.clear();
        unpack_arguments(&mut full, pack(&[b"one"])).expect("well formed");
        let got: Vec<&[u8]> = full.iter().map(RedisString::as_slice).collect();
        assert_eq!(got, [b"" as &[u8], b"one"]);
        full.clear();
        assert!(unpack_arguments(&mut full, vec![1]).is_none());
        assert!(full.is_empty(), "malformed arguments push nothing");
    }

    #[test]
    fn malformed_packed_arguments_are_refused() {
        let mut past_the_end = pack(&[b"abc"]);
        past_the_end[0] = 4;
        for packed in [vec![1], vec![0, 0, 0], past_the_end, {
            let mut huge = pack(&[b"x"]);
            huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            huge
        }] {
            assert!(list_unpacked(packed.clone()).is_none(), "{packed:?}");
        }
    }
}
