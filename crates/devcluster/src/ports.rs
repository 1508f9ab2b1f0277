//! Free loopback ports for servers started by the harness, each handed out once per process.
//!
//! A port is found by binding `127.0.0.1:0` and is closed again before the server that will use it binds it,
//! sometimes seconds later (the scheduler's health port is used after etcd and the API server have started).
//! The kernel may give the same port to the next `bind(0)` in between: two clusters started at once by one
//! test binary then got the same scheduler port, the second scheduler exited with "address already in use",
//! and its start still looked healthy because the first one's `/healthz` answered on that port. Remembering
//! what was handed out makes ports distinct within the process; another process taking one in between is
//! caught by the component's exit (and the cluster start is retried).

use std::{
    collections::HashSet,
    net::TcpListener,
    sync::{Mutex, PoisonError},
};

use anyhow::{Context, Result, bail};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `n` distinct free loopback ports that this process has not handed out before.
pub fn free_loopback_ports(n: usize) -> Result<Vec<u16>> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Held until every port is found, so that the kernel cannot give one of them twice in this call.
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        if held.len() > 1000 + n {
            bail!("no free loopback port this process has not used already, after {} tries", held.len());
        }
        let listener = TcpListener::bind("127.0.0.1:0").context("picking a free loopback port")?;
        let port = listener.local_addr()?.port();
        held.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// One free loopback port this process has not handed out before.
pub fn free_loopback_port() -> Result<u16> {
    Ok(free_loopback_ports(1)?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice_in_a_process() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            for port in free_loopback_ports(5).unwrap() {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }
}
