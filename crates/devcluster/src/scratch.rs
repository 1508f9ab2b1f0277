//! The scratch directories of a control plane (its certificates, kubeconfig and logs in the temporary
//! directory, etcd's data in `/dev/shm`), each marked with the process that made it.
//!
//! A cluster's drop removes its directories; a test process that is killed, or aborts, never drops it, and
//! etcd's data would stay in `/dev/shm` (memory) until the machine restarts. So each new cluster first
//! removes the directories whose process is gone.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use tempfile::TempDir;

/// The file in each directory that names the process that made it.
pub const OWNER_FILE: &str = ".wpa-owner";

/// How old a directory without an owner file must be to count as no one's: one is made, then marked, so
/// a directory seen between the two belongs to a cluster starting now.
const UNMARKED_AGE: Duration = Duration::from_secs(600);

/// The prefix of a cluster's directory in the temporary directory.
pub(crate) const CLUSTER_PREFIX: &str = "wpa-test-cluster-";
/// The prefix of etcd's data directory in [`ETCD_PARENT`].
pub(crate) const ETCD_PREFIX: &str = "wpa-etcd-";
/// Memory, for etcd's fsyncs.
pub(crate) const ETCD_PARENT: &str = "/dev/shm";

/// A new directory `prefix*` in `parent`, marked as this process's.
pub(crate) fn make(parent: &Path, prefix: &str) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
        .with_context(|| format!("marking {}", dir.path().display()))?;
    Ok(dir)
}

/// Removes the directories `prefix*` in `parent` whose process is gone; returns them.
pub(crate) fn sweep(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(prefix));
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) && abandoned(&path) {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                crate::log_line!(
                    "[test-cluster] could not remove {} (left by a killed run): {e}",
                    path.display()
                );
            } else {
                removed.push(path);
            }
        }
    }
    removed
}

/// Whether the process that made `dir` is gone.
fn abandoned(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join(OWNER_FILE)) {
        Ok(pid) => pid.trim().parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()),
        Err(_) => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UNMARKED_AGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid no process has: past the kernel's largest (4,194,304).
    const DEAD_PID: &str = "4194305";

    #[test]
    fn a_directory_whose_process_is_gone_is_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let live = make(parent.path(), "c-").unwrap();
        let dead = make(parent.path(), "c-").unwrap().keep();
        std::fs::write(dead.join(OWNER_FILE), DEAD_PID).unwrap();
        let unmarked_new = parent.path().join("c-new");
        std::fs::create_dir(&unmarked_new).unwrap();
        let other_prefix = parent.path().join("other");
        std::fs::create_dir(&other_prefix).unwrap();
        std::fs::write(other_prefix.join(OWNER_FILE), DEAD_PID).unwrap();

        assert_eq!(sweep(parent.path(), "c-"), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().exists(), "this process's directory is kept");
        assert!(unmarked_new.exists(), "a directory not marked yet is a cluster starting now");
        assert!(other_prefix.exists(), "only the prefix's directories are swept");
    }
}
