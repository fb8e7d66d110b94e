//! The embedded store's state-snapshot records from arbitrary bytes: never a
//! panic, never an allocation larger than the input, and a record that
//! decodes re-encodes to bytes that decode to the same bytes again.
#![no_main]
use airspace::snapshot::{Reader, Snap};
use airspace::{Constraint, OperationalIntent, Subscription};
use libfuzzer_sys::fuzz_target;

fn again<T: Snap>(data: &[u8]) {
    if let Ok(v) = T::take(&mut Reader::new(data)) {
        let mut out = Vec::new();
        v.put(&mut out);
        let back = T::take(&mut Reader::new(&out)).expect("a re-encoded record decodes");
        let mut twice = Vec::new();
        back.put(&mut twice);
        assert_eq!(twice, out);
    }
}

fuzz_target!(|data: &[u8]| {
    again::<OperationalIntent>(data);
    again::<Subscription>(data);
    again::<Constraint>(data);
});
