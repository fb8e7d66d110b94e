//! The node's configuration file (`detente serve --config`): TOML into the
//! file's keys, then the database location it names. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detente::fuzzing::config_file(data);
});
