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
