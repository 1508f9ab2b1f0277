//! The HTTP client of the recommender protocol (docs/semantics.md §9): `POST` the protojson request, 10 s
//! timeout, `http`/`https` only. Each WPA's `tlsConfig` builds its own client (upstream mutates a shared
//! transport); `insecureSkipVerify` is honoured.
//!
//! Any WPA author chooses the URL, so the controller's network position must not become theirs (Difference
//! "recommender client"): redirects are followed within the same origin only (upstream follows any, POST
//! turning into GET, https into http); a reply is read up to [`MAX_REPLY`] bytes; nothing of a reply's body
//! reaches conditions, events or logs but the protocol's own fields (an error answer is its status code);
//! and loopback and link-local addresses (the node's own services, the cloud metadata address) are refused,
//! as URLs and as what a name resolves to, unless `wpa serve --allow-local-recommenders`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

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
        recommender::{
            RecommendationReply, RecommenderQuery, build_request, is_local, is_local_host,
            recommendation_from_reply,
        },
    },
    runtime::client::error_chain,
};

pub(crate) const USER_AGENT: &str = "wpa-controller";
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest reply read: a recommendation is a few hundred bytes; a reply of hundreds of megabytes would
/// otherwise be held in memory whole (the webhook runs in the same process).
pub(crate) const MAX_REPLY: usize = 256 * 1024;

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
    #[error("unexpected response code: {code}{}", reason_phrase(*code))]
    Status { code: u16 },
    #[error("error unmarshaling response: {0}")]
    Decode(String),
    #[error("the reply is larger than {MAX_REPLY} bytes")]
    TooLarge,
    #[error("{0}")]
    Reply(String),
    #[error(
        "{0} is a loopback or link-local address, which recommenders may not use (wpa serve --allow-local-recommenders allows it)"
    )]
    LocalAddress(String),
}

