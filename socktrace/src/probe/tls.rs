//! `probe --tls`: a TLS handshake (rustls) over the connection the probe
//! made, and what it negotiated and was shown, as `openssl s_client` tells.
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _},
};
use tokio::net::TcpStream;

/// What the handshake negotiated and the certificate the server showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsReport {
    /// `TLSv1.3`, `TLSv1.2`.
    pub protocol: String,
    /// The IANA name: `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    pub handshake_ns: u64,
    pub subject: String,
    pub issuer: String,
    /// Whole days until the certificate's notAfter; negative once expired.
    pub days_left: i64,
    /// `Ok` when the chain verifies for the name probed, against the
    /// system's CA certificates and `--ca`; why not otherwise.
    pub trust: Result<(), String>,
}

/// The CA certificates to verify against: the system's, and `ca`'s.
pub struct TrustAnchors {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
}

impl TrustAnchors {
    pub fn load(ca: Option<&Path>) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        // A host without a CA bundle leaves the store empty: every chain is
        // then reported untrusted, which is what the host would decide.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(ca) = ca {
            let certs = CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.with_context(|| format!("reading {}", ca.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a CA certificate in {}", ca.display()))?;
                added += 1;
            }
            anyhow::ensure!(added > 0, "{} holds no PEM certificate", ca.display());
        }
        Ok(TrustAnchors {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            roots: Arc::new(roots),
        })
    }

    /// The handshake over `stream` for `host`, within `timeout`.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        host: &str,
        timeout: Duration,
    ) -> anyhow::Result<TlsReport> {
        let verifier = Arc::new(TrustRecorder {
            provider: self.provider.clone(),
            webpki: (!self.roots.is_empty())
                .then(|| {
                    WebPkiServerVerifier::builder_with_provider(
                        self.roots.clone(),
                        self.provider.clone(),
                    )
                    .build()
                })
                .transpose()
                .context("the certificate verifier")?,
            trust: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS versions")?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("`{host}` as a TLS server name"))?;
        let started = Instant::now();
        let tls = tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no TLS handshake within {} s", timeout.as_secs()))?
        .context("TLS handshake")?;
        let handshake_ns = started.elapsed().as_nanos() as u64;
        let (_, connection) = tls.get_ref();
        let certificate = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .context("the server showed no certificate")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
            .map_err(|error| anyhow::anyhow!("the server's certificate does not parse: {error}"))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        let trust = verifier
            .trust
            .lock()
            .map_err(|_| anyhow::anyhow!("the certificate verifier failed"))?
            .take()
            .context("the certificate was never verified")?;
        Ok(TlsReport {
            protocol: connection
                .protocol_version()
                .map_or_else(String::new, |version| {
                    version
                        .as_str()
                        .unwrap_or("unknown")
                        .replace("TLSv1_", "TLSv1.")
                }),
            cipher: connection
                .negotiated_cipher_suite()
                .map_or_else(String::new, |suite| {
                    suite.suite().as_str().unwrap_or("unknown").to_owned()
                }),
            handshake_ns,
            subject: parsed.subject().to_string(),
            issuer: parsed.issuer().to_string(),
            days_left: (parsed.validity().not_after.timestamp() - now).div_euclid(86_400),
            trust,
        })
    }
}

/// Verifies the chain as rustls would, but notes the verdict instead of
/// failing the handshake on it, so that an untrusted server is still
/// described. The handshake's signatures are checked as always.
#[derive(Debug)]
struct TrustRecorder {
    provider: Arc<CryptoProvider>,
    /// `None` without a single CA certificate to verify against.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    trust: Mutex<Option<Result<(), String>>>,
}

impl ServerCertVerifier for TrustRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Some(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            None => Err("no CA certificates on this host to verify against".to_owned()),
        };
        if let Ok(mut trust) = self.trust.lock() {
            *trust = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
