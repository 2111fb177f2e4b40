//! express-session's signed cookie: `s:<session id>.<signature>`, URL-encoded, the signature being
//! cookie-signature's (standard base64 of HMAC-SHA256(secret, id), `=` padding stripped).

use aws_lc_rs::hmac;
use base64::Engine;

use crate::{LegacyError, MAX_COOKIE_BYTES};

/// The longest session id accepted: uid-safe's are 32 characters; anything much longer is not express-session's.
const MAX_ID_CHARS: usize = 256;

/// The secrets a cookie may be signed with, newest first (express-session signs with the first and accepts any, so
/// secrets can be rotated without logging everyone out).
pub(crate) struct Secrets(Vec<hmac::Key>);

impl Secrets {
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self(secrets.into_iter().map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())).collect())
    }

    /// The session id in a raw (URL-encoded) cookie value, if the cookie is genuine: signed with one of the secrets.
    ///
    /// An unsigned cookie (no `s:`) is never trusted: express-session would not accept it either, and its session
    /// id could be anyone's, read or guessed. The id is checked after the signature, so that only what one of the
    /// secrets signed is looked up, and only ids that cannot surprise a Redis key or a log line.
    pub(crate) fn session_id(&self, cookie_value: &str) -> Result<String, LegacyError> {
        if cookie_value.len() > MAX_COOKIE_BYTES {
            return Err(LegacyError::Invalid("too long"));
        }
        let decoded = percent_decode(cookie_value)?;
        let signed = decoded.strip_prefix("s:").ok_or(LegacyError::Invalid("unsigned"))?;
        // cookie-signature splits at the last '.': the signature has none, the value might.
        let (id, signature) = signed.rsplit_once('.').ok_or(LegacyError::Invalid("unsigned"))?;
        // Strict: no padding, canonical trailing bits, so one signature has one spelling.
        let tag = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(signature)
            .map_err(|_| LegacyError::Invalid("bad signature"))?;
        // `verify` compares in constant time.
        if !self.0.iter().any(|key| hmac::verify(key, id.as_bytes(), &tag).is_ok()) {
            return Err(LegacyError::Invalid("bad signature"));
        }
        let uid_safe = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
        if id.is_empty() || id.len() > MAX_ID_CHARS || !id.bytes().all(uid_safe) {
            return Err(LegacyError::Invalid("bad session id"));
        }
        Ok(id.to_owned())
    }
}

