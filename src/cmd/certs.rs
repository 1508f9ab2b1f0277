//! `wpa certs`: a development CA and a serving certificate signed by it.

use std::path::PathBuf;

use crate::runtime::{output::stdout, tls};

#[derive(clap::Args, Debug)]
pub(crate) struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, default_value = "certs")]
    pub(crate) out_dir: PathBuf,
    /// DNS names and IPs of the serving certificate (repeatable or comma-separated).
    #[arg(long = "san", value_delimiter = ',', value_parser = tls::subject_alt_name, default_values_t = ["127.0.0.1".to_string(), "localhost".to_string(), "wpa.wpa-system.svc".to_string(), "wpa.wpa-system.svc.cluster.local".to_string()])]
    pub(crate) sans: Vec<String>,
    /// Replace an existing CA in --out-dir (every certificate it signed, and every caBundle that trusts it,
    /// stops working).
    #[arg(long)]
    pub(crate) force: bool,
}

/// Why `wpa certs` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertsError {
    #[error(
        "{0} exists: a new CA would invalidate every certificate it signed and every caBundle that trusts it; pass --force to replace it"
    )]
    CaExists(PathBuf),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The files are written; what was written could not be said (not a reader that went away).
    #[error("cannot write to stdout: {0}")]
    Write(#[source] std::io::Error),
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `--out-dir`.
/// The key is readable by its owner only.
pub(crate) fn run(args: &CertsArgs) -> Result<(), CertsError> {
    let ca = args.out_dir.join("ca.crt");
    if ca.exists() && !args.force {
        return Err(CertsError::CaExists(ca));
    }
    let generated = tls::generate_self_signed(&args.sans)?;
    for (file, contents, private) in [
        ("ca.crt", &generated.ca_pem, false),
        ("tls.crt", &generated.cert_pem, false),
        ("tls.key", &generated.key_pem, true),
    ] {
        let path = args.out_dir.join(file);
        if private {
            tls::write_private_file(&path, contents)?;
        } else {
            tls::write_file(&path, contents)?;
        }
        stdout(&format!("wrote {}\n", path.display())).map_err(CertsError::Write)?;
    }
    stdout(&format!("serving certificate for: {}\n", args.sans.join(", "))).map_err(CertsError::Write)?;
    stdout(&next_steps(&args.out_dir)).map_err(CertsError::Write)
}

/// What to do with the files: serve with them, and make the API server trust the CA.
fn next_steps(out_dir: &std::path::Path) -> String {
    let file = |name: &str| out_dir.join(name).display().to_string();
    format!(
        "next: wpa serve --tls-cert-file {cert} --tls-key-file {key}\n      \
         and make the API server trust the CA: put the output of `base64 < {ca} | tr -d '\\n'` into the caBundle of every\n      \
         webhook of both configurations (webhook-config/webhooks.yaml; certs/README.md)\n",
        cert = file("tls.crt"),
        key = file("tls.key"),
        ca = file("ca.crt"),
    )
}
