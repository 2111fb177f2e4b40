//! How risky a finding is, rated on two separate axes, and what fixing it costs.
//!
//! **Likelihood** (1–5) comes from exposure: what an attacker needs before the flaw is any use — nothing but the
//! network, code or data anyone can read, one token of their own, someone else's stolen token, a secret or
//! insider access, offline computation, another flaw (an XSS, a misconfiguration). **Impact** (1–5) comes from
//! what the flaw gives: forging any identity, acting beyond one's rights, taking over someone's session,
//! reading what should stay private, taking the service down, or only weakening a defence. The two are rated
//! independently, so the risk matrix is a real matrix and not severity written twice.
//!
//! Each finding id also names the OWASP ASVS 5.0.0 requirements it breaks (checked against the `v5.0.0_release`
//! text; none where no requirement fits) and the effort of the usual fix, for the remediation plan.

use crate::Severity;

/// What an attacker needs, or has, before a flaw is of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Reachable by anyone who can send a request.
    Network,
    /// In code or data anyone can read (a browser bundle, a public key set, a token's readable payload).
    Public,
    /// Shown to work on the live system by the audit's own probe.
    Demonstrated,
    /// Needs one valid token, which any user can get for themselves.
    OwnToken,
    /// Needs a token stolen from someone else.
    StolenToken,
    /// Needs a secret, access to the source, or insider access.
    Insider,
    /// Needs offline computation (cracking, factoring).
    Computation,
    /// Needs a second flaw (a script injection, a misconfigured deployment, a verifier that honours the header).
    OtherFlaw,
}

impl Exposure {
    fn weight(self) -> i8 {
        match self {
            Self::Network | Self::Demonstrated => 1,
            Self::Public => 2,
            Self::OwnToken => 0,
            Self::StolenToken | Self::Computation | Self::OtherFlaw => -1,
            Self::Insider => -2,
        }
    }

    /// How a report names it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "reachable from the network",
            Self::Public => "public (client code or data)",
            Self::Demonstrated => "shown on the live system",
            Self::OwnToken => "needs the attacker's own token",
            Self::StolenToken => "needs a stolen token",
            Self::Insider => "needs a secret or insider access",
            Self::Computation => "needs offline computation",
            Self::OtherFlaw => "needs a second flaw",
        }
    }
}

/// What exploiting a flaw gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gain {
    /// Tokens for any identity: full authentication bypass.
    Forgery,
    /// Access beyond the rights the attacker's token carries (another service's token accepted, a route bypassed).
    Escalation,
    /// Someone else's session, or a stolen token that keeps working.
    Takeover,
    /// Data that should stay private.
    Disclosure,
    /// The service slowed or taken down.
    Outage,
    /// A defence weakened; harmful only together with something else.
    Weakening,
    /// Worth knowing; nothing is given.
    Observation,
}

impl Gain {
    fn impact(self) -> u8 {
        match self {
            Self::Forgery => 5,
            Self::Escalation | Self::Takeover => 4,
            Self::Disclosure | Self::Outage => 3,
            Self::Weakening => 2,
            Self::Observation => 1,
        }
    }

    /// How a report names it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forgery => "token forgery (authentication bypass)",
            Self::Escalation => "access beyond the token's rights",
            Self::Takeover => "session takeover",
            Self::Disclosure => "information disclosure",
            Self::Outage => "denial of service",
            Self::Weakening => "weakened defence",
            Self::Observation => "none (observation)",
        }
    }
}

/// A finding's risk profile: its exposure, what it gives, the ASVS requirements it breaks and the effort of the
/// usual fix in hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// What an attacker needs.
    pub exposure: &'static [Exposure],
    /// What it gives.
    pub gain: Gain,
    /// OWASP ASVS 5.0 requirements it breaks.
    pub asvs: &'static [&'static str],
    /// The usual fix's effort, in hours of work (a setting: 1–2; a rotation or an upgrade: 4–8; a redesign: 40).
    pub effort_hours: u16,
}

impl Profile {
    /// Likelihood 1–5: 3, moved by each exposure (network and demonstrated +1, public +2, a stolen token,
    /// computation or a second flaw −1, insider access −2), kept within 1–5.
    #[must_use]
    pub fn likelihood(&self) -> u8 {
        let score = self.exposure.iter().fold(3_i8, |score, exposure| score + exposure.weight());
        u8::try_from(score.clamp(1, 5)).unwrap_or(1)
    }

