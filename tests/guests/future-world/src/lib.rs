//! Test guest built for redis:module@0.4.0, a version this host does not implement.

wit_bindgen::generate!({ world: "module", path: "wit" });

struct Future;

impl exports::redis::module::guest::Guest for Future {
    fn init(_args: Vec<Vec<u8>>) -> Result<(), String> {
        redis::module::log::log("hello from the future");
        Ok(())
    }

    fn invoke(_command: u32, _args: Vec<Vec<u8>>) -> Result<(), String> {
        Ok(())
    }
}

export!(Future);
