//! One node per process: started by the first test that asks, shared by the others, torn down when the
//! process exits.
//!
//! Each `#[tokio::test]` has its own runtime, which ends with the test; a kube client keeps working only
//! while the runtime it was built on runs. So the node is started on a runtime of its own that lives as
//! long as the process. A static is never dropped: the teardown runs from an `atexit` handler, which
//! also fails the process (exit code 1) when the node attempted outbound connections or left something
//! on the host.

use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Result, anyhow};

use super::{NodeOptions, RealNode};
use crate::process::{at_exit, lock};

struct Slot {
    runtime: tokio::runtime::Runtime,
    node: Mutex<Option<Arc<RealNode>>>,
    /// Held while the node starts; holds the error of a failed start so that later tests fail at once.
    start: tokio::sync::Mutex<Option<String>>,
}

static SLOT: OnceLock<Slot> = OnceLock::new();

/// The process's node, started with `options()` by the first caller.
pub async fn shared(options: impl FnOnce() -> NodeOptions + Send + 'static) -> Result<Arc<RealNode>> {
    let slot = SLOT.get_or_init(|| Slot {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("real-node")
            .enable_all()
            .build()
            .expect("a runtime for the node"),
        node: Mutex::new(None),
        start: tokio::sync::Mutex::new(None),
    });
    let mut start = slot.start.lock().await;
    if let Some(node) = lock(&slot.node).clone() {
        return Ok(node);
    }
    if let Some(error) = start.as_ref() {
        return Err(anyhow!("the node of this test process did not start: {error}"));
    }
    let started = slot.runtime.spawn(async move { RealNode::start(options()).await }).await;
    match started {
        Ok(Ok(node)) => {
            let node = Arc::new(node);
            *lock(&slot.node) = Some(node.clone());
            at_exit(stop_at_exit);
            Ok(node)
        }
        Ok(Err(e)) => {
            *start = Some(format!("{e:#}"));
            Err(e)
        }
        Err(panicked) => {
            *start = Some(panicked.to_string());
            Err(anyhow!("starting the node panicked: {panicked}"))
        }
    }
}

fn stop_at_exit() {
    let Some(slot) = SLOT.get() else { return };
    let Some(node) = lock(&slot.node).take() else { return };
    let report = node.stop();
    // The last reference drops the control plane too (a test that leaked one leaves it to the kernel:
    // its processes die with this one).
    drop(node);
    if !report.is_clean() {
        crate::log_line!(
            "[node] FAILED: the node attempted outbound connections or left state on the host (see above)"
        );
        // SAFETY: ends the process at once with a failure status; we are already exiting.
        unsafe { libc::_exit(1) };
    }
}
