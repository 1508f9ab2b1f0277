//! `wpa serve --self-signed --inject-ca`: one CA for the whole installation, kept in a Secret that every
//! replica and every restart shares.
//!
//! Why: the webhook configurations trust one `caBundle`, and every replica behind the Service must present a
//! certificate that bundle trusts. If each process made its own CA (as before), each start would replace the
//! bundle while older pods still serve certificates of the old CA: admission failed for seconds on every
//! rollout, and two replicas could not run at all.
//!
//! How:
//! - The first process creates the Secret (`kubernetes.io/tls`: `tls.crt` the CA, `tls.key` its key,
//!   `ca.crt` the trust bundle); a process that loses the race (409) reads the winner's.
//! - Each process issues its own serving certificate from that CA, in memory.
//! - The bundle goes into every webhook of both configurations before the process serves a certificate:
//!   until then `/readyz` fails (the serving certificate is not loaded), so a rollout keeps the old pods,
//!   which the bundle still trusts, and the Service never sends a request to a pod the API server would not
//!   trust. A configuration that does not exist yet (an install in progress, a wrong
//!   `--webhook-config-name`) is waited for and logged, never fatal.
//! - With less than a third of its lifetime left, the CA is rotated: the new one signs from then on and the
//!   bundle holds the new and every unexpired old CA, so pods still serving an old certificate stay trusted.
//!   A conflicting write (409) means another replica rotated first: its CA is used.
//! - Every `--inject-ca-interval` the process checks the Secret and the configurations again: another
//!   replica's rotation is followed, and a bundle someone overwrote is written back.

use std::{path::PathBuf, sync::Arc, time::Duration};

use base64::Engine;
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Secret,
    },
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use tokio_util::sync::CancellationToken;

use super::tls::{self, CertAuthority, CertStore, TlsError};

