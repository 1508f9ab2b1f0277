fn main() -> std::process::ExitCode {
    wpa::cli::main()
}
