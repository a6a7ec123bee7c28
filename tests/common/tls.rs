//! TLS for the tests: a certificate authority and server certificates made in the test with
//! rcgen, a ringcast started with RTMPS and HTTPS listeners on them, and a small rustls client
//! that reports which certificate a listener presents.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::free_port;
use super::server::Server;

/// A test CA and the files of the server certificate currently installed.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A leaf certificate in PEM, with its DER for comparisons.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestPki {
    /// A fresh CA, and a server certificate for `localhost` and 127.0.0.1 installed in
    /// `cert.pem` / `key.pem`.
    pub fn new() -> (TestPki, Leaf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ringcast test CA");
        let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let pki = TestPki {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            ca_file,
            dir,
            ca_params,
            ca_key,
        };
        let leaf = pki.issue("ringcast test server 1");
        pki.install(&leaf);
        (pki, leaf)
    }

    /// A new server certificate (for localhost and 127.0.0.1) signed by the CA.
    pub fn issue(&self, common_name: &str) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes `leaf` over the installed certificate and key files.
    pub fn install(&self, leaf: &Leaf) {
        std::fs::write(&self.cert_file, &leaf.cert_pem).expect("write cert");
        std::fs::write(&self.key_file, &leaf.key_pem).expect("write key");
    }

    /// The server flags naming the installed files.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_file.display().to_string(),
            "--tls-key".into(),
            self.key_file.display().to_string(),
        ]
    }
}

/// A ringcast with RTMPS and HTTPS listeners beside its plain ones.
pub struct TlsServer {
    pub server: Server,
    pub pki: TestPki,
    pub leaf: Leaf,
    pub rtmps_port: u16,
    pub https_port: u16,
}

impl TlsServer {
    pub fn start(workers: u32, config: Option<&str>) -> TlsServer {
        let (pki, leaf) = TestPki::new();
        let (rtmps_port, https_port) = (free_port(), free_port());
        let mut args = vec![
            "--rtmps".to_owned(),
            format!("127.0.0.1:{rtmps_port}"),
            "--https".to_owned(),
            format!("127.0.0.1:{https_port}"),
        ];
        args.extend(pki.flags());
        let server = Server::start_with_args(workers, config, &args);
        TlsServer {
            server,
            pki,
            leaf,
            rtmps_port,
            https_port,
        }
    }

    pub fn rtmps_url(&self, app: &str, key: &str) -> String {
        format!("rtmps://127.0.0.1:{}/{app}/{key}", self.rtmps_port)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    pub fn rtmps_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rtmps_port)
    }
}

/// A rustls client config trusting only `ca_file`.
pub fn client_config(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects to `addr` with a verifying TLS client (SNI `localhost`) and returns the leaf
/// certificate the server presented, or the error that stopped the handshake.
pub fn presented_certificate(addr: &str, ca_file: &Path) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn =
        rustls::ClientConnection::new(client_config(ca_file), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no certificate")?;
    Ok(cert)
}

/// `GET path` over HTTPS with a verifying client; the whole response as text.
pub fn https_get(addr: &str, ca_file: &Path, path: &str) -> String {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(client_config(ca_file), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = Vec::new();
    // A clean close (close_notify) ends the read; anything else is an error here.
    tls.read_to_end(&mut response)
        .expect("read HTTPS response to its close_notify");
    String::from_utf8_lossy(&response).into_owned()
}
