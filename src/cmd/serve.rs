//! `wpa serve`: the admission webhook and (unless `--no-reconciler`) the reconciler, in one process.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use kube::Client;
use tokio_util::sync::CancellationToken;

pub(crate) use crate::runtime::logging::LogFormat;
use crate::runtime::signal::termination;
use crate::{
    api::duration,
    extender::{self, ClusterView},
    reconciler::{self, ReconcilerArgs},
    runtime::{
        client::{ClientError, kube_client},
        http::{self as server, Limits, Readiness},
        registry::Registry,
        shared_ca::SharedCa,
        tls::{self, CertFiles, CertStore},
    },
    state::{ClusterState, Needs, watch::Namespaces},
    webhook::{self, WebhookState},
};

/// Flags of `wpa serve`; each can also be set through the `WPA_*` variable shown.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Address of the HTTPS admission webhook.
    #[arg(long, env = "WPA_LISTEN", default_value = "0.0.0.0:8443")]
    pub(crate) listen: SocketAddr,
    /// Address of the plain-HTTP /healthz, /readyz and /metrics.
    #[arg(long, env = "WPA_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    pub(crate) health_listen: SocketAddr,
    /// Serving certificate (PEM), e.g. `tls.crt` of a cert-manager Secret mounted as a volume; reloaded
    /// when it changes.
    #[arg(long, env = "WPA_TLS_CERT_FILE", requires = "tls_key_file", conflicts_with = "self_signed")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the serving certificate.
    #[arg(long, env = "WPA_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Make the serving certificate here, for a cluster without cert-manager: from a CA of this process, or
    /// with --inject-ca from the installation's CA (--ca-secret).
    #[arg(long, env = "WPA_SELF_SIGNED")]
    pub(crate) self_signed: bool,
    /// DNS name or IP of the serving certificate with --self-signed (repeatable or comma-separated);
    /// defaults to localhost and 127.0.0.1.
    #[arg(long = "tls-san", env = "WPA_TLS_SAN", value_delimiter = ',', requires = "self_signed", value_parser = tls::subject_alt_name)]
    pub(crate) tls_san: Vec<String>,
    /// With --self-signed, write the CA bundle (PEM) to this file.
    #[arg(long, env = "WPA_CA_BUNDLE_OUT", requires = "self_signed")]
    pub(crate) ca_bundle_out: Option<PathBuf>,
    /// With --self-signed, write the CA bundle into the caBundle of our Validating and Mutating
    /// WebhookConfigurations (named by --webhook-config-name). The CA is then the installation's, shared by
    /// every replica and restart through the Secret --ca-secret (created by the first pod, rotated when a
    /// third of its five years is left, the bundle keeping the old CA until it expires); each pod issues
    /// its own serving certificate from it. The pod is not ready until the bundle is in both
    /// configurations; a missing configuration is waited for, not fatal.
    #[arg(long, env = "WPA_INJECT_CA", requires = "self_signed")]
    pub(crate) inject_ca: bool,
    /// Name of our ValidatingWebhookConfiguration and MutatingWebhookConfiguration (for --inject-ca).
    #[arg(long, env = "WPA_WEBHOOK_CONFIG_NAME", default_value = "wpa")]
    pub(crate) webhook_config_name: String,
    /// With --inject-ca, the Secret (kubernetes.io/tls) that holds the installation's CA: tls.crt, tls.key and
    /// the trust bundle ca.crt [default: <webhook-config-name>-webhook-ca].
    #[arg(long, env = "WPA_CA_SECRET", requires = "inject_ca")]
    pub(crate) ca_secret: Option<String>,
    /// Namespace of --ca-secret [default: POD_NAMESPACE, else the namespace of the kubeconfig context or
    /// service account].
    #[arg(long, env = "WPA_CA_SECRET_NAMESPACE", requires = "inject_ca")]
    pub(crate) ca_secret_namespace: Option<String>,
    /// With --inject-ca, how often the CA Secret and the webhook configurations are checked again: another
    /// replica's CA rotation is followed and an overwritten caBundle written back (Go duration).
    #[arg(long, env = "WPA_INJECT_CA_INTERVAL", default_value = "1m", value_parser = duration::arg)]
    pub(crate) inject_ca_interval: Duration,
    /// How often the certificate files are checked for a rotation (Go duration: 2s, 500ms, 1m).
    #[arg(long, env = "WPA_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = duration::arg)]
    pub(crate) tls_reload_interval: Duration,
    /// Do not run the reconciler (webhook only).
    #[arg(long, env = "WPA_NO_RECONCILER")]
    pub(crate) no_reconciler: bool,
    /// Do not serve the admission webhook.
    #[arg(long, env = "WPA_NO_WEBHOOK")]
    pub(crate) no_webhook: bool,
    /// Serve kube-scheduler's extender verbs under /scheduler/ on the HTTPS port (filter, prioritize): place
    /// the replicas of WPA targets so that losing one node or zone keeps minAvailableReplicaPercentage.
    /// Watches Nodes and ReplicaSets too. See webhook-config/scheduler-config.yaml.
    #[arg(long, env = "WPA_SCHEDULER_EXTENDER")]
    pub(crate) scheduler_extender: bool,
    /// Kubeconfig file; otherwise KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, env = "WPA_KUBECONFIG")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// After SIGTERM, keep serving this long with /readyz answering 503 (so the Service stops sending
    /// requests here first) while asking each client to move off its connection once answered (HTTP/1:
    /// close; HTTP/2: GOAWAY), then stop accepting and drain in-flight requests (at most 20 s).
    #[arg(long, env = "WPA_SHUTDOWN_DELAY", default_value = "5s", value_parser = duration::arg_or_off)]
    pub(crate) shutdown_delay: Duration,
    /// HTTPS connections served at once; more wait in the kernel's queue (lowered to fit the open-files
    /// limit, so the health port always has descriptors).
    #[arg(long, env = "WPA_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub(crate) max_connections: usize,
    /// HTTPS requests answered at once; more get 503 at once (the API server retries).
    #[arg(long, env = "WPA_MAX_REQUESTS_IN_FLIGHT", default_value_t = Limits::default().max_requests)]
    pub(crate) max_requests_in_flight: usize,
    /// Bytes of request bodies in flight on the HTTPS port (a number, or a quantity such as 32Mi); past it,
    /// 503 at once.
    #[arg(long, env = "WPA_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = Limits::default().max_body_bytes, value_parser = crate::api::quantity::bytes_arg)]
    pub(crate) max_body_bytes_in_flight: usize,
    /// A request's headers must arrive within this (slow-header clients are disconnected).
    #[arg(long, env = "WPA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration::arg)]
    pub(crate) header_read_timeout: Duration,
    /// An HTTPS connection that moves no byte for this long is closed.
    #[arg(long, env = "WPA_IDLE_TIMEOUT", default_value = "60s", value_parser = duration::arg)]
    pub(crate) idle_timeout: Duration,
    /// Log format: JSON lines (every line about a WPA carries wpa_name, wpa_namespace and its
    /// logs-attributes pairs) or text (coloured only when stderr is a terminal, so `kubectl logs` and
    /// files get plain text).
    #[arg(long, env = "WPA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub(crate) log_format: LogFormat,
    /// Log filter in RUST_LOG's syntax; upstream's --loglevel arrives here (upstream_flags.rs).
    #[arg(long, env = "RUST_LOG", hide = true)]
    pub(crate) log_level: Option<String>,
    #[command(flatten)]
    pub(crate) admission: webhook::AdmissionArgs,
    #[command(flatten)]
    pub(crate) reconciler: ReconcilerArgs,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("nothing to run: --no-webhook and --no-reconciler without --scheduler-extender")]
    NothingToRun,
    #[error(
        "the HTTPS server needs a certificate: pass --tls-cert-file and --tls-key-file, or --self-signed"
    )]
    NoCertificate,
    #[error("cannot start the reconciler: {0}")]
    Reconciler(#[from] reconciler::leader::TimingsError),
}