/// How long a CA made here is valid; it is rotated when a third is left.
const CA_LIFETIME: ::time::Duration = ::time::Duration::days(5 * 365);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Attempts to settle a create or rotation race in one pass.
const RACE_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CaError {
    #[error(
        "{kind} {name} does not exist: --inject-ca writes the CA bundle into it once it does (create it, or set \
         --webhook-config-name to the name of yours)"
    )]
    MissingConfiguration { kind: &'static str, name: String },
    #[error("cannot inject the CA bundle into {kind} {name}: {source}")]
    Configuration { kind: &'static str, name: String, source: Box<kube::Error> },
    #[error(
        "cannot {action} Secret {namespace}/{name}, which holds the installation's CA: {source} (with --inject-ca \
         the ServiceAccount needs create on secrets and get, update on this one in its namespace: \
         webhook-config/rbac-self-signed.yaml)"
    )]
    Secret { action: &'static str, namespace: String, name: String, source: Box<kube::Error> },
    #[error(
        "Secret {namespace}/{name} does not hold a usable CA (tls.crt, tls.key): {problem}; delete it and a new \
         CA is made"
    )]
    Unusable { namespace: String, name: String, problem: String },
    #[error("Secret {namespace}/{name} kept changing under us (another replica writes it); retrying")]
    Contended { namespace: String, name: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Where the CA lives and where its bundle goes.
pub(crate) struct SharedCa {
    pub(crate) client: Client,
    pub(crate) namespace: String,
    pub(crate) secret: String,
    pub(crate) webhook_config: String,
    /// The serving certificate's names.
    pub(crate) sans: Vec<String>,
    pub(crate) interval: Duration,
    /// `--ca-bundle-out`.
    pub(crate) bundle_out: Option<PathBuf>,
}

/// What this process serves.
#[derive(Default)]
struct Served {
    /// The CA (PEM) that signed the served certificate.
    ca_pem: Option<String>,
    not_before: Option<::time::OffsetDateTime>,
    not_after: Option<::time::OffsetDateTime>,
    bundle_written: Option<String>,
}

impl SharedCa {
    /// Keeps the CA, the webhook configurations and `store` in step until `shutdown`. `store` gets its first
    /// certificate once the bundle that trusts it is in both configurations.
    pub(crate) fn start(
        self,
        store: Arc<CertStore>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut served = Served::default();
            let mut retry = FIRST_RETRY;
            loop {
                let wait = match self.sync(&mut served, &store).await {
                    Ok(()) => {
                        retry = FIRST_RETRY;
                        self.interval
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            retry_in = ?retry,
                            serving = store.is_loaded(),
                            "the webhook's CA bundle is not in place; retrying"
                        );
                        let wait = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        wait
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    async fn sync(&self, served: &mut Served, store: &CertStore) -> Result<(), CaError> {
        let (ca, bundle) = self.current_ca().await?;
        self.inject(&bundle).await?;
        let stale = served.ca_pem.as_deref() != Some(ca.ca_pem.as_str())
            || match (served.not_before, served.not_after) {
                (Some(from), Some(to)) => tls::renewal_due(from, to),
                _ => true,
            };
        if stale {
            let leaf = ca.issue(&self.sans)?;
            let (from, to) = tls::validity(leaf.cert_pem.as_bytes())?.into_iter().next().unzip();
            store.set(leaf.certified_key()?);
            served.ca_pem = Some(ca.ca_pem.clone());
            (served.not_before, served.not_after) = (from, to);
            tracing::info!(
                sans = ?self.sans,
                ca_expires = %ca.not_after(),
                secret = %format!("{}/{}", self.namespace, self.secret),
                "serving certificate issued by the installation's CA"
            );
        }
        if let Some(out) = &self.bundle_out
            && served.bundle_written.as_deref() != Some(bundle.as_str())
        {
            tls::write_file(out, &bundle)?;
            served.bundle_written = Some(bundle);
            tracing::info!(path = %out.display(), "CA bundle written");
        }
        Ok(())
    }

    /// The CA to sign with and the bundle to inject: from the Secret, which is created when absent and
    /// rotated when due.
    async fn current_ca(&self) -> Result<(CertAuthority, String), CaError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret_err = |action, source| CaError::Secret {
            action,
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            source: Box::new(source),
        };
        for _ in 0..RACE_ATTEMPTS {
            let Some(existing) = api.get_opt(&self.secret).await.map_err(|e| secret_err("read", e))? else {
                let ca = CertAuthority::generate(CA_LIFETIME)?;
                let bundle = ca.ca_pem.clone();
                match api.create(&PostParams::default(), &self.secret_of(&ca, &bundle, None)).await {
                    Ok(_) => {
                        tracing::info!(secret = %format!("{}/{}", self.namespace, self.secret), "installation CA created");
                        return Ok((ca, bundle));
                    }
                    // Another replica created it first: use theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => return Err(secret_err("create", e)),
                }
            };
            let (ca, bundle) = self.read(&existing)?;
            if !ca.needs_rotation() {
                return Ok((ca, bundle));
            }
            let next = CertAuthority::generate(CA_LIFETIME)?;
            let bundle = with_unexpired(&next.ca_pem, &bundle);
            let version = existing.metadata.resource_version.clone();
            match api
                .replace(&self.secret, &PostParams::default(), &self.secret_of(&next, &bundle, version))
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        secret = %format!("{}/{}", self.namespace, self.secret),
                        old_ca_expires = %ca.not_after(),
                        "installation CA rotated; the bundle keeps the old CA until it expires"
                    );
                    return Ok((next, bundle));
                }
                // Another replica rotated first: read its CA.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(secret_err("update", e)),
            }
        }
        Err(CaError::Contended { namespace: self.namespace.clone(), name: self.secret.clone() })
    }

    fn read(&self, secret: &Secret) -> Result<(CertAuthority, String), CaError> {
        let unusable = |problem: String| CaError::Unusable {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            problem,
        };
        let field = |key: &str| -> Option<String> {
            let data = secret.data.as_ref()?.get(key)?;
            Some(String::from_utf8_lossy(&data.0).into_owned())
        };
        let (cert, key) = match (field("tls.crt"), field("tls.key")) {
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(unusable("tls.crt or tls.key is missing".into())),
        };
        let ca = CertAuthority::from_pem(&cert, &key).map_err(|e| unusable(e.to_string()))?;
        // The current CA is always trusted, whatever ca.crt holds.
        let bundle = with_unexpired(&ca.ca_pem, &field("ca.crt").unwrap_or_default());
        Ok((ca, bundle))
    }

    fn secret_of(&self, ca: &CertAuthority, bundle: &str, resource_version: Option<String>) -> Secret {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.secret.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                labels: Some(
                    [("app.kubernetes.io/managed-by".to_string(), "wpa".to_string())].into_iter().collect(),
                ),
                annotations: Some(
                    [(
                        "wpa.datadoghq.com/purpose".to_string(),
                        format!(
                            "the CA of wpa serve --self-signed --inject-ca; its bundle (ca.crt) is the caBundle of \
                             webhook configurations {}",
                            self.webhook_config
                        ),
                    )]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    ("tls.crt".to_string(), bytes(&ca.ca_pem)),
                    ("tls.key".to_string(), bytes(ca.key_pem())),
                    ("ca.crt".to_string(), bytes(bundle)),
                ]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        }
    }

    /// Writes `bundle` into every webhook of both configurations whose caBundle differs.
    async fn inject(&self, bundle: &str) -> Result<(), CaError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
        let validating = inject_into::<ValidatingWebhookConfiguration>(
            &self.client,
            &self.webhook_config,
            &encoded,
            |c| {
                c.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle.as_ref().map(|b| &b.0))
                    .collect()
            },
        );
        let mutating =
            inject_into::<MutatingWebhookConfiguration>(&self.client, &self.webhook_config, &encoded, |c| {
                c.webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle.as_ref().map(|b| &b.0))
                    .collect()
            });
        let (validating, mutating) = tokio::join!(validating, mutating);
        if validating? | mutating? {
            tracing::info!(name = %self.webhook_config, "CA bundle injected into the webhook configurations");
        }
        Ok(())
    }
}

