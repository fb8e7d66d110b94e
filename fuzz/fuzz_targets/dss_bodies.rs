//! Every F3548 request body the DSS parses, the export's query and GeoJSON imports: never a panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::intent_body(data);
    let _ = api::fuzzing::query_body(data);
    let _ = api::fuzzing::subscription_body(data);
    let _ = api::fuzzing::availability_body(data);
    let _ = api::fuzzing::export_query(data);
    let _ = api::fuzzing::geojson_import(data);
});
