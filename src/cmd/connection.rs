//! Which cluster and namespace a command reads, as kubectl's `-n`, `--kubeconfig` and `--context`: one set
//! of flags for every command that talks to a user's cluster (`explain`, `status`, `dry-run`, `convert`).

use std::path::PathBuf;

use kube::Client;

use crate::runtime::client::{ClientError, kube_client};

#[derive(clap::Args, Debug)]
pub(crate) struct Connection {
    /// Namespace [default: the kubeconfig context's].
    #[arg(short = 'n', long, env = "WPA_NAMESPACE")]
    pub(crate) namespace: Option<String>,
    /// Kubeconfig file; otherwise KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "WPA_KUBECONFIG")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: its current-context], as kubectl's --context.
    #[arg(long, env = "WPA_CONTEXT", value_name = "NAME")]
    pub(crate) context: Option<String>,
}

impl Connection {
    /// A client of the chosen kubeconfig and context (its default namespace is the context's).
    pub(crate) async fn client(&self) -> Result<Client, ClientError> {
        kube_client(self.kubeconfig.as_deref(), self.context.as_deref(), None).await
    }
}
