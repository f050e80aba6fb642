//! Declares a maximum for the guest's linear memory (3 GB, `DECLARED_MAXIMUM_PAGES` in
//! lib.rs), which Rust's toolchain leaves out by default.
fn main() {
    println!("cargo:rustc-link-arg=--max-memory=3221225472");
}