/// The open-files limit, raised to its hard limit first (the default soft limit of 1024 is below what a
/// webhook under load and its watches need).
fn open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit; assuming 1024");
            1024
        }
    }
}

/// How long shutdown waits for the reconciler's in-flight passes and the release of its Lease.
const RECONCILER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `--self-signed`: with `--inject-ca` the installation's CA from its Secret, kept in step in the background
/// (the store is filled once the webhook configurations trust it); otherwise a CA of this process alone.
fn self_signed(
    args: &ServeArgs,
    client: &Client,
    store: Arc<CertStore>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let sans = if args.tls_san.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        args.tls_san.clone()
    };
    if args.inject_ca {
        let namespace = args
            .ca_secret_namespace
            .clone()
            .or_else(|| args.reconciler.lease_namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let shared = SharedCa {
            client: client.clone(),
            namespace,
            secret: args
                .ca_secret
                .clone()
                .unwrap_or_else(|| format!("{}-webhook-ca", args.webhook_config_name)),
            webhook_config: args.webhook_config_name.clone(),
            sans,
            interval: args.inject_ca_interval,
            bundle_out: args.ca_bundle_out.clone(),
        };
        shared.start(store, shutdown);
        return Ok(());
    }
    let generated = tls::generate_self_signed(&sans)?;
    store.set(generated.certified_key()?);
    if let Some(out) = &args.ca_bundle_out {
        tls::write_file(out, &generated.ca_pem)?;
        tracing::info!(path = %out.display(), "CA bundle written");
    }
    tracing::info!(sans = ?sans, "self-signed serving certificate generated");
    Ok(())
}

