//! What peers and duty officers send to the line: peers' signed records
//! (and the shared airspace changes in them, as far as the copy they would
//! make), `/peer/v1/records` bodies, message and acknowledgement bodies.
//! Never a panic; whatever parses re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::line_inputs(data);
});