    /// Impact 1–5, from what the flaw gives.
    #[must_use]
    pub fn impact(&self) -> u8 {
        self.gain.impact()
    }
}

use Exposure::{Computation, Demonstrated, Insider, Network, OtherFlaw, OwnToken, Public, StolenToken};

const fn profile(
    exposure: &'static [Exposure],
    gain: Gain,
    asvs: &'static [&'static str],
    effort_hours: u16,
) -> Profile {
    Profile { exposure, gain, asvs, effort_hours }
}

/// A live endpoint that accepted a forged token: shown to work, by anyone.
const LIVE_FORGERY: Profile = profile(&[Network, Demonstrated], Gain::Forgery, &["9.1.1", "9.1.2"], 8);

/// The profile of a finding id; `None` for an id this table does not know (its severity then rates it).
#[must_use]
pub fn profile_of(id: &str) -> Option<Profile> {
    Some(match id {
        // Tokens (`audit token`): what the token shows about its issuer and its verifiers.
        "JWT-ALG-NONE" => profile(&[Network], Gain::Forgery, &["9.1.2"], 2),
        "JWT-WEAK-HMAC-SECRET" => profile(&[Network, OwnToken], Gain::Forgery, &["11.2.3", "11.5.1"], 8),
        "JWT-ALG-KEY-MISMATCH" => profile(&[Network], Gain::Forgery, &["9.1.2"], 4),
        "JWT-SYMMETRIC-ALG" => profile(&[Insider], Gain::Forgery, &["9.1.2"], 16),
        "JWT-HEADER-JKU" | "JWT-HEADER-X5U" | "JWT-HEADER-JWK" | "JWT-HEADER-X5C" => {
            profile(&[Network, OtherFlaw], Gain::Forgery, &["9.1.3"], 2)
        }
        "JWT-KID-INJECTION" => profile(&[Network, OtherFlaw], Gain::Forgery, &["9.1.3", "1.2.4"], 4),
        "JWT-DUPLICATE-MEMBER" | "JWT-BASE64-NONCANONICAL" | "JWT-CRIT" => {
            profile(&[Network, OtherFlaw], Gain::Weakening, &["9.1.1"], 2)
        }
        "JWT-EXP-NOT-NUMBER" => profile(&[StolenToken, OtherFlaw], Gain::Takeover, &["9.2.1"], 2),
        "JWT-NO-EXP" | "JWT-LONG-LIFETIME" => profile(&[StolenToken], Gain::Takeover, &["9.2.1"], 2),
        "JWT-NO-JTI" | "JWT-NO-IAT" => profile(&[StolenToken], Gain::Weakening, &["7.4.1"], 2),
        "JWT-NO-TYP" => profile(&[OwnToken, OtherFlaw], Gain::Escalation, &["9.2.2"], 2),
        "JWT-PERSONAL-DATA" | "JWT-SENSITIVE-DATA" => profile(&[Public], Gain::Disclosure, &[], 4),
        "JWT-NO-ALG" | "JWT-UNKNOWN-KID" | "JWT-BAD-SIGNATURE" | "JWT-IAT-FUTURE" => {
            profile(&[], Gain::Weakening, &["9.1.1"], 1)
        }
        "JWT-EXPIRED" => profile(&[], Gain::Observation, &[], 0),
        // Key sets (`audit jwks`).
        "JWKS-PRIVATE-KEY" | "JWKS-SYMMETRIC-KEY" => {
            profile(&[Network, Public], Gain::Forgery, &["9.1.3", "11.1.1"], 8)
        }
        "JWKS-WEAK-RSA" => profile(&[Network, Computation], Gain::Forgery, &["11.2.3"], 8),
        "JWKS-LONG-CACHE" => profile(&[Insider], Gain::Forgery, &["9.1.3"], 1),
        "JWKS-RSA-EXPONENT" | "JWKS-DUPLICATE-KID" | "JWKS-MISSING-KID" | "JWKS-MISSING-ALG" | "JWKS-MISSING-USE" => {
            profile(&[OtherFlaw], Gain::Weakening, &["9.1.3"], 1)
        }
        "JWKS-NO-CACHE-CONTROL" | "JWKS-NOT-CACHEABLE" => profile(&[Network], Gain::Weakening, &[], 1),
        // Live endpoints (`audit endpoint`): each forged token was accepted.
        "ENDPOINT-ALG-NONE"
        | "ENDPOINT-ALG-CONFUSION"
        | "ENDPOINT-ALG-SWITCH"
        | "ENDPOINT-HMAC-EMPTY-KEY"
        | "ENDPOINT-NO-SIGNATURE-CHECK"
        | "ENDPOINT-PSYCHIC-SIGNATURE"
        | "ENDPOINT-POLYGLOT"
        | "ENDPOINT-JSON-SERIALIZATION" => LIVE_FORGERY,
        "ENDPOINT-HEADER-JKU"
        | "ENDPOINT-HEADER-X5U"
        | "ENDPOINT-HEADER-JWK"
        | "ENDPOINT-HEADER-X5C"
        | "ENDPOINT-KID-INJECTION" => Profile { asvs: &["9.1.3"], ..LIVE_FORGERY },
        "ENDPOINT-FETCHES-HEADER-URL" => profile(&[Network, Demonstrated], Gain::Disclosure, &["1.3.6", "9.1.3"], 4),
        "ENDPOINT-ACCEPTS-REJECTED" => {
            profile(&[Network, Demonstrated, StolenToken], Gain::Takeover, &["9.2.1", "9.2.3"], 8)
        }
        "ENDPOINT-MALLEABLE-BASE64" => profile(&[Network, Demonstrated], Gain::Weakening, &["9.1.1"], 2),
        "ENDPOINT-OVERSIZED" => profile(&[Network, Demonstrated], Gain::Outage, &[], 2),
        "ENDPOINT-FWD-HEADER-INJECTION" | "ENDPOINT-PATH-AMBIGUOUS" | "ENDPOINT-PATH-SPELLING" => {
            profile(&[Network, Demonstrated, OwnToken], Gain::Escalation, &[], 8)
        }
        "ENDPOINT-FWD-HEADER-MISSING" => profile(&[OtherFlaw], Gain::Weakening, &[], 2),
        "ENDPOINT-PATH-CASE" | "ENDPOINT-GATEWAY-NOT-PROBED" => profile(&[], Gain::Observation, &[], 0),
        // Authorization endpoints (`audit endpoint --authorize-client`): what a request from anyone was let do.
        "ENDPOINT-AUTHZ-REDIRECT-HOST" => profile(&[Network, Demonstrated], Gain::Takeover, &["10.4.1"], 2),
        "ENDPOINT-AUTHZ-REDIRECT-NOT-EXACT" => {
            profile(&[Network, Demonstrated, OtherFlaw], Gain::Takeover, &["10.4.1"], 2)
        }
        "ENDPOINT-AUTHZ-REDIRECT-DOWNGRADE" => profile(&[Network, OtherFlaw], Gain::Takeover, &["10.4.1"], 2),
        "ENDPOINT-AUTHZ-PKCE-MISSING" => profile(&[Network, OtherFlaw], Gain::Takeover, &["10.4.6"], 4),
        "ENDPOINT-AUTHZ-PKCE-PLAIN" => profile(&[Network, OtherFlaw], Gain::Weakening, &["10.4.6"], 2),
        "ENDPOINT-AUTHZ-STATE-DROPPED" | "ENDPOINT-AUTHZ-NO-ISS" => {
            profile(&[Network, OtherFlaw], Gain::Weakening, &[], 1)
        }
        "ENDPOINT-AUTHZ-OPEN-REDIRECT" => profile(&[Network, Demonstrated], Gain::Weakening, &[], 1),
        "ENDPOINT-AUTHZ-NOT-PROBED" => profile(&[], Gain::Observation, &[], 0),
        // Code (`audit source`).
        "CODE-CLIENT-SIDE-SIGNING" => profile(&[Public], Gain::Forgery, &["9.1.1", "13.3.1"], 40),
        "CODE-ALGORITHM-FROM-TOKEN" | "CODE-ALG-NONE-ALLOWED" | "CODE-MIXED-ALGORITHM-FAMILIES" => {
            profile(&[Network], Gain::Forgery, &["9.1.2"], 1)
        }
        "CODE-SIGNATURE-CHECK-OFF" => profile(&[Network], Gain::Forgery, &["9.1.1"], 1),
        "CODE-DECODE-WITHOUT-VERIFY" => profile(&[Network, OtherFlaw], Gain::Escalation, &["9.1.1"], 2),
        "CODE-EXPIRY-CHECK-OFF" | "CODE-UNBOUNDED-LEEWAY" => profile(&[StolenToken], Gain::Takeover, &["9.2.1"], 1),
        "CODE-HARD-CODED-SECRET" => profile(&[Insider], Gain::Forgery, &["13.3.1"], 8),
        "CODE-WEAK-SECRET" => profile(&[Network, OwnToken], Gain::Forgery, &["11.2.3", "11.5.1", "13.3.1"], 8),
        "CODE-FALLBACK-SECRET" => profile(&[OtherFlaw], Gain::Forgery, &["13.3.1"], 2),
        "CODE-KID-INJECTION" => profile(&[Network], Gain::Forgery, &["1.2.4", "1.2.5", "5.3.2", "1.3.6", "9.1.3"], 4),
        "CODE-HEADER-URL-FETCHED" => profile(&[Network], Gain::Forgery, &["9.1.3", "1.3.6"], 4),
        "CODE-HEADER-KEY-TRUSTED" => profile(&[Network], Gain::Forgery, &["9.1.3"], 2),
        "CODE-MISSING-AUDIENCE-CHECK" => profile(&[OwnToken], Gain::Escalation, &["9.2.3"], 1),
        "CODE-MISSING-ISSUER-CHECK" => profile(&[OwnToken, OtherFlaw], Gain::Escalation, &["9.2.3"], 1),
        "CODE-TOKEN-IN-WEB-STORAGE" => profile(&[OtherFlaw], Gain::Takeover, &["3.3.4", "10.1.1"], 16),
        "CODE-TOKEN-COOKIE-FLAGS" => profile(&[OtherFlaw], Gain::Takeover, &["3.3.1", "3.3.2", "3.3.4"], 2),
        "CODE-REFRESH-NOT-ROTATED" | "CODE-REFRESH-REUSE-UNDETECTED" => {
            profile(&[StolenToken], Gain::Takeover, &["10.4.5", "7.4.1"], 8)
        }
        // Dependencies: rated by the advisory's own severity (see `rate`).
        "DEP-VULNERABLE-JWT-LIBRARY" => profile(&[Network], Gain::Weakening, &["15.1.1", "15.2.1"], 4),
        _ => return None,
    })
}