/// Runs until SIGTERM/SIGINT.
pub(crate) async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new();
    // Cancelled at SIGTERM, before the shutdown delay: the HTTPS server asks its clients to move off.
    let closing = CancellationToken::new();
    let registry = Arc::new(Registry::new());
    let mut readiness = Readiness::default();
    let client = kube_client(args.kubeconfig.as_deref(), None, Some(&registry)).await?;

    let (webhook_on, extender_on) = (!args.no_webhook, args.scheduler_extender);
    if !webhook_on && !extender_on && args.no_reconciler {
        return Err(ServeError::NothingToRun);
    }
    // What can fail on this machine (no certificate named, one that cannot be read, the ports), before anything
    // starts in the cluster: a process that cannot serve takes no Lease and opens no watch.
    let mut https = None;
    if webhook_on || extender_on {
        let store = serving_certificate(&args, &client, &shutdown).await?;
        readiness.tls = Some(store.clone());
        https = Some((store, server::bind(args.listen).await?));
    }
    let health = server::bind(args.health_listen).await?;

    // The cluster as the roles read it: which autoscaler scales what (every role), the pods and targets
    // (the reconciler, the extender), the ReplicaSets and Nodes (the extender).
    let namespaces = Namespaces::parse(&args.reconciler.namespaces);
    let needs = Needs { workloads: !args.no_reconciler, placement: extender_on };
    let state = ClusterState::start(&client, &namespaces, needs, shutdown.clone());
    let mut tasks = Vec::new();
    // Scaling stops at SIGTERM, not after the shutdown delay: the Lease is released at once, so the next
    // leader takes over while this process still answers admission requests.
    let scaling = CancellationToken::new();
    let mut reconciler = None;
    if let (false, Some(caches)) = (args.no_reconciler, &state.workloads) {
        let supervisor = reconciler::start(
            client.clone(),
            &args.reconciler,
            state.wpas.clone(),
            caches.clone(),
            state.autoscalers.clone(),
            &registry,
            scaling.clone(),
        )
        .await?;
        let (readiness, scaling) = (readiness.clone(), scaling.clone());
        reconciler =
            Some(tokio::spawn(
                async move { readiness.watch_part("the reconciler", supervisor, scaling).await },
            ));
    }
    let extender = ClusterView::of(&state).map(|view| {
        let reporter = kube::runtime::events::Reporter {
            controller: "wpa-scheduler-extender".into(),
            instance: args.reconciler.identity.clone(),
        };
        let observer = extender::observer(&registry, client.clone(), reporter, shutdown.clone());
        extender::ExtenderState::new(Arc::new(view)).with_observer(observer)
    });
    let autoscalers = state.autoscalers.clone();
    let caches_synced = readiness.caches_synced.clone();
    tokio::spawn(async move {
        state.synced().await;
        caches_synced.store(true, Ordering::Release);
        tracing::info!("caches synced");
    });

    if let Some((store, listener)) = https {
        let mut edges = Vec::new();
        if webhook_on {
            let limits = args.admission.limits(args.reconciler.allow_local_recommenders);
            edges.push(webhook::edge(WebhookState::new(autoscalers, &registry, limits)));
            tracing::info!(addr = %args.listen, "admission webhook listening");
        }
        if let Some(extender) = extender {
            edges.push(extender::edge(extender));
            tracing::info!(addr = %args.listen, "scheduler extender listening under /scheduler/");
        }
        let tls_config = tls::server_config(store)?;
        let limits = https_limits(&args);
        let stats = server::HttpStats::register(&registry);
        let stop = server::Stop { closing: closing.clone(), shutdown: shutdown.clone() };
        tasks.push(tokio::spawn(server::serve_tls_until(listener, tls_config, edges, limits, stats, stop)));
    }

    tracing::info!(addr = %args.health_listen, "health and metrics listening");
    let health_router = server::health_router(readiness.clone(), registry.clone());
    let health_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = server::serve_health(health, health_router, health_stop).await {
            tracing::error!(error = %e, "the health and metrics server stopped");
        }
    }));

    termination().await;
    let stop = Stopping { readiness, closing, scaling, shutdown, delay: args.shutdown_delay };
    stop.run(reconciler, tasks).await;
    Ok(())
}

