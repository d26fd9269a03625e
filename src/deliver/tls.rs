//! TLS for the ingest URL: whom the agent trusts and who it says it is.
//!
//! - **Trust**: the system's trust store (what `update-ca-certificates`
//!   manages, found as OpenSSL finds it, `SSL_CERT_FILE`/`SSL_CERT_DIR`
//!   honoured), plus the CA certificates of `PROCSHIP_TLS_CA_FILE` (PEM).
//!   Where a system has no store, the roots bundled in the binary (Mozilla's)
//!   are used instead, or only the CA file when one is given.
//! - **Client certificate** (mTLS): `PROCSHIP_TLS_CERT_FILE` and
//!   `PROCSHIP_TLS_KEY_FILE` (PEM), both or neither. Renewal jobs rename new
//!   files over the old: SIGHUP loads the new pair for the next connection,
//!   and so does the agent by itself when it sees the files change (it
//!   looks once a minute); a pair that fails to load keeps the old one,
//!   loudly (a reload is refused as a whole).
//! - `PROCSHIP_TLS_INSECURE_SKIP_VERIFY=true` verifies nothing, for a test
//!   bench only: warned at start.
//!
//! The files are read when the configuration is (start and SIGHUP), so an
//! unreadable or malformed file exits 78 naming its variable. The system
//! store is read only for an `https://` URL: an `http://` agent keeps none
//! of it in memory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::config::{ConfigError, Values, Var, parse_bool};

pub const VARS: &[Var] = &[
    Var::new(
        "TLS_CA_FILE",
        "",
        "PEM file of CA certificates trusted for https, in addition to the system's trust store",
    )
    .live(),
    Var::new(
        "TLS_CERT_FILE",
        "",
        "PEM client certificate (chain) presented to the backend (mTLS); with PROCSHIP_TLS_KEY_FILE",
    )
    .live(),
    Var::new(
        "TLS_KEY_FILE",
        "",
        "PEM private key of PROCSHIP_TLS_CERT_FILE; keep it readable by the agent's user only",
    )
    .live(),
    Var::new(
        "TLS_INSECURE_SKIP_VERIFY",
        "false",
        "true: do not verify the server's certificate (a test bench only; warned at start)",
    )
    .live(),
];

/// Where the TLS files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Reads and checks the files; an error names the variable (without its prefix).
fn load(files: Files, insecure: bool) -> Result<Options, (&'static str, String)> {
    let (ca, ca_print) = match &files.ca {
        Some(p) => certificates(p).map_err(|e| ("TLS_CA_FILE", e))?,
        None => (Vec::new(), 0),
    };
    let (client, pair_print) = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => {
            let (chain, c_print) = certificates(c).map_err(|e| ("TLS_CERT_FILE", e))?;
            let (key, k_print) = private_key(k).map_err(|e| ("TLS_KEY_FILE", e))?;
            (
                Some(ClientCert::new_with_certs(&chain, key)),
                print(&[&c_print.to_le_bytes(), &k_print.to_le_bytes()]),
            )
        }
        _ => (None, 0),
    };
    Ok(Options {
        ca,
        client,
        insecure,
        files,
        ca_print,
        pair_print,
    })
}

/// The certificates and keys of the TLS variables, read and checked.
#[derive(Clone, Default)]
pub struct Options {
    pub ca: Vec<Certificate<'static>>,
    pub client: Option<ClientCert>,
    pub insecure: bool,
    /// Where they came from.
    pub files: Files,
    /// Hashes of the files' contents: a renewal renames new files over the
    /// old ones under the same names, and a reload must see it.
    pub ca_print: u64,
    pub pair_print: u64,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Options")
            .field("ca", &self.ca.len())
            .field("files", &self.files)
            .field("client", &self.client.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
            && self.insecure == other.insecure
            && self.ca_print == other.ca_print
            && self.pair_print == other.pair_print
    }
}

