//! The retry policy, as pure functions: which answers are retried, how
//! long to wait, and how `Retry-After` is read. Delivery rules (docs/ARCHITECTURE.md):
//! 2xx delivers; 408, 429 and 5xx other than 501, timeouts and connection
//! errors are retried; 401, 403 and 407 (credentials that fail: an
//! operator's mistake that will be fixed) keep the batch and retry it at the
//! capped delay; every other status is permanent and the batch is dropped. Delays grow exponentially from `PROCSHIP_RETRY_INITIAL` up to
//! `PROCSHIP_RETRY_MAX_DELAY` (backon's `ExponentialBuilder`) with full
//! jitter (a uniform draw in [0, delay]: backon's own jitter only adds to the
//! delay, which keeps a fleet that failed together in step), and never less
//! than what the server asked for in `Retry-After`.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::{ConfigError, Values, Var, parse_positive_duration};

pub const VARS: &[Var] = &[
    Var::new(
        "RETRY_INITIAL",
        "1",
        "first retry delay; doubles on every failure (full jitter)",
    ),
    Var::new("RETRY_MAX_DELAY", "60", "cap on the retry delay"),
];

/// `PROCSHIP_RETRY_INITIAL` and `PROCSHIP_RETRY_MAX_DELAY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub initial: Duration,
    pub max_delay: Duration,
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let initial = v.get("RETRY_INITIAL", parse_positive_duration)?;
        let max_delay = v.get("RETRY_MAX_DELAY", parse_positive_duration)?;
        if max_delay < initial {
            return Err(v.invalid(
                "RETRY_MAX_DELAY",
                "a delay no shorter than PROCSHIP_RETRY_INITIAL",
            ));
        }
        Ok(Options { initial, max_delay })
    }
}

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again; `after` is the server's Retry-After, if it gave one.
    Retry {
        after: Option<Duration>,
    },
    /// The credentials were refused: keep the batch, retry at the capped
    /// delay (or the server's Retry-After, if longer).
    Refused {
        after: Option<Duration>,
    },
    /// Permanent: drop the batch.
    Reject,
}

/// The decision on an answer: its status, `Retry-After` and the first bytes
/// of its body.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    body_head: &str,
    now: SystemTime,
) -> Decision {
    let after = || retry_after.and_then(|v| parse_retry_after(v, now));
    match status {
        200..=299 => Decision::Delivered,
        408 | 429 | 500 | 502..=599 => Decision::Retry { after: after() },
        401 | 403 | 407 => Decision::Refused { after: after() },
        _ if wants_client_certificate(status, body_head) => Decision::Refused { after: after() },
        _ => Decision::Reject,
    }
}

/// A TLS-terminating proxy (nginx with `ssl_verify_client on`) that wants a
/// client certificate answers 400 with this in its body: credentials that
/// fail, not a bad batch.
fn wants_client_certificate(status: u16, body_head: &str) -> bool {
    status == 400 && body_head.contains("SSL certificate")
}

/// What an operator should check after an answer that is not a delivery
/// and not worth a fast retry, by status (and body).
pub fn reject_hint(status: u16, body_head: &str) -> &'static str {
    let client_certificate = wants_client_certificate(status, body_head);
    match status {
        401 | 403 => {
            "authentication failed: check PROCSHIP_AUTH_TOKEN, an Authorization header in \
             PROCSHIP_HEADERS, or user:password in PROCSHIP_INGEST_URL"
        }
        407 => "the proxy refused the credentials: check the proxy's user:password",
        400 if client_certificate => {
            "the server wants a client certificate: set PROCSHIP_TLS_CERT_FILE and PROCSHIP_TLS_KEY_FILE"
        }
        404 | 405 => {
            "the URL does not take writes: check PROCSHIP_INGEST_URL's path for \
             PROCSHIP_FORMAT (README, Backends)"
        }
        413 => "the batch is too large for the backend: lower PROCSHIP_BATCH_MAX_POINTS",
        400 | 415 | 422 => "the backend cannot parse the batch: check PROCSHIP_FORMAT for this URL",
        _ => "the backend rejected the batch (permanent error)",
    }
}

/// A server may ask for at most this long; beyond it is taken as a misconfiguration.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// `Retry-After` as delay-seconds or an HTTP-date, capped at `MAX_RETRY_AFTER`.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// Delays for the retries of one batch.
pub struct Backoff {
    steps: <ExponentialBuilder as BackoffBuilder>::Backoff,
    rng: fastrand::Rng,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            steps: ExponentialBuilder::default()
                .with_min_delay(initial)
                .with_max_delay(max)
                .with_factor(2.0)
                .without_max_times()
                .build(),
            rng: fastrand::Rng::with_seed(seed),
            max,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn next_ceiling(&mut self) -> Duration {
        self.steps.next().unwrap_or(self.max)
    }

    /// The next delay: full jitter under the exponential ceiling, but at
    /// least the server's Retry-After.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.next_ceiling();
        let jittered = ceiling.mul_f64(self.rng.f64());
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn statuses() {
        let now = SystemTime::now();
        for s in [200, 201, 204] {
            assert_eq!(classify(s, None, "", now), Decision::Delivered);
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(
                classify(s, None, "", now),
                Decision::Retry { after: None },
                "{s}"
            );
        }
        for s in [301, 400, 404, 413, 501] {
            assert_eq!(classify(s, None, "", now), Decision::Reject, "{s}");
        }
        let nginx = "<html><center>No required SSL certificate was sent</center>";
        assert_eq!(
            classify(400, None, nginx, now),
            Decision::Refused { after: None }
        );
        assert_eq!(
            classify(400, None, "unable to parse", now),
            Decision::Reject
        );
        assert!(reject_hint(400, nginx).contains("PROCSHIP_TLS_CERT_FILE"));
        for s in [401, 403, 407] {
            assert_eq!(
                classify(s, None, "", now),
                Decision::Refused { after: None },
                "{s}"
            );
        }
        assert_eq!(
            classify(401, Some("120"), "", now),
            Decision::Refused {
                after: Some(S(120))
            }
        );
        assert_eq!(
            classify(429, Some("2"), "", now),
            Decision::Retry { after: Some(S(2)) }
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + S(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(S(7)));
        let date = httpdate::fmt_http_date(now + S(30));
        assert_eq!(parse_retry_after(&date, now), Some(S(30)));
        let past = httpdate::fmt_http_date(now - S(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut b = Backoff::new(S(1), S(10), 1);
        let got: Vec<u64> = (0..6).map(|_| b.next_ceiling().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_spreads() {
        let mut b = Backoff::new(S(8), S(8), 42);
        let d: Vec<Duration> = (0..200).map(|_| b.next_delay(None)).collect();
        assert!(d.iter().all(|x| *x <= S(8)));
        assert!(
            d.iter().any(|x| *x < S(2)) && d.iter().any(|x| *x > S(6)),
            "uniform over [0, 8s]"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(10), 7);
        for _ in 0..20 {
            assert!(b.next_delay(Some(S(2))) >= S(2));
        }
    }

    #[test]
    fn rejects_name_what_to_check() {
        assert!(reject_hint(401, "").contains("PROCSHIP_AUTH_TOKEN"));
        assert!(reject_hint(403, "").starts_with("authentication failed"));
        assert!(reject_hint(404, "").contains("PROCSHIP_INGEST_URL"));
        assert!(reject_hint(413, "").contains("BATCH_MAX_POINTS"));
        assert!(reject_hint(400, "").contains("PROCSHIP_FORMAT"));
        assert!(reject_hint(418, "").contains("permanent"));
    }
}
