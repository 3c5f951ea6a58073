//! Domain lock (DOM-01..03, AMB-18): the Referer's host must be a listed domain or a subdomain.

/// `true` when playback may go on. A missing Referer passes (DOM-02) unless `require_referer`
/// is set; a Referer without a parsable host fails.
pub fn referer_allowed(domains: &[String], require_referer: bool, referer: Option<&str>) -> bool {
    if domains.is_empty() {
        return true;
    }
    let Some(referer) = referer else {
        return !require_referer;
    };
    let Some(host) = referer_host(referer) else {
        return false;
    };
    domains.iter().any(|d| {
        let d = normalize(d);
        !d.is_empty() && (host == d || host.ends_with(&format!(".{d}")))
    })
}

/// The host of a Referer URL, lower-case, without port and trailing dot, IDNs in ASCII form.
fn referer_host(referer: &str) -> Option<String> {
    let url = url::Url::parse(referer).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    Some(normalize(host))
}

fn normalize(host: &str) -> String {
    let lower = host.trim().trim_end_matches('.').to_ascii_lowercase();
    // Listed domains may be written in Unicode; compare in the ASCII (punycode) form.
    url::Url::parse(&format!("http://{lower}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_domain_and_subdomains() {
        let d = list(&["good.com"]);
        assert!(referer_allowed(&d, false, Some("http://good.com/page")));
        assert!(referer_allowed(&d, false, Some("https://www.good.com:8443/x?y")));
        assert!(referer_allowed(&d, false, Some("http://GOOD.com./")));
        assert!(referer_allowed(&d, false, None));
    }

    #[test]
    fn require_referer_refuses_a_missing_referer_on_a_locked_stream_only() {
        let d = list(&["good.com"]);
        assert!(!referer_allowed(&d, true, None), "no Referer on a locked stream");
        assert!(referer_allowed(&d, true, Some("http://www.good.com/x")));
        assert!(!referer_allowed(&d, true, Some("http://evil.com/")));
        assert!(!referer_allowed(&d, true, Some("")), "an empty Referer names no host");
        assert!(referer_allowed(&[], true, None), "no lock, nothing to require");
    }

    #[test]
    fn tricks_do_not_pass() {
        let d = list(&["good.com"]);
        for r in [
            "http://good.com.evil.com/",
            "http://evil.com/?good.com",
            "http://good.com@evil.com/",
            "http://evilgood.com/",
            "not a url",
            "ftp://good.com/",
            "http://xn--gd-good.com/",
        ] {
            assert!(!referer_allowed(&d, false, Some(r)), "{r} must not pass");
        }
    }

    #[test]
    fn idn_domains_compare_in_ascii_form() {
        let d = list(&["bücher.de"]);
        assert!(referer_allowed(&d, false, Some("http://www.xn--bcher-kva.de/")));
        assert!(referer_allowed(&d, false, Some("http://bücher.de/")));
    }
}
