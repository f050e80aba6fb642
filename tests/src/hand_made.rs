//! Guest components made by hand, for what no toolchain emits: a core start function (which
//! runs while the component is instantiated), an allocator or post-return function that never
//! returns. The sandbox tests load them, and `scripts/fuzz-load.sh` seeds its corpus with them
//! (the `hand_made` binary writes them out).

/// What [`guest`] does wrong.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Trick {
    /// Its start function loops forever.
    EndlessStart,
    /// Its start function calls host functions that need a command or a client
    /// (`get-selected-db`, `reply-with-long-long`, `close-key`, `abort-block`), then returns.
    StartCallsTheHost,
    /// Its allocator (`cabi_realloc`, which the host calls to pass arguments) loops forever.
    EndlessRealloc,
    /// Its allocator calls the same host functions, which the component model forbids.
    ReallocCallsTheHost,
    /// Its `init` returns a result area past the end of its memory.
    ResultOutOfBounds,
    /// It imports a function the host's `context` interface does not have.
    ImportsAnUnknownFunction,
    /// It imports `wasi:http/outgoing-handler`, an interface the host does not grant.
    ImportsHttp,
    /// It exports its functions as another package's interface.
    NotAGuest,
    /// Its `guest` export has no `invoke`.
    NoInvoke,
    /// Its `invoke` returns `option<s32>` instead of `option<s64>`.
    InvokeOfTheWrongType,
    /// It exports `packed-arguments` with `guest.invoke`'s function as its `invoke` (which
    /// takes `option<list<u8>>`).
    PackedInvokeOfTheWrongType,
    /// It exports `guest` and `packed-arguments` of 0.3.2, which had no `packed-arguments`.
    PackedArgumentsBeforeTheirVersion,
    /// It exports `word-arguments` (0.3.5) with `guest.invoke`'s function as its `invoke`
    /// (which takes fourteen words).
    WordsInvokeOfTheWrongType,
    /// It exports `guest` and `word-arguments` of 0.3.4, which had no `word-arguments`.
    WordArgumentsBeforeTheirVersion,
    /// Its memory starts at 4 GiB.
    HugeMemory,
    /// It has a table of 100 million elements.
    HugeTable,
    /// It has eight tables of a million elements (64 MB of function references).
    ManyTables,
    /// Besides its first memory, it has two of 400 pages (25 MB each).
    ManyMemories,
    /// The post-return function of its `init` (which wasmtime calls after every `init`) loops
    /// forever.
    EndlessPostReturn,
}

impl Trick {
    pub const ALL: [Trick; 19] = [
        Trick::EndlessStart,
        Trick::StartCallsTheHost,
        Trick::EndlessRealloc,
        Trick::ReallocCallsTheHost,
        Trick::ResultOutOfBounds,
        Trick::ImportsAnUnknownFunction,
        Trick::ImportsHttp,
        Trick::NotAGuest,
        Trick::NoInvoke,
        Trick::InvokeOfTheWrongType,
        Trick::PackedInvokeOfTheWrongType,
        Trick::PackedArgumentsBeforeTheirVersion,
        Trick::WordsInvokeOfTheWrongType,
        Trick::WordArgumentsBeforeTheirVersion,
        Trick::HugeMemory,
        Trick::HugeTable,
        Trick::ManyTables,
        Trick::ManyMemories,
        Trick::EndlessPostReturn,
    ];
}

