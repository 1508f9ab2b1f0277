//! Serving certificates: loaded from files and reloaded without a restart, or generated at start.
//!
//! Reloading polls the files' contents instead of watching them: kubelet updates a Secret volume by swapping
//! the `..data` symlink, which file watches on `tls.crt`/`tls.key` never see. Re-reading the paths follows the
//! new link. A pair that does not parse, or whose key does not match its certificate (read across a swap), is
//! ignored and the previous certificate keeps serving.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwapOption;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    Pem { path: PathBuf, problem: String },
    #[error("the certificate and the key do not belong together: {0}")]
    Mismatch(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate currently served; swapped atomically on rotation.
#[derive(Debug, Default)]
pub struct CertStore {
    current: ArcSwapOption<CertifiedKey>,
}

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::new(CertStore::default())
    }

    pub(crate) fn set(&self, key: CertifiedKey) {
        self.current.store(Some(Arc::new(key)));
    }

    /// Whether a certificate is loaded (the server is not ready before).
    pub(crate) fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// The DER of the served leaf certificate.
    pub fn leaf_der(&self) -> Option<Vec<u8>> {
        self.current.load().as_ref().and_then(|k| k.cert.first().map(|c| c.to_vec()))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, certificates from `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parses a PEM certificate chain and key into a servable pair, checking that they match.
pub(crate) fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &Path,
) -> Result<CertifiedKey, TlsError> {
    let pem_err = |problem: String| TlsError::Pem { path: origin.to_path_buf(), problem };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no PEM certificate found".into()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| pem_err(e.to_string()))?
        .ok_or_else(|| pem_err("no PEM private key found".into()))?;
    let key =
        CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Mismatch(e.to_string()))?;
    key.keys_match().map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(key)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// The certificate and key files of a mounted Secret (`tls.crt`, `tls.key`).
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads both files; returns the pair and the bytes it was built from.
    pub(crate) fn load(&self) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        let pair = certified_key(&cert, &key, &self.cert)?;
        let mut fingerprint = cert;
        fingerprint.extend_from_slice(&key);
        Ok((pair, fingerprint))
    }

    /// Loads the pair into `store` now, then polls every `interval` and swaps in a changed, valid pair.
    /// Returns after the first load; the poller runs until `shutdown` resolves.
    pub async fn serve_into(
        self,
        store: Arc<CertStore>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), TlsError> {
        let (pair, mut last) = self.load()?;
        store.set(pair);
        tracing::info!(cert = %self.cert.display(), key = %self.key.display(), "serving certificate loaded");
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tick.tick() => {}
                }
                let files = self.clone();
                let loaded = tokio::task::spawn_blocking(move || files.load()).await;
                match loaded {
                    Ok(Ok((pair, fingerprint))) if fingerprint != last => {
                        store.set(pair);
                        last = fingerprint;
                        tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    }
                    Ok(Ok(_)) => {}
                    // Mid-rotation or a broken Secret: keep serving the previous certificate.
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "certificate reload skipped; the previous certificate keeps serving")
                    }
                    Err(e) => tracing::warn!(error = %e, "certificate reload task failed"),
                }
            }
        });
        Ok(())
    }
}

/// A generated CA and a serving certificate it signed.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl SelfSigned {
    pub(crate) fn certified_key(&self) -> Result<CertifiedKey, TlsError> {
        certified_key(self.cert_pem.as_bytes(), self.key_pem.as_bytes(), Path::new("<generated>"))
    }
}

/// A certificate authority that issues serving certificates (as cert-manager's CA issuer does).
pub struct CertAuthority {
    pub ca_pem: String,
    key_pem: String,
    not_before: ::time::OffsetDateTime,
    not_after: ::time::OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate's lifetime (never beyond its CA's).
const LEAF_LIFETIME: ::time::Duration = ::time::Duration::days(365);

impl CertAuthority {
    /// A new CA, valid one year.
    pub fn new() -> Result<CertAuthority, TlsError> {
        Self::generate(::time::Duration::days(365))
    }

    /// A new CA valid for `lifetime` (from an hour ago, for clocks slightly behind).
    pub fn generate(lifetime: ::time::Duration) -> Result<CertAuthority, TlsError> {
        let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let now = time_now();
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "wpa webhook CA");
        ca.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.not_before = now - ::time::Duration::hours(1);
        ca.not_after = now + lifetime;
        let ca_key = KeyPair::generate().map_err(gen_err)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(gen_err)?;
        Ok(CertAuthority {
            ca_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
            not_before: ca.not_before,
            not_after: ca.not_after,
            issuer: Issuer::new(ca, ca_key),
        })
    }

    /// A CA read back from its certificate and private key (PEM), e.g. from a Secret.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertAuthority, TlsError> {
        let origin = Path::new("<CA certificate>");
        let pem_err = |problem: String| TlsError::Pem { path: origin.to_path_buf(), problem };
        let key = KeyPair::from_pem(key_pem).map_err(|e| pem_err(format!("the CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| pem_err(e.to_string()))?;
        let (not_before, not_after) = validity(cert_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| pem_err("no PEM certificate found".into()))?;
        if rcgen::PublicKeyData::subject_public_key_info(issuer.key()) != public_key_of(cert_pem.as_bytes())?
        {
            return Err(TlsError::Mismatch("the CA key does not belong to the CA certificate".into()));
        }
        Ok(CertAuthority {
            ca_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            not_before,
            not_after,
            issuer,
        })
    }

    /// The CA's private key (PEM), to store it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn not_after(&self) -> ::time::OffsetDateTime {
        self.not_after
    }

    /// Whether less than a third of the CA's lifetime is left: time to make the next one while every
    /// certificate this one signed stays trusted (the old CA stays in the bundle until it expires).
    pub fn needs_rotation(&self) -> bool {
        renewal_due(self.not_before, self.not_after)
    }

    /// A serving certificate for `sans` (DNS names and IP addresses), valid one year but never beyond
    /// the CA.
    pub fn issue(&self, sans: &[String]) -> Result<SelfSigned, TlsError> {
        let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let now = time_now();
        let mut leaf = CertificateParams::new(sans.to_vec()).map_err(gen_err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, sans.first().cloned().unwrap_or_else(|| "wpa".into()));
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        leaf.not_before = now - ::time::Duration::hours(1);
        leaf.not_after = (now + LEAF_LIFETIME).min(self.not_after);
        let leaf_key = KeyPair::generate().map_err(gen_err)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &self.issuer).map_err(gen_err)?;
        Ok(SelfSigned {
            ca_pem: self.ca_pem.clone(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }
}

/// Whether less than a third of the `not_before`..`not_after` lifetime is left.
pub(crate) fn renewal_due(not_before: ::time::OffsetDateTime, not_after: ::time::OffsetDateTime) -> bool {
    not_after - time_now() < (not_after - not_before) / 3
}

/// (notBefore, notAfter) of every certificate of a PEM bundle, in order.
pub(crate) fn validity(
    pem: &[u8],
) -> Result<Vec<(::time::OffsetDateTime, ::time::OffsetDateTime)>, TlsError> {
    parse_each(pem, |cert| {
        let v = cert.validity();
        (v.not_before.to_datetime(), v.not_after.to_datetime())
    })
}

fn public_key_of(pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    parse_each(pem, |cert| cert.public_key().raw.to_vec())?.into_iter().next().ok_or_else(|| TlsError::Pem {
        path: "<CA certificate>".into(),
        problem: "no PEM certificate found".into(),
    })
}

fn parse_each<T>(
    pem: &[u8],
    f: impl Fn(&x509_parser::certificate::X509Certificate<'_>) -> T,
) -> Result<Vec<T>, TlsError> {
    let pem_err = |problem: String| TlsError::Pem { path: "<certificate>".into(), problem };
    rustls_pemfile::certs(&mut &pem[..])
        .map(|der| {
            let der = der.map_err(|e| pem_err(e.to_string()))?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| pem_err(e.to_string()))?;
            Ok(f(&cert))
        })
        .collect()
}

/// A subject alternative name as `--san` and `--tls-san` take it: an IP address, or a DNS name (labels of
/// letters, digits and inner hyphens, up to 63 characters each), optionally a wildcard `*.` followed by one.
/// Anything else would be written into the certificate and never match a name a client asks for.
pub(crate) fn subject_alt_name(given: &str) -> Result<String, String> {
    use rustls::pki_types::DnsName;
    let problem = if given.parse::<std::net::IpAddr>().is_ok() {
        return Ok(given.to_string());
    } else if given.ends_with('.') {
        "a certificate's name has no trailing dot"
    } else if DnsName::try_from(given.strip_prefix("*.").unwrap_or(given)).is_ok() {
        return Ok(given.to_string());
    } else {
        "neither an IP address nor a DNS name"
    };
    Err(format!(
        "{problem}: give an IP address (10.0.0.1, ::1) or a DNS name of letters, digits, hyphens and dots \
         (wpa.wpa-system.svc), optionally starting with *. (*.example.com)"
    ))
}

/// Generates a CA and a serving certificate it signed for `sans` (`--self-signed`, `wpa certs`).
pub fn generate_self_signed(sans: &[String]) -> Result<SelfSigned, TlsError> {
    CertAuthority::new()?.issue(sans)
}

fn time_now() -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::now_utc()
}

/// Writes a file readable by its owner (and the CA bundle readable by everyone, it is public).
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_with_mode(path, contents, 0o644)
}

/// Writes a private key: readable by its owner only, also when the file existed with wider permissions.
pub(crate) fn write_private_file(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_with_mode(path, contents, 0o600)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::{
        io::Write,
        os::unix::fs::{OpenOptionsExt, PermissionsExt},
    };
    let failed = |source| TlsError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    // `mode` applies to a new file only: narrow an existing one before writing the secret into it.
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    file.write_all(contents.as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_alt_name_is_an_ip_or_a_dns_name_or_a_wildcard_of_one() {
        for good in
            ["127.0.0.1", "::1", "localhost", "wpa.wpa-system.svc", "*.example.com", "Web-1.Example.COM"]
        {
            assert_eq!(subject_alt_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "bad name!",
            "-web",
            "web-",
            "a..b",
            "*",
            "*.",
            "a.*.b",
            "**.b",
            "1.2.3",
            "example.com.",
            &"a".repeat(64),
        ] {
            let e = subject_alt_name(bad).expect_err(bad);
            assert!(e.contains("give an IP address"), "{bad}: {e}");
        }
    }

    #[test]
    fn generated_pairs_load_and_mismatches_are_refused() {
        let a = generate_self_signed(&["wpa.example".into(), "127.0.0.1".into()]).expect("generate");
        let b = generate_self_signed(&["other".into()]).expect("generate");
        assert!(a.certified_key().is_ok());
        let torn = certified_key(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), Path::new("x"));
        assert!(matches!(torn, Err(TlsError::Mismatch(_))), "{torn:?}");
        assert!(matches!(certified_key(b"junk", b"junk", Path::new("x")), Err(TlsError::Pem { .. })));
    }
}
