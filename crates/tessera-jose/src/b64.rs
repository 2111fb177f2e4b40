//! Strict base64url: the RFC 7515 alphabet, no padding, no whitespace, canonical trailing bits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes unpadded base64url, refusing padding, whitespace, other alphabets and non-canonical trailing bits.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Decodes like [`decode`] into `buffer`, returning the decoded prefix; `None` also when it does not fit.
pub(crate) fn decode_into<'a>(input: &str, buffer: &'a mut [u8]) -> Option<&'a [u8]> {
    let len = URL_SAFE_NO_PAD.decode_slice(input, buffer).ok()?;
    buffer.get(..len)
}

/// Encodes as unpadded base64url.
pub(crate) fn encode(input: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

/// Appends the unpadded base64url form of `input` to `out`.
pub(crate) fn encode_into(input: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(input, out);
}
