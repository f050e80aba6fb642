//! Writes the hand-made guest components (`redis_wasm_tests::hand_made`) into a directory, one
//! file per trick: `scripts/fuzz-load.sh` seeds the load fuzzer's corpus with them.
//!
//! Run: `cargo run --release -p redis-wasm-tests --bin hand_made <dir>`.

use redis_wasm_tests::hand_made::{Trick, guest};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: hand_made <directory>");
    for trick in Trick::ALL {
        let path = std::path::Path::new(&dir).join(format!("hand-made-{trick:?}.wasm"));
        std::fs::write(&path, guest(trick))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
