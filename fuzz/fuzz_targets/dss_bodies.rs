//! Every F3548 request body the DSS parses, and the export's query: never a panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::intent_body(data);
    let _ = api::fuzzing::query_body(data);
    let _ = api::fuzzing::subscription_body(data);
    let _ = api::fuzzing::availability_body(data);
    let _ = api::fuzzing::export_query(data);
});
