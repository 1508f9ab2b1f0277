#![forbid(unsafe_code)]

// The webhook and the reconciler allocate per request and per reconcile; mimalloc's thread-local free lists
// cost a fraction of glibc malloc's there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wpa::cmd::main()
}
