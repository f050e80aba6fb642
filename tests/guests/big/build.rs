//! Generates thousands of distinct functions, so this guest is about 1 MB of code: a realistic
//! size for measuring how loading affects other clients.

use std::fmt::Write;

const FUNCTIONS: u64 = 2800;

fn main() {
    let mut code = String::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..FUNCTIONS {
        write!(
            code,
            "fn f{i}(x: u64) -> u64 {{ let mut y = x ^ {}; ",
            next()
        )
        .unwrap();
        for _ in 0..6 {
            let (a, b, r, m) = (next(), next(), next() % 63 + 1, next());
            write!(
                code,
                "y = y.wrapping_mul({a}).rotate_left({r}); if y & {m} == 0 {{ y = y.wrapping_add({b}); }} else {{ y ^= y >> {}; }} ",
                r % 31 + 1
            )
            .unwrap();
        }
        code.push_str("y }\n");
    }
    code.push_str("static TABLE: [fn(u64) -> u64; ");
    write!(code, "{FUNCTIONS}] = [").unwrap();
    for i in 0..FUNCTIONS {
        write!(code, "f{i},").unwrap();
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("generated.rs");
    std::fs::write(out, code).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
