//! Any JWKS document loads or is refused with an error, never a panic; a loaded set never publishes private members.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_jose::KeySet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_jwks_json(data) {
        for jwk in set.to_public_jwks().keys {
            assert!(jwk.private_member().is_none());
        }
    }
});
