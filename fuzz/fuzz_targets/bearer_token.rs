//! The Authorization header: any bytes give 401/403 or a caller, never a
//! panic. The authenticator trusts the committed test key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn auth() -> &'static api::Authenticator {
    static AUTH: OnceLock<api::Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/test-support/keys/test-public.pem");
        api::Authenticator::new(&api::AuthConfig { keys: vec![api::KeySource::Pem(key)], audience: "fuzz".into(), insecure_dev: false })
            .expect("the test key loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = api::fuzzing::bearer_token(auth(), data);
});
