//! Certificates as kubelet mounts them.

use std::{os::unix::fs::symlink, path::Path};

use wpa::runtime::tls::SelfSigned;

/// Writes a Secret volume revision the way kubelet does: files in a timestamped directory, swapped in by
/// renaming a fresh `..data` symlink over the old one.
pub fn kubelet_write(dir: &Path, revision: &str, pair: &SelfSigned) {
    let rev = dir.join(revision);
    std::fs::create_dir_all(&rev).expect("revision dir");
    std::fs::write(rev.join("tls.crt"), &pair.cert_pem).expect("write cert");
    std::fs::write(rev.join("tls.key"), &pair.key_pem).expect("write key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(revision, &tmp).expect("tmp link");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            symlink(format!("..data/{f}"), dir.join(f)).expect("file link");
        }
    }
}

/// A TLS client configuration (ring) that trusts only the certificates of `ca_pems`.
pub fn client_config(ca_pems: &[&str]) -> rustls::ClientConfig {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("a CA certificate")).expect("trust the CA");
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The DER of the first certificate of `pem` (a leaf, as a server presents it).
pub fn leaf_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("a cert").expect("parses").to_vec()
}