/// Strict percent-decoding (JavaScript's `decodeURIComponent`): every `%` starts two hex digits and the result is
/// UTF-8. A lenient decoder would let two spellings of a cookie differ in what they name.
fn percent_decode(text: &str) -> Result<String, LegacyError> {
    const BAD: LegacyError = LegacyError::Invalid("bad percent-encoding");
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(byte) = rest.next() {
        if byte == b'%' {
            let high = rest.next().and_then(hex_digit).ok_or(BAD)?;
            let low = rest.next().and_then(hex_digit).ok_or(BAD)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).map_err(|_| BAD)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Signed by an independent implementation, Node 20's `crypto`, reproducing cookie-signature's `sign` and the
    // URL-encoding express-session's cookie gets:
    //   node -e 'const c = require("crypto");
    //     const sign = (id, secret) => "s:" + id + "." + c.createHmac("sha256", secret).update(id)
    //       .digest("base64").replace(/=+$/, "");
    //     console.log(encodeURIComponent(sign(ID, SECRET)))'
    /// Secret "keyboard cat", id `Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS`.
    const KEYBOARD_CAT: &str = "s%3AXw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS.vkJQ7ozluINglcoqq%2FDNOkol8AaCpRailyJ772IDsVc";
    /// Secret "old secret", id `9fJ_2kP-qLm8ZxW4vT7yB1nC6dH0sRaE`.
    const OLD_SECRET: &str = "s%3A9fJ_2kP-qLm8ZxW4vT7yB1nC6dH0sRaE.Ns%2FhXydXd2wAmLt58Fu89B0sSwyKWE%2FkVhXnZINz%2Byc";
    /// Secret "keyboard cat", id `a`.
    const ONE_CHAR: &str = "s%3Aa.edbG35Gr26gZvywfgQZIlXexpmG3HzrYZyKzt%2F55vSw";
    /// Secret "clé secrète ☃" (UTF-8, as Node hashes a string key), id `sess-ion_ID-42`.
    const UNICODE_SECRET: &str = "s%3Asess-ion_ID-42.DVLzOBTHxaagx7TRKfcpXHzEuf7wymaXNamw14SMy1c";
    /// Secret "keyboard cat", id `dots.in.the.id`: correctly signed, but not a uid-safe id.
    const DOTTED_ID: &str = "s%3Adots.in.the.id.dy9ik27Agn6hFD8o9nS5tzVEFmTsO2MiuiYiN2Uq%2FPs";
    /// Secret "keyboard cat": signatures of 256 and 257 times `A`.
    const SIG_256_AS: &str = "%2BGoG7tGWWIRmEn7FgNA6cr4m7sm33NyqrEFNc0bAuFo";
    const SIG_257_AS: &str = "xxqn%2F2ixzYasuqEHe2O%2FRzaA%2FtYXwE0sKR4c1EyxcAw";

    fn secrets(list: &[&str]) -> Secrets {
        Secrets::new(list.iter().copied())
    }

    #[test]
    fn a_cookie_signed_with_the_secret_names_its_session() {
        let keys = secrets(&["keyboard cat"]);
        assert_eq!(keys.session_id(KEYBOARD_CAT), Ok("Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS".to_owned()));
        assert_eq!(keys.session_id(ONE_CHAR), Ok("a".to_owned()));
        assert_eq!(secrets(&["clé secrète ☃"]).session_id(UNICODE_SECRET), Ok("sess-ion_ID-42".to_owned()));
    }

    #[test]
    fn a_cookie_signed_with_an_older_secret_in_the_list_is_accepted_during_rotation() {
        let keys = secrets(&["keyboard cat", "old secret"]);
        assert_eq!(keys.session_id(OLD_SECRET), Ok("9fJ_2kP-qLm8ZxW4vT7yB1nC6dH0sRaE".to_owned()));
        assert_eq!(keys.session_id(KEYBOARD_CAT), Ok("Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS".to_owned()));
    }

    #[test]
    fn a_cookie_signed_with_another_secret_is_refused_as_forged() {
        let keys = secrets(&["keyboard cat"]);
        assert_eq!(keys.session_id(OLD_SECRET), Err(LegacyError::Invalid("bad signature")));
        assert_eq!(secrets(&["Keyboard cat"]).session_id(KEYBOARD_CAT), Err(LegacyError::Invalid("bad signature")));
    }

    #[test]
    fn an_unsigned_cookie_is_never_trusted() {
        let keys = secrets(&["keyboard cat"]);
        for unsigned in ["Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS", "s%3AXw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS", ""] {
            assert_eq!(keys.session_id(unsigned), Err(LegacyError::Invalid("unsigned")), "{unsigned:?}");
        }
        // The signed form without its `s:` marker.
        let without_marker = KEYBOARD_CAT.trim_start_matches("s%3A");
        assert_eq!(keys.session_id(without_marker), Err(LegacyError::Invalid("unsigned")));
    }

    #[test]
    fn a_truncated_or_altered_signature_is_refused() {
        let keys = secrets(&["keyboard cat"]);
        let truncated = KEYBOARD_CAT.strip_suffix('c').unwrap();
        let altered = KEYBOARD_CAT.replace("DsVc", "DsVd");
        let padded = format!("{KEYBOARD_CAT}%3D");
        let other_id = KEYBOARD_CAT.replace("Xw3k", "Xw3j");
        let no_signature = "s%3AXw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS.";
        for forged in [truncated, &altered, &padded, &other_id, no_signature] {
            assert_eq!(keys.session_id(forged), Err(LegacyError::Invalid("bad signature")), "{forged}");
        }
    }

    #[test]
    fn bad_percent_encoding_is_refused() {
        let keys = secrets(&["keyboard cat"]);
        for bad in ["s%3Ax.y%", "s%3Ax.y%2", "s%zzx.y", "%3", "s%3Ax%FF.y"] {
            assert_eq!(keys.session_id(bad), Err(LegacyError::Invalid("bad percent-encoding")), "{bad}");
        }
        // The same cookie unencoded is the same cookie: decoding is not what makes it genuine.
        let unencoded = "s:Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS.vkJQ7ozluINglcoqq/DNOkol8AaCpRailyJ772IDsVc";
        assert_eq!(keys.session_id(unencoded), Ok("Xw3k9N2yR8bQe5TzVfL0aPcUiOmDjHgS".to_owned()));
    }

    #[test]
    fn a_signed_id_with_characters_uid_safe_never_makes_is_refused() {
        assert_eq!(secrets(&["keyboard cat"]).session_id(DOTTED_ID), Err(LegacyError::Invalid("bad session id")));
    }

    #[test]
    fn ids_up_to_256_characters_are_accepted_and_longer_ones_refused() {
        let keys = secrets(&["keyboard cat"]);
        let longest = format!("s%3A{}.{SIG_256_AS}", "A".repeat(256));
        assert_eq!(keys.session_id(&longest), Ok("A".repeat(256)));
        let too_long = format!("s%3A{}.{SIG_257_AS}", "A".repeat(257));
        assert_eq!(keys.session_id(&too_long), Err(LegacyError::Invalid("bad session id")));
    }

    #[test]
    fn an_over_long_cookie_is_refused_before_it_is_decoded() {
        let keys = secrets(&["keyboard cat"]);
        // Would be a bad encoding, but the length is what is checked first.
        let huge = format!("{KEYBOARD_CAT}{}%", "A".repeat(MAX_COOKIE_BYTES));
        assert_eq!(keys.session_id(&huge), Err(LegacyError::Invalid("too long")));
    }
}
