//! `wpa certs`: a development CA and a serving certificate signed by it.

use std::path::PathBuf;

use crate::runtime::tls;

#[derive(clap::Args, Debug)]
pub(crate) struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, default_value = "certs")]
    pub(crate) out_dir: PathBuf,
    /// DNS names and IPs of the serving certificate (repeatable or comma-separated).
    #[arg(long = "san", value_delimiter = ',', default_values_t = ["127.0.0.1".to_string(), "localhost".to_string(), "wpa.wpa-system.svc".to_string(), "wpa.wpa-system.svc.cluster.local".to_string()])]
    pub(crate) sans: Vec<String>,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `--out-dir`.
pub(crate) fn run(args: &CertsArgs) -> Result<(), tls::TlsError> {
    let generated = tls::generate_self_signed(&args.sans)?;
    for (file, contents) in
        [("ca.crt", &generated.ca_pem), ("tls.crt", &generated.cert_pem), ("tls.key", &generated.key_pem)]
    {
        let path = args.out_dir.join(file);
        tls::write_file(&path, contents)?;
        println!("wrote {}", path.display());
    }
    println!("serving certificate for: {}", args.sans.join(", "));
    Ok(())
}
