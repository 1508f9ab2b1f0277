//! What the commands print on stdout and stderr. `println!` and `eprintln!` panic when the other end of the
//! pipe is gone (`wpa certs | true`, `wpa serve 2>&1 | head`), and a panic exits with 101 and a backtrace
//! nobody can read: every product command prints through these instead.

use std::io::Write;

/// Writes a command's output. A reader that goes away (`wpa simulate | head`) is not an error: the command
/// ends as it would have, with nothing more to say, as ripgrep and `ls` do.
pub(crate) fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes a notice or an error on stderr. When stderr is closed there is nowhere left to say that it is, so
/// a failed write is dropped.
pub(crate) fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `eprintln!` through [`stderr`]: a line that a closed stderr drops instead of panicking.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::runtime::output::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use note;