/// Likelihood and impact of a finding with this id and severity. Vulnerable dependencies take both from the
/// advisory's severity (the table says how bad the flaw is, not how it is reached); unknown ids too.
#[must_use]
pub fn rate(id: &str, severity: Severity) -> (u8, u8) {
    match profile_of(id) {
        Some(profile) if id != "DEP-VULNERABLE-JWT-LIBRARY" => (profile.likelihood(), profile.impact()),
        _ => {
            let level = severity.likelihood();
            // An advisory is exploitable from the network when the library is on the token path: one step below
            // its severity for likelihood (the vulnerable function may not be called), severity for impact.
            (level.saturating_sub(1).max(1), level)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likelihood_and_impact_are_rated_apart() {
        // Public and forging: the worst cell.
        assert_eq!(rate("CODE-CLIENT-SIDE-SIGNING", Severity::Critical), (5, 5));
        // Forging too, but only with the source: as bad, far less likely.
        assert_eq!(rate("CODE-HARD-CODED-SECRET", Severity::High), (1, 5));
        // Likely but with little to gain.
        assert_eq!(rate("JWKS-NO-CACHE-CONTROL", Severity::Low), (4, 2));
        // Shown on the live system.
        assert_eq!(rate("ENDPOINT-ALG-NONE", Severity::Critical), (5, 5));
        // A stolen token that keeps working.
        assert_eq!(rate("JWT-NO-EXP", Severity::High), (2, 4));
        // Advisories and unknown ids follow severity.
        assert_eq!(rate("DEP-VULNERABLE-JWT-LIBRARY", Severity::High), (3, 4));
        assert_eq!(rate("SOMETHING-NEW", Severity::Medium), (2, 3));
    }

    #[test]
    fn the_matrix_is_not_a_diagonal() {
        let ids = [
            "JWT-ALG-NONE",
            "JWT-WEAK-HMAC-SECRET",
            "JWT-NO-EXP",
            "JWT-PERSONAL-DATA",
            "JWKS-PRIVATE-KEY",
            "JWKS-LONG-CACHE",
            "ENDPOINT-OVERSIZED",
            "CODE-TOKEN-IN-WEB-STORAGE",
            "CODE-MISSING-AUDIENCE-CHECK",
            "CODE-HARD-CODED-SECRET",
        ];
        let off_diagonal = ids.iter().filter(|id| {
            let (likelihood, impact) = rate(id, Severity::High);
            likelihood != impact
        });
        assert!(off_diagonal.count() >= 7);
    }
}
