//! Keys and certificates for a test control plane and for test servers, all made with rcgen.
//!
//! Every key is ECDSA P-256: ring (rcgen's backend here) cannot generate RSA keys, and every consumer
//! involved (kube-apiserver, kube-controller-manager, rustls, Go's crypto/x509) accepts P-256.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority that can issue leaf certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    pub fn new(common_name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().context("generating a CA key")?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .with_context(|| format!("self-signing the CA {common_name}"))?;
        Ok(Self { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for a TLS server, valid for the given DNS names and IP addresses.
    pub fn issue_server(&self, common_name: &str, names: &[&str]) -> Result<Leaf> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(
                    (*name)
                        .try_into()
                        .with_context(|| format!("{name:?} is not a valid DNS name for a certificate"))?,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params)
    }

    /// A leaf certificate for TLS client authentication (the identity is the common name).
    pub fn issue_client(&self, common_name: &str) -> Result<Leaf> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Result<Leaf> {
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = params.signed_by(&key, &self.issuer).context("signing a leaf certificate")?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}

/// A leaf certificate and its private key.
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

/// A self-contained identity for a TLS test server: its own CA (hand `ca_pem` to clients, e.g. as a
/// webhook `caBundle`) and a leaf for the given names.
pub struct TlsIdentity {
    pub ca_pem: String,
    pub leaf: Leaf,
}

impl TlsIdentity {
    /// `names` are DNS names or IP addresses. For a Service-referenced webhook the API server checks the
    /// name `<service>.<namespace>.svc`, so include that.
    pub fn new(names: &[&str]) -> Result<Self> {
        let ca = Authority::new("wpa-test-server-ca")?;
        let leaf = ca.issue_server(names.first().copied().unwrap_or("wpa-test-server"), names)?;
        Ok(Self { ca_pem: ca.cert_pem(), leaf })
    }
}

/// Every file a control plane needs, written under one directory.
pub struct ClusterPki {
    pub ca_cert: PathBuf,
    pub ca_der: Vec<u8>,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
    pub front_proxy_ca_cert: PathBuf,
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
    pub token_file: PathBuf,
    pub admin_token: String,
}

pub const ADMIN_USER: &str = "admin";

impl ClusterPki {
    /// `address` is where the API server listens (a SAN of its certificate besides loopback and the
    /// `kubernetes` Service's names).
    pub fn generate(dir: &Path, address: IpAddr) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };

        let ca = Authority::new("wpa-test-cluster-ca")?;
        // The names a client inside or outside the cluster may use for the API server.
        let address = address.to_string();
        let mut names = vec![
            "127.0.0.1",
            "localhost",
            "10.0.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        if !names.contains(&address.as_str()) {
            names.push(&address);
        }
        let apiserver = ca.issue_server("kube-apiserver", &names)?;

        let service_account = KeyPair::generate().context("generating the service-account key")?;

        // The aggregator authenticates to extension API servers with this client certificate and passes
        // the user in X-Remote-* headers, which the extension server trusts because of this CA.
        let front_proxy_ca = Authority::new("wpa-test-front-proxy-ca")?;
        let front_proxy_client = front_proxy_ca.issue_client("front-proxy-client")?;

        let admin_token = random_hex(16)?;
        Ok(Self {
            ca_cert: write("ca.crt", &ca.cert_pem())?,
            ca_der: ca.issuer.der().to_vec(),
            apiserver_cert: write("apiserver.crt", &apiserver.cert_pem)?,
            apiserver_key: write("apiserver.key", &apiserver.key_pem)?,
            service_account_key: write("sa.key", &service_account.serialize_pem())?,
            service_account_pub: write("sa.pub", &service_account.public_key_pem())?,
            front_proxy_ca_cert: write("front-proxy-ca.crt", &front_proxy_ca.cert_pem())?,
            front_proxy_client_cert: write("front-proxy-client.crt", &front_proxy_client.cert_pem)?,
            front_proxy_client_key: write("front-proxy-client.key", &front_proxy_client.key_pem)?,
            token_file: write(
                "tokens.csv",
                &format!("{admin_token},{ADMIN_USER},{ADMIN_USER}-uid,\"system:masters\"\n"),
            )?,
            admin_token,
        })
    }
}

/// A token nobody else can guess, although the server only listens on loopback.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
