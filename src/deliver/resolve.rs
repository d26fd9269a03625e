//! A caching name resolver for the shipper's HTTP agent. ureq's default
//! resolver runs getaddrinfo on a fresh thread for every request so that it
//! can time out; at one POST per cycle that thread spawn was the largest part
//! of the agent's fixed cost per cycle. This keeps the answer for `TTL`,
//! then asks again, still through ureq's resolver and its timeout. A
//! transport error makes the shipper call `forget`, so a backend that moved
//! is found again at the next attempt. (ureq's resolver API is in its
//! `unversioned` module: Cargo.toml pins ureq's minor version.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone)]
pub struct CachingResolver {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    resolver: DefaultResolver,
    /// (authority, answer, when asked)
    cache: Mutex<Option<(String, ResolvedSocketAddrs, Instant)>>,
}

impl CachingResolver {
    /// Drops the cached answer: the next request resolves again.
    pub fn forget(&self) {
        *self.inner.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let scheme = uri.scheme_str().unwrap_or("");
        let authority = uri.authority().map_or("", |a| a.as_str());
        if let Some((k, addrs, at)) = &*self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
            && is_key_of(k, scheme, authority)
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolver.resolve(uri, config, timeout)?;
        *self.inner.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            format!("{scheme}://{authority}"),
            addrs.clone(),
            Instant::now(),
        ));
        Ok(addrs)
    }
}

/// Whether a cached answer's key (`scheme://authority`) is the one of this
/// scheme and authority: compared in place, nothing allocated on a hit.
fn is_key_of(key: &str, scheme: &str, authority: &str) -> bool {
    key.strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        == Some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_only_its_own_scheme_and_authority() {
        let key = "http://127.0.0.1:8428";
        assert!(is_key_of(key, "http", "127.0.0.1:8428"));
        assert!(!is_key_of(key, "https", "127.0.0.1:8428"));
        assert!(!is_key_of(
            "https://127.0.0.1:8428",
            "http",
            "127.0.0.1:8428"
        ));
        assert!(!is_key_of(key, "http", "127.0.0.1:8429"));
        assert!(!is_key_of(key, "http", "127.0.0.1:842"));
        assert!(!is_key_of(key, "http", ""));
    }
}
