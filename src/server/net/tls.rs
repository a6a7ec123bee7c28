//! TLS settings on rustls (the `ring` provider: builds with a C compiler only).
//!
//! Server side: [`CertStore`] holds the certificate chain and key from `[tls] cert_file` and
//! `key_file` behind a resolver that every listener's `ServerConfig` shares, so a reload (SIGHUP)
//! swaps the certificate for new handshakes while open connections keep theirs. A chain that
//! does not parse, or a key that does not match its certificate, is refused and the old pair
//! stays. Client side: [`ClientTls`] builds the settings for an outbound `connect`: roots from
//! webpki-roots (default), a CA file, or (loopback testing only) no verification at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    // ring builds with a C compiler alone (aws-lc-rs wants cmake on some hosts); its provider
    // lacks the post-quantum key exchange, which RTMPS clients do not offer anyway.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate or key could not be loaded. Names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    #[error("{path}: {what}")]
    File { path: PathBuf, what: String },
    #[error("{cert} and {key}: {what}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        what: String,
    },
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsLoadError {
    TlsLoadError::File {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

/// Reads every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsLoadError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Loads and checks a certificate chain and its private key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsLoadError> {
    let chain = load_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    CertifiedKey::from_der(chain, der, &provider())
        .map(Arc::new)
        .map_err(|e| TlsLoadError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            what: e.to_string(),
        })
}

/// The server certificate, reloadable; shared by every core.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads the pair; fails (naming the file) if it does not parse or match.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, TlsLoadError> {
        let pair = load_pair(cert_file, key_file)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(pair),
        }))
    }

    /// Re-reads the files. On error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let pair = load_pair(&self.cert_file, &self.key_file)?;
        if let Ok(mut current) = self.current.write() {
            *current = pair;
        }
        Ok(())
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }

    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    pub fn expiry_unix(&self) -> Option<i64> {
        let current = self.current()?;
        not_after_unix(current.cert.first()?)
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// A server config presenting this store's current certificate (HTTP/1.1 and RTMP speak
    /// no ALPN; none is configured).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        Ok(Arc::new(config))
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current()
    }
}

/// How an outbound connection checks the server (see [`super::connect()`]).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and checked against the certificate; `None`: the host connected to.
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Verifies against the Mozilla roots bundled from webpki-roots (the default).
    pub fn webpki_roots() -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Verifies against the CA certificates in a PEM file only.
    pub fn from_ca_file(path: &Path) -> Result<Self, TlsLoadError> {
        let mut roots = RootCertStore::empty();
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| file_error(path, e))?;
        }
        Self::with_roots(roots).map_err(|e| file_error(path, e))
    }

    /// The webpki roots, plus the CA file when one is given.
    pub fn roots_and_ca(ca_file: Option<&Path>) -> Result<Self, TlsLoadError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| file_error(path, e))?;
            }
        }
        Self::with_roots(roots).map_err(|e| file_error(Path::new("webpki-roots"), e))
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, rustls::Error> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Accepts any certificate: for tests and benchmarks on loopback only. Encrypts, but
    /// proves nothing about the server.
    pub fn insecure_no_verify() -> Result<Self, rustls::Error> {
        let provider = provider();
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Sends and checks `name` instead of the host connected to.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn name_for(&self, host: &str) -> std::io::Result<ServerName<'static>> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }
}

#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The notAfter of a DER certificate, in Unix seconds (a minimal DER walk: Certificate →
/// TBSCertificate → `[version]`, serial, signature, issuer, validity → notAfter).
pub fn not_after_unix(cert: &[u8]) -> Option<i64> {
    let (_, cert_body, _) = der_item(cert)?;
    let (_, tbs, _) = der_item(cert_body)?;
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        let (_, _, after) = der_item(rest)?; // serial, signature, issuer
        rest = after;
    }
    let (_, validity, _) = der_item(rest)?;
    let (_, _, after_not_before) = der_item(validity)?;
    let (tag, time, _) = der_item(after_not_before)?;
    parse_time(tag, time)
}

/// One DER item: (tag, contents, what follows).
fn der_item(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        (len, 2 + count)
    };
    let body = data.get(header..header.checked_add(len)?)?;
    Some((tag, body, &data[header + len..]))
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ) to Unix seconds.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times_convert_to_unix_seconds() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x18, b"garbage"), None);
    }

    #[test]
    fn truncated_der_yields_no_expiry() {
        assert_eq!(not_after_unix(&[0x30, 0x82, 0x01]), None);
        assert_eq!(not_after_unix(&[]), None);
    }
}
