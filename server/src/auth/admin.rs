//! Admin view tokens (ADM-01..04, AMB-17): `ADM1-<unix seconds>-<40 hex HMAC-SHA1>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Tokens stamped this far in the future are still accepted (clock skew between the API
/// caller and the server does not exist here, but an operator's NTP step might).
const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Mints and checks admin view tokens with the server secret.
#[derive(Clone)]
pub struct AdminTokens {
    secret: Vec<u8>,
    ttl: Duration,
    /// `STREAMER_ADMIN_VIEW_DISABLED=true`: no minting (405) and no acceptance.
    disabled: bool,
}

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokens")
            .field("ttl", &self.ttl)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl AdminTokens {
    pub fn new(secret: impl Into<Vec<u8>>, ttl: Duration, disabled: bool) -> AdminTokens {
        AdminTokens {
            secret: secret.into(),
            ttl,
            disabled,
        }
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// A new token for `now`; `None` when minting is disabled.
    pub fn mint(&self, now: SystemTime) -> Option<String> {
        if self.disabled {
            return None;
        }
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let prefix = format!("ADM1-{secs}");
        Some(format!("{prefix}-{}", hex::encode(self.mac(&prefix))))
    }

    /// Whether `token` is a valid, unexpired token of this server. Comparison is constant-time.
    pub fn verify(&self, token: &str, now: SystemTime) -> bool {
        self.valid_until(token, now).is_some()
    }

    /// For a valid, unexpired token of this server: the moment it stops being valid (the
    /// first whole second past its stamp plus the TTL). A session it admitted ends then.
    pub fn valid_until(&self, token: &str, now: SystemTime) -> Option<SystemTime> {
        if self.disabled {
            return None;
        }
        let (prefix, sig_hex) = token.rsplit_once('-')?;
        let secs = prefix.strip_prefix("ADM1-").and_then(|s| s.parse::<u64>().ok())?;
        if sig_hex.len() != 40 {
            return None;
        }
        let sig = hex::decode(sig_hex).ok()?;
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if secs > now_secs + FUTURE_SKEW.as_secs() || now_secs.saturating_sub(secs) > self.ttl.as_secs() {
            return None;
        }
        let mut mac = HmacSha1::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(prefix.as_bytes());
        mac.verify_slice(&sig).ok()?;
        // Valid while `now_secs - secs <= ttl`: up to the end of second `secs + ttl`.
        let end = secs.saturating_add(self.ttl.as_secs()).saturating_add(1);
        UNIX_EPOCH.checked_add(Duration::from_secs(end))
    }

    fn mac(&self, prefix: &str) -> Vec<u8> {
        let mut mac = HmacSha1::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(prefix.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn minted_token_verifies_within_ttl_only() {
        let t = AdminTokens::new("s3cret", Duration::from_secs(3600), false);
        let token = t.mint(at(1_000_000)).expect("enabled");
        assert!(token.starts_with("ADM1-1000000-"));
        assert!(t.verify(&token, at(1_000_000)));
        assert!(t.verify(&token, at(1_003_600)));
        assert!(!t.verify(&token, at(1_003_601)), "expired");
        assert!(!t.verify(&token, at(999_000)), "from the future");
    }

    #[test]
    fn a_valid_token_says_when_it_ends() {
        let t = AdminTokens::new("s3cret", Duration::from_secs(5), false);
        let token = t.mint(at(1_000_000)).expect("enabled");
        assert_eq!(t.valid_until(&token, at(1_000_000)), Some(at(1_000_006)));
        assert_eq!(t.valid_until(&token, at(1_000_005)), Some(at(1_000_006)));
        assert_eq!(t.valid_until(&token, at(1_000_006)), None, "ended");
        assert_eq!(t.valid_until("ADM1-1000000-00", at(1_000_000)), None);
    }

    #[test]
    fn forged_altered_and_foreign_tokens_fail() {
        let t = AdminTokens::new("s3cret", Duration::from_secs(3600), false);
        let other = AdminTokens::new("other", Duration::from_secs(3600), false);
        let now = at(2_000_000);
        let token = t.mint(now).expect("enabled");
        assert!(!other.verify(&token, now), "foreign secret");
        let altered_ts = token.replacen("ADM1-2000000", "ADM1-2000001", 1);
        assert!(!t.verify(&altered_ts, now));
        let mut altered_sig = token.clone();
        let last = altered_sig.pop().expect("non-empty");
        altered_sig.push(if last == '0' { '1' } else { '0' });
        assert!(!t.verify(&altered_sig, now));
        assert!(!t.verify("ADM1-2000000-0000000000000000000000000000000000000000", now));
        assert!(!t.verify("ADM", now));
        assert!(!t.verify("ADM1--", now));
    }

    #[test]
    fn disabled_means_no_mint_and_no_accept() {
        let on = AdminTokens::new("k", Duration::from_secs(60), false);
        let off = AdminTokens::new("k", Duration::from_secs(60), true);
        let now = at(5_000);
        let token = on.mint(now).expect("enabled");
        assert_eq!(off.mint(now), None);
        assert!(!off.verify(&token, now));
    }
}
