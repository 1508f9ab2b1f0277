//! The HTTP client of the recommender protocol (docs/semantics.md §9): `POST` the protojson request, follow redirects, 10 s
//! timeout, `http`/`https` only. Each WPA's `tlsConfig` builds its own client (upstream mutates a shared
//! transport); `insecureSkipVerify` is honoured.

use std::{sync::Arc, time::Duration};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use crate::{
    api::TlsConfig,
    engine::{
        calc::Recommendation,
        recommender::{RecommendationReply, RecommenderQuery, build_request, recommendation_from_reply},
    },
};

pub(crate) const USER_AGENT: &str = "wpa-controller";
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RecommenderError {
    #[error("recommender spec is required")]
    MissingSpec,
    #[error("unsupported URL scheme in {0:?}: only http and https are allowed")]
    Scheme(String),
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("error sending request: {0}")]
    Transport(String),
    #[error("unexpected response code: {code} ({body})")]
    Status { code: u16, body: String },
    #[error("error unmarshaling response: {0}")]
    Decode(String),
    #[error("{0}")]
    Reply(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (`insecureSkipVerify: true`); handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the certificate against `serverName` instead of the URL's host.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, RecommenderError> {
    let data = std::fs::read(path).map_err(|e| RecommenderError::Tls(format!("cannot read {path}: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| RecommenderError::Tls(format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(RecommenderError::Tls(format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

fn tls_version(v: &str) -> Result<&'static rustls::SupportedProtocolVersion, RecommenderError> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => {
            Err(RecommenderError::Tls(format!("{v} is not supported (the oldest version is TLS12)")))
        }
        other => Err(RecommenderError::Tls(format!("unknown TLS version {other:?}"))),
    }
}

/// The rustls configuration for one recommender.
pub(crate) fn tls_client_config(tls: Option<&TlsConfig>) -> Result<ClientConfig, RecommenderError> {
    let provider = provider();
    let default = TlsConfig::default();
    let tls = tls.unwrap_or(&default);
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> =
        vec![&rustls::version::TLS12, &rustls::version::TLS13];
    // TLS10/TLS11 as a minimum just mean "anything we support".
    if let Some(min) = tls.min_version.as_deref().filter(|v| *v != "TLS10" && *v != "TLS11") {
        let min = tls_version(min)?;
        versions.retain(|v| {
            !(min.version == rustls::ProtocolVersion::TLSv1_3
                && v.version == rustls::ProtocolVersion::TLSv1_2)
        });
    }
    if let Some(max) = tls.max_version.as_deref() {
        let max = tls_version(max)?;
        versions.retain(|v| {
            !(max.version == rustls::ProtocolVersion::TLSv1_2
                && v.version == rustls::ProtocolVersion::TLSv1_3)
        });
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| RecommenderError::Tls(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify.unwrap_or(false) {
        Arc::new(AcceptAnyServer(provider.clone()))
    } else {
        let mut roots = RootCertStore::empty();
        match tls.ca_file.as_deref().filter(|f| !f.is_empty()) {
            Some(ca) => {
                for cert in read_pem_certs(ca)? {
                    roots.add(cert).map_err(|e| RecommenderError::Tls(format!("{ca}: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| RecommenderError::Tls(e.to_string()))?;
        match tls.server_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                let name = ServerName::try_from(name.to_string())
                    .map_err(|e| RecommenderError::Tls(format!("serverName {name:?}: {e}")))?;
                Arc::new(VerifyAs { inner: webpki, name })
            }
            None => webpki,
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (tls.cert_file.as_deref(), tls.key_file.as_deref()) {
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
            let certs = read_pem_certs(cert)?;
            let key_pem =
                std::fs::read(key).map_err(|e| RecommenderError::Tls(format!("cannot read {key}: {e}")))?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .map_err(|e| RecommenderError::Tls(format!("{key}: {e}")))?
                .ok_or_else(|| RecommenderError::Tls(format!("{key} holds no PEM private key")))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                RecommenderError::Tls(format!("tls: private key does not match public key ({e})"))
            })?
        }
        (Some(c), None) | (None, Some(c)) if !c.is_empty() => {
            return Err(RecommenderError::Tls("certFile and keyFile must be set together".into()));
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// A client for one recommender configuration.
#[derive(Clone, Debug)]
pub struct RecommenderClient {
    http: reqwest::Client,
}

impl RecommenderClient {
    pub fn new(tls: Option<&TlsConfig>) -> Result<Self, RecommenderError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_client_config(tls)?)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| RecommenderError::Tls(e.to_string()))?;
        Ok(RecommenderClient { http })
    }

    /// Asks the recommender for a replica count.
    pub async fn recommend(&self, query: &RecommenderQuery) -> Result<Recommendation, RecommenderError> {
        let reco = query.recommender.as_ref().ok_or(RecommenderError::MissingSpec)?;
        if !(reco.url.starts_with("http://") || reco.url.starts_with("https://")) {
            return Err(RecommenderError::Scheme(reco.url.clone()));
        }
        let body = build_request(query, reco);
        let resp = self
            .http
            .post(&reco.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| RecommenderError::Transport(error_chain(&e)))?;
        let code = resp.status();
        let bytes = resp.bytes().await.map_err(|e| RecommenderError::Transport(error_chain(&e)))?;
        if code != reqwest::StatusCode::OK {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
            return Err(RecommenderError::Status { code: code.as_u16(), body: head });
        }
        let reply: RecommendationReply =
            serde_json::from_slice(&bytes).map_err(|e| RecommenderError::Decode(e.to_string()))?;
        recommendation_from_reply(&reply).map_err(RecommenderError::Reply)
    }
}

/// An error with its causes, so "connection refused" is not hidden behind "error sending request".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