/// The serving certificate of the HTTPS port: the files of `--tls-cert-file` and `--tls-key-file`
/// (reloaded when they change), or `--self-signed`'s.
async fn serving_certificate(
    args: &ServeArgs,
    client: &Client,
    shutdown: &CancellationToken,
) -> Result<Arc<CertStore>, ServeError> {
    let store = CertStore::new();
    match (&args.tls_cert_file, &args.tls_key_file, args.self_signed) {
        (Some(cert), Some(key), false) => {
            let files = CertFiles { cert: cert.clone(), key: key.clone() };
            let stop = shutdown.clone();
            files
                .serve_into(store.clone(), args.tls_reload_interval, async move { stop.cancelled().await })
                .await?;
        }
        (_, _, true) => self_signed(args, client, store.clone(), shutdown.clone())?,
        _ => return Err(ServeError::NoCertificate),
    }
    Ok(store)
}

/// The HTTPS port's limits from the flags, lowered to fit the open-files limit.
fn https_limits(args: &ServeArgs) -> Limits {
    Limits {
        max_connections: args.max_connections,
        max_requests: args.max_requests_in_flight,
        max_body_bytes: args.max_body_bytes_in_flight,
        max_request_body: Limits::default().max_request_body,
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
    }
    .fitted_to_open_files(open_files())
}

/// What a termination signal stops, in order.
struct Stopping {
    readiness: Readiness,
    /// The HTTPS server asks its clients to move off their connections.
    closing: CancellationToken,
    /// The reconciler stops scaling and releases its Lease.
    scaling: CancellationToken,
    /// Everything else: the servers drain, the watches end.
    shutdown: CancellationToken,
    delay: Duration,
}

impl Stopping {
    /// Kubernetes removes the pod from the Service's endpoints asynchronously: keep answering (with /readyz
    /// at 503) until the API server has stopped calling, then drain. A second signal cuts the wait short.
    /// Scaling stops at once, so the next leader takes over while this process still answers.
    async fn run(
        self,
        reconciler: Option<tokio::task::JoinHandle<()>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    ) {
        self.readiness.stopping.store(true, Ordering::Release);
        self.closing.cancel();
        self.scaling.cancel();
        tracing::info!(delay = ?self.delay, "shutting down: scaling stopped, /readyz answers 503, then the servers drain");
        let delay = async {
            tokio::select! {
                () = tokio::time::sleep(self.delay) => {}
                () = termination() => tracing::info!("second signal: draining now"),
            }
        };
        // In-flight passes end (at most 5 s) and the Lease is released; an API server that does not answer
        // cannot hold the shutdown beyond the pod's grace period.
        let released = async {
            if let Some(r) = reconciler
                && tokio::time::timeout(RECONCILER_STOP_TIMEOUT, r).await.is_err()
            {
                tracing::warn!("the reconciler did not stop in time");
            }
        };
        tokio::join!(delay, released);
        self.shutdown.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }
}
