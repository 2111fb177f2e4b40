//! Finding the legacy cookie in a request's `Cookie` headers, and refusing a name planted twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use tessera_legacy::{find_cookie, LegacyError};

#[test]
fn an_absent_cookie_is_none() {
    assert_eq!(find_cookie([], "connect.sid"), Ok(None));
    assert_eq!(find_cookie(["theme=dark; lang=en"], "connect.sid"), Ok(None));
    // A prefix or a different case is another cookie.
    assert_eq!(find_cookie(["connect.sid2=x; Connect.sid=y; connect=z"], "connect.sid"), Ok(None));
}

#[test]
fn a_present_cookie_is_its_raw_value() {
    assert_eq!(find_cookie(["connect.sid=s%3Aabc.def"], "connect.sid"), Ok(Some("s%3Aabc.def")));
}

#[test]
fn the_cookie_is_found_among_several_in_several_headers_whitespace_trimmed() {
    let headers = ["theme=dark;lang=en", "  a=1 ;  connect.sid =  s%3Aabc.def%2Bg  ; b=2"];
    assert_eq!(find_cookie(headers, "connect.sid"), Ok(Some("s%3Aabc.def%2Bg")));
    // A value may contain '='.
    assert_eq!(find_cookie(["x=1; connect.sid=a=b=="], "connect.sid"), Ok(Some("a=b==")));
    // A pair without '=' is skipped, not an error.
    assert_eq!(find_cookie(["garbage; connect.sid=v"], "connect.sid"), Ok(Some("v")));
}

#[test]
fn a_quoted_value_is_returned_without_its_quotes() {
    assert_eq!(find_cookie(["connect.sid=\"s%3Aabc.def\""], "connect.sid"), Ok(Some("s%3Aabc.def")));
}

#[test]
fn the_same_value_twice_is_that_value() {
    let headers = ["connect.sid=s%3Aabc.def; x=1", "connect.sid=s%3Aabc.def"];
    assert_eq!(find_cookie(headers, "connect.sid"), Ok(Some("s%3Aabc.def")));
}

#[test]
fn two_different_values_are_refused_as_ambiguous() {
    let tossed = ["connect.sid=s%3Aattacker.sig; connect.sid=s%3Avictim.sig"];
    assert_eq!(find_cookie(tossed, "connect.sid"), Err(LegacyError::Invalid("ambiguous")));
    let across_headers = ["connect.sid=one", "connect.sid=two"];
    assert_eq!(find_cookie(across_headers, "connect.sid"), Err(LegacyError::Invalid("ambiguous")));
}
