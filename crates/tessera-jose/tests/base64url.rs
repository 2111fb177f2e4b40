//! The token core's base64url decoder (`base64-simd`) accepts and refuses exactly what the `base64` crate's strict
//! URL-safe, unpadded engine does — the decoder the token core used before — and encodes the same text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use base64::engine::general_purpose::URL_SAFE_NO_PAD as ORACLE;
use base64::Engine as _;
use proptest::prelude::*;
use tessera_jose::base64url;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Text near base64url: its alphabet with the standard one's `+` and `/`, padding, whitespace and a dot mixed
    /// in, at every length (so every trailing-bits case comes up).
    #[test]
    fn decodes_what_the_strict_engine_decodes(text in "[A-Za-z0-9_+/=. \n-]{0,70}") {
        prop_assert_eq!(base64url::decode(&text), ORACLE.decode(&text).ok(), "{:?}", text);
    }

    #[test]
    fn refuses_what_the_strict_engine_refuses_on_any_text(text in any::<String>()) {
        prop_assert_eq!(base64url::decode(&text), ORACLE.decode(&text).ok(), "{:?}", text);
    }

    #[test]
    fn encodes_as_the_strict_engine_does(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = base64url::encode(&bytes);
        prop_assert_eq!(&text, &ORACLE.encode(&bytes));
        prop_assert_eq!(base64url::decode(&text), Some(bytes));
    }
}

#[test]
fn non_canonical_trailing_bits_padding_and_other_alphabets_are_refused() {
    // "QQ" is the canonical form of "A"; "QR" differs only in bits that decoding drops.
    assert_eq!(base64url::decode("QQ"), Some(b"A".to_vec()));
    for bad in ["QR", "QQ==", "QQ=", "Q", "Q Q", "+/8", "QQ\n", "QUJD.REVG"] {
        assert_eq!(base64url::decode(bad), None, "{bad:?}");
    }
}