/// ` (Not Found)`: the code's standard words, never the server's.
fn reason_phrase(code: u16) -> String {
    reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// Resolves names as the system does, without the local addresses (a name pointing at the metadata
/// address is no way around the rule).
struct NoLocalAddresses;

impl reqwest::dns::Resolve for NoLocalAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| !is_local(a.ip())).collect();
            if allowed.is_empty() && !all.is_empty() {
                return Err(Box::new(RecommenderError::LocalAddress(format!("{host} ({})", all[0].ip())))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
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

/// Which addresses a recommender may have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reach {
    /// Not loopback, not link-local.
    #[default]
    Remote,
    /// Any (`--allow-local-recommenders`: a recommender beside the controller, tests).
    Any,
}

/// A client for one recommender configuration.
#[derive(Clone, Debug)]
pub struct RecommenderClient {
    http: reqwest::Client,
    reach: Reach,
}

/// Follows a redirect only to the same scheme, host and port as the request (upstream's own test redirects
/// `/redirect` to `/redirected`); any other stops, and its 3xx is the answer.
fn same_origin(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let first = attempt.previous().first().cloned();
    let same = first.is_some_and(|f| {
        let next = attempt.url();
        f.scheme() == next.scheme()
            && f.host_str() == next.host_str()
            && f.port_or_known_default() == next.port_or_known_default()
    });
    if same && attempt.previous().len() <= 10 { attempt.follow() } else { attempt.stop() }
}

impl RecommenderClient {
    pub fn new(tls: Option<&TlsConfig>, reach: Reach) -> Result<Self, RecommenderError> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_client_config(tls)?)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::custom(same_origin))
            .user_agent(USER_AGENT);
        if reach == Reach::Remote {
            builder = builder.dns_resolver(Arc::new(NoLocalAddresses));
        }
        let http = builder.build().map_err(|e| RecommenderError::Tls(e.to_string()))?;
        Ok(RecommenderClient { http, reach })
    }

    /// Asks the recommender for a replica count.
    pub async fn recommend(&self, query: &RecommenderQuery) -> Result<Recommendation, RecommenderError> {
        let reco = query.recommender.as_ref().ok_or(RecommenderError::MissingSpec)?;
        let url = reqwest::Url::parse(&reco.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| RecommenderError::Scheme(reco.url.clone()))?;
        if self.reach == Reach::Remote
            && let Some(host) = url.host_str()
            && is_local_host(host)
        {
            return Err(RecommenderError::LocalAddress(host.to_string()));
        }
        let body = build_request(query, reco);
        let mut resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| RecommenderError::Transport(error_chain(&e)))?;
        let code = resp.status();
        if code != reqwest::StatusCode::OK {
            return Err(RecommenderError::Status { code: code.as_u16() });
        }
        if resp.content_length().is_some_and(|n| n > MAX_REPLY as u64) {
            return Err(RecommenderError::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| RecommenderError::Transport(error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_REPLY {
                return Err(RecommenderError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        let reply: RecommendationReply = serde_json::from_slice(&bytes).map_err(|e| decode_error(&e))?;
        recommendation_from_reply(&reply).map_err(RecommenderError::Reply)
    }
}

/// What was wrong with a reply, without its content: serde's messages quote the values they refuse, and
/// the reply may come from anything the URL points at.
fn decode_error(e: &serde_json::Error) -> RecommenderError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "the reply could not be read",
        Category::Syntax => "the reply is not JSON",
        Category::Eof => "the reply ends too early",
        Category::Data => "the reply is not a recommendation (a field is unknown or of the wrong type)",
    };
    RecommenderError::Decode(format!("{what} (line {}, column {})", e.line(), e.column()))
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        http::{StatusCode, header},
        response::IntoResponse,
        routing::any,
    };

    use super::*;
    use crate::api::{CrossVersionObjectReference, RecommenderSpec};

    /// Serves `app` on a loopback port; returns `http://127.0.0.1:PORT`.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn query(url: &str) -> RecommenderQuery {
        RecommenderQuery {
            namespace: "ns".into(),
            target_ref: CrossVersionObjectReference {
                kind: "Deployment".into(),
                name: "web".into(),
                api_version: Some("apps/v1".into()),
            },
            target_cluster: String::new(),
            recommender: Some(RecommenderSpec {
                url: url.into(),
                target_type: Some("cpu".into()),
                ..Default::default()
            }),
            desired_replicas: 3,
            current_replicas: 3,
            current_ready_replicas: 3,
            min_replicas: 1,
            max_replicas: 10,
        }
    }

    const REPLY: &str = r#"{"targetReplicas": 4, "lowerBoundReplicas": 3, "upperBoundReplicas": 5}"#;

    async fn ask(url: &str) -> Result<Recommendation, RecommenderError> {
        RecommenderClient::new(None, Reach::Any).expect("a client").recommend(&query(url)).await
    }

    #[tokio::test]
    async fn a_reply_over_the_limit_is_refused_without_being_held() {
        // A declared length, and a chunked stream that never says how long it is.
        let big = "x".repeat(MAX_REPLY + 1);
        let declared = serve(Router::new().route("/", any(move || async move { big.clone() }))).await;
        assert!(matches!(ask(&declared).await, Err(RecommenderError::TooLarge)));
        let stream =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 4096])));
        let app =
            Router::new().route(
                "/",
                any(move || async move {
                    axum::body::Body::from_stream(futures::StreamExt::take(stream, 100_000))
                }),
            );
        assert!(matches!(ask(&serve(app).await).await, Err(RecommenderError::TooLarge)));
    }

    #[tokio::test]
    async fn a_redirect_within_the_origin_is_followed() {
        let app = Router::new()
            .route(
                "/redirect",
                any(|| async { (StatusCode::SEE_OTHER, [(header::LOCATION, "/redirected")]) }),
            )
            .route("/redirected", any(|| async { REPLY }));
        let base = serve(app).await;
        assert_eq!(ask(&format!("{base}/redirect")).await.expect("followed").replicas, 4);
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_not_followed() {
        let elsewhere = serve(Router::new().route("/", any(|| async { REPLY }))).await;
        let to = elsewhere.clone();
        let app = Router::new().route(
            "/",
            any(move || {
                let to = to.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
            }),
        );
        match ask(&serve(app).await).await {
            Err(e @ RecommenderError::Status { code: 302 }) => {
                assert_eq!(e.to_string(), "unexpected response code: 302 (Found)")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_error_answer_is_reported_by_its_code_never_its_body() {
        let app = Router::new()
            .route("/", any(|| async { (StatusCode::NOT_FOUND, r#"{"AccessKeyId":"AKIAFAKESECRET123"}"#) }));
        let e = ask(&serve(app).await).await.expect_err("a 404");
        assert_eq!(e.to_string(), "unexpected response code: 404 (Not Found)");
        let app = Router::new().route("/", any(|| async { r#"{"AccessKeyId":"AKIAFAKESECRET123"}"# }));
        let e = ask(&serve(app).await).await.expect_err("not a recommendation").to_string();
        assert!(!e.contains("AKIA") && !e.contains("AccessKeyId"), "{e}");
        assert!(e.contains("not a recommendation"), "{e}");
    }

    #[tokio::test]
    async fn local_addresses_are_refused_unless_allowed() {
        let local = serve(Router::new().route("/", any(|| async { REPLY }))).await;
        let remote_only = RecommenderClient::new(None, Reach::Remote).expect("a client");
        for url in [local.clone(), local.replace("127.0.0.1", "localhost"), "http://169.254.169.254/".into()]
        {
            match remote_only.recommend(&query(&url)).await {
                Err(RecommenderError::LocalAddress(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(ask(&local).await.expect("allowed").replicas, 4);
    }

    #[test]
    fn local_hosts_are_loopback_link_local_and_localhost() {
        use crate::engine::recommender::is_local_host;
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "[::1]",
            "::1",
            "[fe80::1]",
            "0.0.0.0",
            "localhost",
            "a.localhost",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in ["10.0.0.1", "reco.team.svc", "192.168.1.1", "[2001:db8::1]", "localhost.example.com"] {
            assert!(!is_local_host(h), "{h}");
        }
    }
}
