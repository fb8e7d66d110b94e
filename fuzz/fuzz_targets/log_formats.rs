//! Every evidence-log format parsed from outside: CBOR, signed entries,
//! signed notes, checkpoints, tlog-proofs, witness requests and witness policies. Never a
//! panic; whatever parses re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tlog::fuzzing::all(data);
});