/// Sets `caBundle` (base64 of the PEM) on each webhook of one configuration whose bundle differs; returns
/// whether it wrote.
async fn inject_into<K>(
    client: &Client,
    name: &str,
    encoded: &str,
    bundles: impl Fn(&K) -> Vec<Option<&Vec<u8>>>,
) -> Result<bool, CaError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + k8s_openapi::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = <K as k8s_openapi::Resource>::KIND;
    let api: Api<K> = Api::all(client.clone());
    let err = |source| CaError::Configuration { kind, name: name.to_string(), source: Box::new(source) };
    let config = api
        .get_opt(name)
        .await
        .map_err(err)?
        .ok_or_else(|| CaError::MissingConfiguration { kind, name: name.to_string() })?;
    let want = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
    let ops: Vec<json_patch::PatchOperation> = bundles(&config)
        .into_iter()
        .enumerate()
        .filter(|(_, have)| *have != Some(&want))
        .map(|(i, _)| {
            json_patch::PatchOperation::Add(json_patch::AddOperation {
                path: json_patch::jsonptr::PointerBuf::from_tokens([
                    "webhooks",
                    &i.to_string(),
                    "clientConfig",
                    "caBundle",
                ]),
                value: serde_json::Value::String(encoded.to_string()),
            })
        })
        .collect();
    if ops.is_empty() {
        return Ok(false);
    }
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(json_patch::Patch(ops)))
        .await
        .map_err(err)?;
    Ok(true)
}

/// `first` followed by the certificates of `bundle` that are not expired and not `first` (PEM).
fn with_unexpired(first: &str, bundle: &str) -> String {
    let now = ::time::OffsetDateTime::now_utc();
    let mut out = first.trim_end().to_string();
    out.push('\n');
    for block in pem_blocks(bundle) {
        let valid = tls::validity(block.as_bytes()).ok().and_then(|v| v.first().copied());
        if block.trim() != first.trim() && valid.is_some_and(|(_, not_after)| not_after > now) {
            out.push_str(block.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM text.
fn pem_blocks(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else { break };
        out.push(format!("{}\n", &rest[start..start + end + END.len()]));
        rest = &rest[start + end + END.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_puts_the_current_ca_first_and_drops_expired_and_repeated_ones() {
        let old = CertAuthority::generate(::time::Duration::days(30)).expect("a CA");
        let new = CertAuthority::generate(::time::Duration::days(300)).expect("a CA");
        // Valid from an hour ago for -30 minutes: expired.
        let expired = CertAuthority::generate(::time::Duration::minutes(-30)).expect("a CA");
        let bundle = format!("{}{}{}", old.ca_pem, expired.ca_pem, new.ca_pem);
        let merged = with_unexpired(&new.ca_pem, &bundle);
        assert_eq!(pem_blocks(&merged), [new.ca_pem.clone(), old.ca_pem.clone()]);
        assert_eq!(with_unexpired(&new.ca_pem, ""), new.ca_pem);
    }

    #[test]
    fn a_ca_read_back_signs_certificates_that_chain_to_it_and_knows_when_to_rotate() {
        let ca = CertAuthority::generate(CA_LIFETIME).expect("a CA");
        let again = CertAuthority::from_pem(&ca.ca_pem, ca.key_pem()).expect("read back");
        assert!(!again.needs_rotation());
        let leaf = again.issue(&["wpa.wpa-system.svc".into()]).expect("a leaf");
        assert_eq!(leaf.ca_pem, ca.ca_pem);
        let now = ::time::OffsetDateTime::now_utc();
        let day = ::time::Duration::days(1);
        assert!(tls::renewal_due(now - 2 * day, now + day), "a day left of three");
        assert!(!tls::renewal_due(now - day, now + 2 * day), "two days left of three");
        let other = CertAuthority::generate(CA_LIFETIME).expect("a CA");
        let torn = CertAuthority::from_pem(&ca.ca_pem, other.key_pem());
        assert!(matches!(torn, Err(TlsError::Mismatch(_))), "a key of another CA is refused");
    }
}
