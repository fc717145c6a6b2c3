//! Who may act through the view, and the protection of its state-changing requests against cross-site forgery.

use axum::http::HeaderMap;
use axum::http::request::Parts;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What someone asks the view to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Approve the manual gate of this id (`<run id>/<step>`).
    Approve {
        /// The gate.
        gate: String,
    },
    /// Reject the manual gate of this id; the run takes its failure path.
    Reject {
        /// The gate.
        gate: String,
    },
}

/// Decides who may act through the view: the host's own login (a session cookie, a header its proxy sets, a
/// bearer token) is in the request. Without an authorizer the view is read-only.
///
/// Any `Fn(&Parts, &Action) -> Option<String> + Send + Sync + 'static` is an authorizer.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// The name of whoever sends `request` if they may take `action` (it is recorded with the decision); `None`
    /// refuses it.
    async fn authorize(&self, request: &Parts, action: &Action) -> Option<String>;
}

#[async_trait::async_trait]
impl<F> Authorizer for F
where
    F: Fn(&Parts, &Action) -> Option<String> + Send + Sync + 'static,
{
    async fn authorize(&self, request: &Parts, action: &Action) -> Option<String> {
        self(request, action)
    }
}

/// The name of the cookie that carries a browser's anti-forgery token.
pub(crate) const CSRF_COOKIE: &str = "gantry_csrf";
/// The header a page sends the token back in.
pub(crate) const CSRF_HEADER: &str = "x-gantry-csrf";

/// Anti-forgery tokens: a random nonce per browser with an HMAC under a key of this view, set as a `SameSite=Strict`
/// cookie and written into each page. A state-changing request must carry the token in a header, equal to its
/// cookie, with a valid HMAC, and (when the browser says where it comes from) from the view's own origin. Another
/// site can neither read the token nor set the header without a CORS preflight, which the view never grants.
#[derive(Clone)]
pub(crate) struct Csrf {
    key: [u8; 32],
}

impl Csrf {
    /// A random key: tokens are valid for this process only.
    pub(crate) fn new() -> Self {
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key).expect("the operating system gives random bytes");
        Self { key }
    }

    /// A key derived from `secret`: replicas that share it accept each other's tokens.
    pub(crate) fn from_secret(secret: &str) -> Self {
        use sha2::Digest as _;
        let digest = Sha256::digest(format!("gantry-web csrf key\n{secret}").as_bytes());
        let mut key = [0_u8; 32];
        key.copy_from_slice(&digest);
        Self { key }
    }

    fn mac(&self, nonce: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(nonce.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A fresh token.
    pub(crate) fn issue(&self) -> String {
        let mut nonce = [0_u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system gives random bytes");
        let nonce = hex(&nonce);
        let mac = self.mac(&nonce);
        format!("{nonce}.{mac}")
    }

    /// Whether `token` is one of this view's.
    pub(crate) fn valid(&self, token: &str) -> bool {
        let Some((nonce, mac)) = token.split_once('.') else { return false };
        let expected = self.mac(nonce);
        // Constant time: compare every byte.
        expected.len() == mac.len() && expected.bytes().zip(mac.bytes()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The browser's token from its cookie, if it has a valid one.
    pub(crate) fn token_in_cookie(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, CSRF_COOKIE).filter(|t| self.valid(t))
    }

    /// Why a state-changing request is refused as a possible forgery, or `None` if it passes.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Option<&'static str> {
        let Some(cookie) = cookie(headers, CSRF_COOKIE) else {
            return Some("no anti-forgery cookie: load the page first");
        };
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(cookie.as_str()) || !self.valid(&cookie) {
            return Some("the anti-forgery token is missing or wrong");
        }
        // Behind a proxy that rewrites `Host`, the browser's host is in `X-Forwarded-Host`.
        let host = headers.get("x-forwarded-host").or_else(|| headers.get("host"));
        if let (Some(origin), Some(host)) = (headers.get("origin"), host) {
            let origin = origin.to_str().unwrap_or("");
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            let host = host.to_str().unwrap_or("").split(',').next().unwrap_or("").trim();
            if origin_host != host {
                return Some("the request comes from another site");
            }
        }
        if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site") {
            return Some("the request comes from another site");
        }
        None
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_a_token_of_this_view_sent_back_in_the_header_passes() {
        let csrf = Csrf::new();
        let token = csrf.issue();
        let cookie = format!("other=1; {CSRF_COOKIE}={token}");
        assert_eq!(csrf.check(&headers(&[("cookie", &cookie), (CSRF_HEADER, &token)])), None);
        assert!(csrf.check(&headers(&[("cookie", &cookie)])).is_some(), "no header");
        assert!(csrf.check(&headers(&[(CSRF_HEADER, &token)])).is_some(), "no cookie");
        let forged = format!("{}.{}", "00".repeat(16), "11".repeat(32));
        let forged_cookie = format!("{CSRF_COOKIE}={forged}");
        assert!(csrf.check(&headers(&[("cookie", &forged_cookie), (CSRF_HEADER, &forged)])).is_some(), "not ours");
        let other = Csrf::new().issue();
        let other_cookie = format!("{CSRF_COOKIE}={other}");
        assert!(csrf.check(&headers(&[("cookie", &other_cookie), (CSRF_HEADER, &other)])).is_some(), "another view's");
        let cross =
            [("cookie", cookie.as_str()), (CSRF_HEADER, &token), ("origin", "https://evil.test"), ("host", "ci.test")];
        assert!(csrf.check(&headers(&cross)).is_some(), "another origin");
        let same =
            [("cookie", cookie.as_str()), (CSRF_HEADER, &token), ("origin", "https://ci.test"), ("host", "ci.test")];
        assert_eq!(csrf.check(&headers(&same)), None);
    }
}