/// A hash of some files' contents, compared within one run only.
fn print(contents: &[&[u8]]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    contents.hash(&mut h);
    h.finish()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let md = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.len() > 1 << 20 {
        return Err("larger than 1 MiB: not a PEM file of certificates".into());
    }
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// Every certificate of a PEM file (at least one), and the file's hash.
fn certificates(path: &Path) -> Result<(Vec<Certificate<'static>>, u64), String> {
    let pem = read(path)?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not PEM: {e}"))? {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok((out, print(&[&pem])))
}

fn private_key(path: &Path) -> Result<(PrivateKey<'static>, u64), String> {
    let pem = read(path)?;
    let key = PrivateKey::from_pem(&pem).map_err(|_| {
        "holds no PEM private key (-----BEGIN PRIVATE KEY----- or an RSA/EC key)".to_string()
    })?;
    if let Ok(md) = std::fs::metadata(path)
        && md.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "PROCSHIP_TLS_KEY_FILE is readable by group or others; chmod 600 it"
        );
    }
    Ok((key, print(&[&pem])))
}

fn file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err("the absolute path of a PEM file".into());
    }
    Ok(p)
}

impl Options {
    pub fn parse(v: &mut Values) -> Result<Options, ConfigError> {
        let ca_file = v.opt("TLS_CA_FILE", file)?;
        let cert_file = v.opt("TLS_CERT_FILE", file)?;
        let key_file = v.opt("TLS_KEY_FILE", file)?;
        let insecure = v.get("TLS_INSECURE_SKIP_VERIFY", parse_bool)?;
        match (&cert_file, &key_file) {
            (Some(_), None) => {
                return Err(v.invalid(
                    "TLS_KEY_FILE",
                    "the key of PROCSHIP_TLS_CERT_FILE: set both or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(v.invalid(
                    "TLS_CERT_FILE",
                    "the certificate of PROCSHIP_TLS_KEY_FILE: set both or neither",
                ));
            }
            _ => {}
        }
        let files = Files {
            ca: ca_file,
            cert: cert_file,
            key: key_file,
        };
        load(files, insecure).map_err(|(name, why)| v.invalid(name, &why))
    }

    /// The same files read again (a renewal on disk, looked for every
    /// minute): `None` when they are unchanged, an error naming the
    /// variable when they no longer load.
    pub fn reread(&self) -> Option<Result<Options, String>> {
        match load(self.files.clone(), self.insecure) {
            Ok(new) if new == *self => None,
            Ok(new) => Some(Ok(new)),
            Err((name, why)) => Some(Err(format!("PROCSHIP_{name}: {why}"))),
        }
    }

    /// The rows whose files changed on disk under the same names (a renewal):
    /// a reload applies them although their values did not change.
    pub fn renewed(&self, new: &Options) -> Vec<&'static Var> {
        let renewed = [
            (
                "TLS_CA_FILE",
                self.files.ca == new.files.ca && self.ca_print != new.ca_print,
            ),
            (
                "TLS_CERT_FILE",
                self.files.cert == new.files.cert && self.pair_print != new.pair_print,
            ),
        ];
        VARS.iter()
            .filter(|v| renewed.iter().any(|(name, yes)| *yes && v.name == *name))
            .collect()
    }

    /// ureq's TLS configuration for an `https://` URL.
    pub fn config(&self) -> TlsConfig {
        if self.insecure {
            tracing::warn!(
                "PROCSHIP_TLS_INSECURE_SKIP_VERIFY=true: the backend's certificate is not verified; for a test bench only"
            );
        }
        TlsConfig::builder()
            .root_certs(self.roots())
            .client_cert(self.client.clone())
            .disable_verification(self.insecure)
            .build()
    }

    fn roots(&self) -> RootCerts {
        let system = rustls_native_certs::load_native_certs();
        for e in system.errors.iter().take(3) {
            tracing::debug!("system trust store: {e}");
        }
        let mut roots: Vec<Certificate<'static>> = system
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        if roots.is_empty() && self.ca.is_empty() {
            tracing::info!("no system trust store found: trusting the roots bundled in the agent");
            return RootCerts::WebPki;
        }
        if roots.is_empty() {
            tracing::warn!(
                "no system trust store found: only the CA certificates of PROCSHIP_TLS_CA_FILE are trusted"
            );
        }
        roots.extend(self.ca.iter().cloned());
        RootCerts::Specific(Arc::new(roots))
    }
}

