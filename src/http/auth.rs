//! Bearer-token authentication for the HTTP endpoints.
//!
//! When `http.bearer_token` is set, every path except the probes (`/healthz`, `/readyz`)
//! requires `Authorization: Bearer <token>`: `/api/v1/*` shows thread keys and subjects, and
//! `/metrics` shows thread keys of active storms, and Prometheus scrape configs carry a bearer
//! token natively (`authorization: {credentials_file: ...}`). The probes stay open because
//! kubelet probes carry no token and reveal nothing. Unknown paths are protected too (deny by
//! default), so a route added later cannot be left open by mistake.
//!
//! The presented token is compared in constant time (a fold of XORs over the bytes), so the
//! time to reject a guess does not tell how many leading bytes were right; only the length can
//! leak, which a long random token makes worthless. The token is never logged or printed.

use axum::http::HeaderValue;

/// Why a configured bearer token is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is empty or only whitespace: an operator who set one meant to protect the
    /// endpoints, so it is refused rather than treated as "no token".
    #[error("http.bearer_token is empty")]
    Empty,
    /// The token has a character that cannot travel in an `Authorization` header unchanged
    /// (only visible ASCII without spaces can).
    #[error("http.bearer_token must be visible ASCII without spaces")]
    InvalidCharacter,
}

/// The configured bearer token. Its `Debug` form hides the value.
#[derive(Clone)]
pub struct BearerToken(Box<[u8]>);

impl BearerToken {
    /// Validates a configured token (surrounding whitespace is ignored).
    pub fn new(token: &str) -> Result<Self, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::InvalidCharacter);
        }
        Ok(Self(token.as_bytes().into()))
    }

    /// Whether an `Authorization` header value presents this token: the scheme `Bearer`
    /// (case-insensitive, RFC 7235), spaces, then the token, compared in constant time.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let value = value.as_bytes();
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = value.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = rest.trim_ascii();
        constant_time_eq(presented, &self.0)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Byte equality whose time depends only on the lengths, never on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// Whether a path is a probe, open even when a token is configured.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn accepts_only_the_bearer_token() {
        let token = BearerToken::new(" s3cr3t-token ").unwrap();
        assert!(token.accepts(Some(&header("Bearer s3cr3t-token"))));
        assert!(token.accepts(Some(&header("bearer   s3cr3t-token"))));
        assert!(!token.accepts(None));
        assert!(!token.accepts(Some(&header("Bearer"))));
        assert!(!token.accepts(Some(&header("Bearer "))));
        assert!(!token.accepts(Some(&header("Bearer wrong"))));
        assert!(!token.accepts(Some(&header("Basic s3cr3t-token"))));
        assert!(!token.accepts(Some(&header("s3cr3t-token"))));
        assert!(!token.accepts(Some(&header("Bearer s3cr3t-token2"))));
    }

    #[test]
    fn refuses_unusable_tokens_and_hides_the_value() {
        assert_eq!(BearerToken::new("  ").unwrap_err(), TokenError::Empty);
        assert_eq!(
            BearerToken::new("two words").unwrap_err(),
            TokenError::InvalidCharacter
        );
        assert_eq!(
            BearerToken::new("clé").unwrap_err(),
            TokenError::InvalidCharacter
        );
        let token = BearerToken::new("hunter2").unwrap();
        assert!(!format!("{token:?}").contains("hunter2"));
    }

    #[test]
    fn only_probes_are_open() {
        assert!(is_probe("/healthz"));
        assert!(is_probe("/readyz"));
        assert!(!is_probe("/metrics"));
        assert!(!is_probe("/api/v1/storms"));
        assert!(!is_probe("/healthz/"));
    }
}