/// A guest component with the right exports whose core module plays `trick`. Its start
/// function runs while the component is instantiated, before `init`, when no command runs; no
/// Rust toolchain emits one, so the component is made by hand. Its `init` returns `ok` without
/// calling `init-module`.
pub fn guest(trick: Trick) -> Vec<u8> {
    use PrimitiveValType::{Bool, S64, U32, U64};
    use wasm_encoder::{
        Alias, BlockType, CanonicalFunctionSection, CanonicalOption, CodeSection, Component,
        ComponentAliasSection, ComponentExportKind, ComponentExportSection, ComponentImportSection,
        ComponentInstanceSection, ComponentTypeRef, ComponentTypeSection, ComponentValType,
        EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
        InstanceSection, InstanceType, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
        PrimitiveValType, RefType, StartSection, TableSection, TableType, TypeSection, ValType,
    };
    /// The host functions the start function calls: interface, name, parameter, result.
    type Import = (
        &'static str,
        &'static str,
        Option<PrimitiveValType>,
        Option<PrimitiveValType>,
    );
    const IMPORTS: [Import; 4] = [
        ("context", "get-selected-db", None, Some(U32)),
        ("reply", "reply-with-long-long", Some(S64), None),
        ("keys", "close-key", Some(U32), None),
        ("blocking", "abort-block", Some(U64), Some(Bool)),
    ];
    let core_type = |ty: PrimitiveValType| match ty {
        S64 | U64 => ValType::I64,
        _ => ValType::I32,
    };
    let mut host_functions = IMPORTS;
    if trick == Trick::ImportsAnUnknownFunction {
        host_functions[0].1 = "no-such-function";
    }
    let imported = host_functions.len() as u32;
    /// The core module's function exports, in order after the start function.
    const EXPORTS: [&str; 4] = ["cabi_realloc", "init", "invoke", "cabi_post_init"];

    // The core module: the imported host functions, then the start function, an allocator,
    // init/invoke returning a zeroed result area (ok / none), and init's post-return.
    let mut module = Module::new();
    let mut types = TypeSection::new();
    for (_, _, param, result) in host_functions {
        types
            .ty()
            .function(param.map(core_type), result.map(core_type));
    }
    types.ty().function([], []);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    types.ty().function([ValType::I32; 2], [ValType::I32]);
    types.ty().function([ValType::I32; 3], [ValType::I32]);
    types.ty().function([ValType::I32], []);
    module.section(&types);
    let mut imports = ImportSection::new();
    for (index, (_, name, _, _)) in host_functions.into_iter().enumerate() {
        imports.import("host", name, EntityType::Function(index as u32));
    }
    module.section(&imports);
    let mut functions = FunctionSection::new();
    for ty in imported..imported + 5 {
        functions.function(ty);
    }
    module.section(&functions);
    let (table_count, table_size) = match trick {
        Trick::HugeTable => (1, 100_000_000),
        Trick::ManyTables => (8, 1_000_000),
        _ => (0, 0),
    };
    if table_count > 0 {
        let mut tables = TableSection::new();
        for _ in 0..table_count {
            tables.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum: table_size,
                maximum: None,
                shared: false,
            });
        }
        module.section(&tables);
    }
    let memory = |pages: u64| MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    };
    let mut memories = MemorySection::new();
    // 64 KiB pages: 65,536 of them are 4 GiB.
    memories.memory(memory(if trick == Trick::HugeMemory {
        65_536
    } else {
        1
    }));
    if trick == Trick::ManyMemories {
        memories.memory(memory(400));
        memories.memory(memory(400));
    }
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (offset, name) in EXPORTS.into_iter().enumerate() {
        exports.export(name, ExportKind::Func, imported + 1 + offset as u32);
    }
    module.section(&exports);
    module.section(&StartSection {
        function_index: imported,
    });
    let mut code = CodeSection::new();
    let call_the_host = |function: &mut Function| {
        let mut body = function.instructions();
        body.call(0).drop();
        body.i64_const(1).call(1);
        body.i32_const(0).call(2);
        body.i64_const(0).call(3).drop();
    };
    let endless = |function: &mut Function| {
        function.instructions().loop_(BlockType::Empty).br(0).end();
    };
    let mut start = Function::new([]);
    match trick {
        Trick::EndlessStart => endless(&mut start),
        Trick::StartCallsTheHost => call_the_host(&mut start),
        _ => {}
    }
    // The allocator hands out address 64; init and invoke return a zeroed result area.
    let mut realloc = Function::new([]);
    match trick {
        Trick::EndlessRealloc => endless(&mut realloc),
        Trick::ReallocCallsTheHost => call_the_host(&mut realloc),
        _ => {}
    }
    realloc.instructions().i32_const(64);
    let mut post_return = Function::new([]);
    if trick == Trick::EndlessPostReturn {
        endless(&mut post_return);
    }
    let mut init = Function::new([]);
    let result_area = match trick {
        Trick::ResultOutOfBounds => -16,
        _ => 0,
    };
    init.instructions().i32_const(result_area);
    let mut invoke = Function::new([]);
    invoke.instructions().i32_const(0);
    for mut function in [start, realloc, init, invoke, post_return] {
        function.instructions().end();
        code.function(&function);
    }
    module.section(&code);

    // The component: import the host functions (component functions 0..), lower them into a
    // core instance, instantiate the module with it, lift init and invoke, export them.
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    for (_, name, param, result) in host_functions {
        let mut instance = InstanceType::new();
        instance
            .ty()
            .function()
            .params(param.map(|p| ("value", ComponentValType::Primitive(p))))
            .result(result.map(ComponentValType::Primitive));
        instance.export(name, ComponentTypeRef::Func(0));
        types.instance(&instance);
    }
    component.section(&types);
    let mut component_imports = ComponentImportSection::new();
    for (index, (interface, _, _, _)) in host_functions.into_iter().enumerate() {
        let name = match (trick, index) {
            (Trick::ImportsHttp, 0) => "wasi:http/outgoing-handler@0.2.0".to_owned(),
            _ => format!("redis:module/{interface}@0.3.2"),
        };
        component_imports.import(&name, ComponentTypeRef::Instance(index as u32));
    }
    component.section(&component_imports);
    let mut aliases = ComponentAliasSection::new();
    for (index, (_, name, _, _)) in host_functions.into_iter().enumerate() {
        aliases.alias(Alias::InstanceExport {
            instance: index as u32,
            kind: ComponentExportKind::Func,
            name,
        });
    }
    component.section(&aliases);
    let mut canonical = CanonicalFunctionSection::new();
    for index in 0..imported {
        canonical.lower(index, []);
    }
    component.section(&canonical);
    let mut instances = InstanceSection::new();
    instances.export_items(
        host_functions
            .into_iter()
            .enumerate()
            .map(|(index, (_, name, _, _))| (name, ExportKind::Func, index as u32)),
    );
    instances.instantiate(0, [("host", ModuleArg::Instance(0))]);
    component.section(&ModuleSection(&module));
    component.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: 1,
        kind: ExportKind::Memory,
        name: "memory",
    });
    for name in EXPORTS {
        aliases.alias(Alias::CoreInstanceExport {
            instance: 1,
            kind: ExportKind::Func,
            name,
        });
    }
    component.section(&aliases);
    let realloc = imported;
    let first = imported; // the first type after the import instance types
    let mut types = ComponentTypeSection::new();
    types.defined_type().list(PrimitiveValType::U8);
    types.defined_type().list(ComponentValType::Type(first));
    types
        .defined_type()
        .result(None, Some(PrimitiveValType::String.into()));
    // `invoke` returns option<s64>; the wrong type, option<s32>, has the same core signature.
    let returned = if trick == Trick::InvokeOfTheWrongType {
        PrimitiveValType::S32
    } else {
        S64
    };
    types.defined_type().option(returned);
    let args = ComponentValType::Type(first + 1);
    types
        .function()
        .params([("args", args)])
        .result(Some(ComponentValType::Type(first + 2)));
    types
        .function()
        .params([
            ("command", ComponentValType::Primitive(U32)),
            ("args", args),
        ])
        .result(Some(ComponentValType::Type(first + 3)));
    component.section(&types);
    let mut canonical = CanonicalFunctionSection::new();
    let options = [
        CanonicalOption::Memory(0),
        CanonicalOption::Realloc(realloc),
        CanonicalOption::UTF8,
    ];
    let [memory, allocator, encoding] = options;
    let with_post_return = [
        memory,
        allocator,
        encoding,
        CanonicalOption::PostReturn(realloc + 3),
    ];
    canonical.lift(realloc + 1, first + 4, with_post_return);
    canonical.lift(realloc + 2, first + 5, options);
    component.section(&canonical);
    let mut instances = ComponentInstanceSection::new();
    let functions = [
        ("init", ComponentExportKind::Func, imported),
        ("invoke", ComponentExportKind::Func, imported + 1),
    ];
    let exported = if trick == Trick::NoInvoke { 1 } else { 2 };
    instances.export_items(functions.into_iter().take(exported));
    let packed_version = match trick {
        Trick::PackedInvokeOfTheWrongType => Some("0.3.4"),
        Trick::PackedArgumentsBeforeTheirVersion => Some("0.3.2"),
        Trick::WordsInvokeOfTheWrongType => Some("0.3.5"),
        Trick::WordArgumentsBeforeTheirVersion => Some("0.3.4"),
        _ => None,
    };
    if packed_version.is_some() {
        instances.export_items([functions[1]]);
    }
    component.section(&instances);
    let mut exports = ComponentExportSection::new();
    let version = packed_version.unwrap_or("0.3.2");
    let name = if trick == Trick::NotAGuest {
        "example:other/guest@0.3.2".to_owned()
    } else {
        format!("redis:module/guest@{version}")
    };
    exports.export(&name, ComponentExportKind::Instance, imported, None);
    if let Some(version) = packed_version {
        let interface = match trick {
            Trick::WordsInvokeOfTheWrongType | Trick::WordArgumentsBeforeTheirVersion => {
                "word-arguments"
            }
            _ => "packed-arguments",
        };
        let name = format!("redis:module/{interface}@{version}");
        exports.export(&name, ComponentExportKind::Instance, imported + 1, None);
    }
    component.section(&exports);
    component.finish()
}
