//! One control plane per test binary, and a namespace per test in it.
//!
//! Starting a control plane costs seconds; most tests need one but do not disturb it. Such a test asks its
//! binary's [`Shared`] cluster (started by the first test that asks) and works in a [`TestNamespace`] of its
//! own, named after the test. Tests that restart or break the control plane itself keep a cluster of their
//! own.
//!
//! Each `#[tokio::test]` has its own runtime, which ends with the test, and a kube client keeps working only
//! while the runtime it was built on runs: so the shared cluster is started on a runtime of its own that lives
//! as long as the process (as [`crate::node`]'s `shared` does for the real node). A static is never dropped:
//! an `atexit` handler drops the cluster (its processes, temporary directory and network namespaces) and then
//! that runtime.

use std::{
    future::Future,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use crate::{
    LocalCluster,
    process::{at_exit, lock},
};

/// One `T` per test process, started by the first caller of [`Shared::get`].
pub struct Shared<T> {
    slot: OnceLock<Slot<T>>,
}

struct Slot<T> {
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    value: Mutex<Option<Arc<T>>>,
    /// Held while the value starts; keeps the reason of a failed start so that later tests fail at once.
    start: tokio::sync::Mutex<Option<String>>,
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Self {
        Shared { slot: OnceLock::new() }
    }

    /// The process's value, started with `start` (on the long-lived runtime) by the first caller. Panics
    /// with the reason when it did not start, in this test and in every later one.
    pub async fn get<F, Fut>(&'static self, start: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let slot = self.slot.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("shared-cluster")
                .enable_all()
                .build()
                .expect("a runtime for the shared cluster");
            Slot {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                value: Mutex::new(None),
                start: tokio::sync::Mutex::new(None),
            }
        });
        let mut failed = slot.start.lock().await;
        if let Some(value) = lock(&slot.value).clone() {
            return value;
        }
        if let Some(reason) = failed.as_ref() {
            panic!("the shared cluster of this test binary did not start: {reason}");
        }
        match slot.handle.spawn(start()).await {
            Ok(value) => {
                let value = Arc::new(value);
                *lock(&slot.value) = Some(value.clone());
                at_exit(move || self.stop());
                value
            }
            Err(panicked) => {
                let reason = match panicked.try_into_panic() {
                    Ok(payload) => payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                };
                *failed = Some(reason.clone());
                panic!("the shared cluster of this test binary did not start: {reason}");
            }
        }
    }

    fn stop(&'static self) {
        let Some(slot) = self.slot.get() else { return };
        let value = lock(&slot.value).take();
        let Some(runtime) = lock(&slot.runtime).take() else { return };
        {
            // Drops that stop tasks or abort handles want the runtime's context.
            let _context = runtime.enter();
            drop(value);
        }
        // Tasks still holding a part of the cluster (a stand-in kubelet's loop) drop it here.
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

impl<T: Send + Sync + 'static> Default for Shared<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A namespace for one test, named after it (the test thread's name, as a DNS label), created at the start
/// and deleted when dropped, so that tests sharing a cluster see only their own objects.
pub struct TestNamespace {
    name: String,
    /// `kubectl delete namespace NAME --wait=false` on its cluster, run when the test ends.
    delete: Option<std::process::Command>,
}

impl TestNamespace {
    /// Creates the running test's namespace. Call it from the test's own thread (the body of the test
    /// function, not a spawned task): its name comes from the thread's.
    pub async fn create(cluster: &LocalCluster) -> TestNamespace {
        Self::create_with(cluster, "", &[]).await
    }

    /// [`Self::create`] with labels, and for a test that needs more than one namespace, a `suffix` that
    /// tells them apart (empty for none).
    pub async fn create_with(cluster: &LocalCluster, suffix: &str, labels: &[(&str, &str)]) -> TestNamespace {
        let test = std::thread::current().name().unwrap_or("unnamed-test").to_string();
        let name =
            if suffix.is_empty() { namespace_for(&test) } else { namespace_for(&format!("{test}-{suffix}")) };
        cluster
            .create_namespace(&name, labels)
            .await
            .unwrap_or_else(|e| panic!("create the test's namespace {name}: {e:#}"));
        let delete = cluster.kubectl_command(&["delete", "namespace", &name, "--wait=false"]);
        TestNamespace { name, delete: Some(delete) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("WPA_KEEP_TEST_CLUSTER").is_some() {
            return;
        }
        let Some(mut delete) = self.delete.take() else { return };
        // Without waiting for the namespace to empty: the test is over, and the name is its own.
        match delete.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => crate::log_line!(
                "[test-namespace] delete {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => crate::log_line!("[test-namespace] delete {}: {e}", self.name),
        }
    }
}

/// A namespace name for a test: its function name (the last part of its path) as a DNS label; names longer
/// than a label keep their start and end, joined by a hash of the whole, so that they stay distinct.
fn namespace_for(test: &str) -> String {
    let base = test.rsplit("::").next().unwrap_or(test);
    let label: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let label = label.trim_matches('-').to_string();
    if label.len() <= 63 {
        return if label.is_empty() { "test".into() } else { label };
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    base.hash(&mut hasher);
    let hash = format!("{:08x}", hasher.finish() as u32);
    format!(
        "{}-{hash}-{}",
        label[..30].trim_end_matches('-'),
        label[label.len() - 22..].trim_start_matches('-')
    )
}
