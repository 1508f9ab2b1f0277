//! Child processes of a test control plane: spawned so that they cannot outlive the test process, logged
//! to files, and stopped by process group.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One running component (etcd, kube-apiserver, ...).
pub struct Component {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub log_path: PathBuf,
    child: Child,
    /// Once the child is reaped its pid (and so its group id) may be reused: never signal after that.
    reaped: bool,
}

impl Component {
    /// Starts `program args`, appending its stdout and stderr to `log_path`.
    pub fn spawn(name: &str, program: &Path, args: Vec<OsString>, log_path: PathBuf) -> Result<Self> {
        Self::spawn_with_env(name, program, args, &[], log_path)
    }

    /// [`Self::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: Vec<OsString>,
        env: &[(&str, &str)],
        log_path: PathBuf,
    ) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating a log file handle")?;
        let mut cmd = Command::new(program);
        without_proxy_settings(&mut cmd);
        cmd.args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so that stopping it also stops anything it forked, and so that a
            // Ctrl-C aimed at `cargo test` is not what decides when it dies (see pdeathsig below).
            .process_group(0);
        // If the test process dies without running destructors (SIGKILL, abort), the kernel kills the
        // child instead of leaving an orphaned etcd or apiserver behind.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_from_long_lived_thread(cmd)
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            program: program.to_path_buf(),
            args,
            log_path,
            child,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => {
                self.reaped = true;
                Some(format!("unknown ({e})"))
            }
        }
    }

    /// The last `lines` lines of the component's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    /// The last `lines` lines of the log under a heading with the component's name and log file.
    pub fn log_section(&self, lines: usize) -> String {
        format!("----- {} ({}) -----\n{}\n", self.name, self.log_path.display(), self.log_tail(lines))
    }

    fn signal_group(&mut self, signal: libc::c_int) {
        // Until it is reaped (a zombie at worst) the leader's pid stays reserved, so the group id below
        // can only name the group this harness created.
        if self.reaped || self.exited().is_some() {
            return;
        }
        // The child leads its own group (process_group(0)), so its pid is the group id.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall on a process group this harness created.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Asks the process group to terminate (SIGTERM) without waiting.
    pub fn request_stop(&mut self) {
        self.signal_group(libc::SIGTERM);
    }

    /// SIGKILL to the process group without waiting. For teardown: everything the component wrote is
    /// thrown away, so a graceful shutdown (which takes kube-apiserver up to several seconds) buys
    /// nothing.
    pub fn request_kill(&mut self) {
        self.signal_group(libc::SIGKILL);
    }

    /// SIGKILL, then reap. Blocks the thread, but only briefly: SIGKILL cannot be ignored.
    pub fn kill(&mut self) {
        self.request_kill();
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// A graceful stop, as a restart in production would do it: SIGTERM, then SIGKILL after `grace`;
    /// returns once the process is reaped. Yields to the async runtime while waiting, so that tasks on
    /// the same runtime (e.g. a controller under test) keep running.
    pub async fn stop(&mut self, grace: Duration) {
        self.request_stop();
        let deadline = Instant::now() + grace;
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                self.signal_group(libc::SIGKILL);
                while self.exited().is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Test traffic goes to loopback or to namespaces the test made, never through a proxy: Go's
/// `ProxyFromEnvironment` would send e.g. the aggregator's calls to 10.250.X.2 to an HTTPS_PROXY.
pub fn without_proxy_settings(cmd: &mut Command) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Test threads and
/// tokio workers come and go, so every child is forked from one thread that lives as long as the process.
fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-cluster-spawner".into())
            .spawn(move || {
                for mut request in rx {
                    let _ = request.reply.send(request.cmd.spawn());
                }
            })
            .expect("starting the process-spawner thread");
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(SpawnRequest { cmd, reply })
        .map_err(|_| io::Error::other("the process-spawner thread is gone"))?;
    result.recv().map_err(|_| io::Error::other("the process-spawner thread dropped the request"))?
}

/// Locks a mutex even if a panic elsewhere poisoned it: a teardown must go on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `program args` to completion: its stdout, or an error with the exact command and what it printed.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{program} {}` (is it installed?)", args.join(" ")))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (utime + stime in seconds) of a process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), i.e. 12 and 13 after the command name and state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// The CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID, nanosecond resolution): what a
/// request costs on a benchmark's own thread, whatever else the host runs (preemption is not counted).
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Sends SIGTERM to a child process of ours.
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Whether this process runs as root (network namespaces and the first install need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `teardown` when the process exits (the last registered first). A fixture that the tests of one
/// binary share lives in a static, and a static is never dropped: its processes would die with the process
/// (see pdeathsig above), but network namespaces, mounts and temporary directories would stay.
pub fn at_exit(teardown: impl FnOnce() + Send + 'static) {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    lock(&TEARDOWNS).push(Box::new(teardown));
    // SAFETY: registers a plain function with no captured state.
    REGISTER.call_once(|| unsafe {
        libc::atexit(run_teardowns);
    });
}

type Teardown = Box<dyn FnOnce() + Send>;
static TEARDOWNS: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());

extern "C" fn run_teardowns() {
    let teardowns = std::mem::take(&mut *lock(&TEARDOWNS));
    for teardown in teardowns.into_iter().rev() {
        teardown();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::thread_cpu_time;

    #[test]
    fn thread_cpu_time_counts_work_and_not_sleep() {
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(200));
        let slept = thread_cpu_time() - before;
        assert!(slept < Duration::from_millis(50), "sleeping 200 ms used {slept:?} of CPU");
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let worked = thread_cpu_time() - before - slept;
        assert!(worked > Duration::from_millis(1), "100 ms of spinning used only {worked:?} of CPU");
    }
}
