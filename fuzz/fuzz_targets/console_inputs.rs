//! What a browser sends the console: a login body (JSON) and a session
//! cookie header. Any bytes are refused or accepted, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn console() -> &'static api::console::Console {
    static CONSOLE: OnceLock<api::console::Console> = OnceLock::new();
    CONSOLE.get_or_init(|| api::console::Console::new(&[7; 32], "fuzz.node", vec!["line administrator".into()]))
}

fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::console_inputs(console(), data);
});