/// What an operator should check for a TLS failure, from the error's text
/// (rustls names the problem); `None` when it is not about certificates.
pub fn hint(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    Some(
        if e.contains("unknownissuer") || e.contains("unknown issuer") {
            "the server's certificate is signed by a CA this host does not trust: set PROCSHIP_TLS_CA_FILE to the site's CA (PEM)"
        } else if e.contains("expired") || e.contains("notvalidyet") || e.contains("not valid yet")
        {
            "the server's certificate is expired or not yet valid: renew it (or check this host's clock)"
        } else if e.contains("notvalidforname") || e.contains("not valid for name") {
            "the server's certificate is not valid for the host in PROCSHIP_INGEST_URL: use the name it was issued for"
        } else if e.contains("certificaterequired") || e.contains("certificate required") {
            "the server wants a client certificate: set PROCSHIP_TLS_CERT_FILE and PROCSHIP_TLS_KEY_FILE"
        } else if e.contains("corrupt message")
            || e.contains("invalidcontenttype")
            || e.contains("invalid content type")
        {
            "no TLS at that port (a plain-HTTP server?): use http:// or the backend's TLS port in PROCSHIP_INGEST_URL"
        } else if e.contains("certificate") || e.contains("handshake") || e.contains("alert") {
            "the TLS handshake failed: check PROCSHIP_TLS_CA_FILE, PROCSHIP_TLS_CERT_FILE and PROCSHIP_TLS_KEY_FILE"
        } else {
            return None;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_on_disk_is_seen_and_a_broken_one_named() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let dir = crate::collect::testutil::tempdir();
        let ca = dir.join("ca.pem");
        std::fs::copy(fixtures.join("a.pem"), &ca).unwrap();
        let files = Files {
            ca: Some(ca.clone()),
            ..Files::default()
        };
        let first = load(files, false).unwrap();
        assert_eq!(first.ca.len(), 1);
        assert!(first.reread().is_none(), "unchanged");
        let tmp = dir.join("ca.pem.new");
        std::fs::copy(fixtures.join("b.pem"), &tmp).unwrap();
        std::fs::rename(&tmp, &ca).unwrap();
        let renewed = first.reread().unwrap().unwrap();
        assert_eq!(first.renewed(&renewed).len(), 1, "TLS_CA_FILE renewed");
        assert!(renewed.reread().is_none());
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = renewed.reread().unwrap().unwrap_err();
        assert!(
            e.contains("PROCSHIP_TLS_CA_FILE") && e.contains("no PEM certificate"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hints_name_the_problem_and_the_variable() {
        for (error, want) in [
            (
                "invalid peer certificate: UnknownIssuer",
                "PROCSHIP_TLS_CA_FILE",
            ),
            ("invalid peer certificate: Expired", "expired"),
            (
                "invalid peer certificate: NotValidForName",
                "not valid for the host",
            ),
            (
                "received fatal alert: CertificateRequired",
                "PROCSHIP_TLS_CERT_FILE",
            ),
            (
                "received corrupt message of type InvalidContentType",
                "plain-HTTP",
            ),
        ] {
            assert!(
                hint(error).is_some_and(|h| h.contains(want)),
                "{error}: {:?}",
                hint(error)
            );
        }
        assert_eq!(hint("Connection refused (os error 111)"), None);
    }
}
