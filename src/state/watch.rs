//! Watch streams of the state layer: which namespaces to watch, a watch filtered to them, and the task that
//! feeds a watch into a cache.

use futures::{Stream, StreamExt};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use tokio_util::sync::CancellationToken;

/// Which namespaces the reconciler looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Namespaces(Vec<String>);

impl Namespaces {
    /// From `WATCH_NAMESPACE`'s form: empty for all, else a comma-separated list.
    pub(crate) fn parse(list: &str) -> Namespaces {
        let mut v: Vec<String> =
            list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        v.sort();
        v.dedup();
        Namespaces(v)
    }

    #[cfg(test)]
    pub(crate) fn all() -> Namespaces {
        Namespaces(Vec::new())
    }

    pub(crate) fn contains(&self, namespace: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n == namespace)
    }

    /// Whether a watch event concerns these namespaces (an object of one of them, or the list's bounds).
    pub(crate) fn keeps<K: kube::Resource>(&self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                self.contains(&o.namespace().unwrap_or_default())
            }
            watcher::Event::Init | watcher::Event::InitDone => true,
        }
    }

    /// The API to watch: one namespace directly, several through a cluster-wide watch filtered here.
    pub(crate) fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self.0.as_slice() {
            [one] => Api::namespaced(client.clone(), one),
            _ => Api::all(client.clone()),
        }
    }
}

impl std::fmt::Display for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() { f.write_str("all namespaces") } else { f.write_str(&self.0.join(",")) }
    }
}

/// A watch with backoff, keeping only objects of `namespaces`.
pub(crate) fn events<K>(
    api: Api<K>,
    namespaces: &Namespaces,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let namespaces = namespaces.clone();
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        // Errors go on (the watcher retries; drive logs them).
        .filter(move |e| std::future::ready(e.as_ref().map_or(true, |e| namespaces.keeps(e))))
}

/// Feeds a watch into `apply` until `stop`; errors are logged (the watcher retries with backoff).
pub(crate) fn drive<K, S>(
    kind: &'static str,
    stream: S,
    stop: CancellationToken,
    apply: impl Fn(watcher::Event<K>) + Send + 'static,
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = stream.next() => match event {
                    None => return,
                    Some(Ok(e)) => apply(e),
                    Some(Err(e)) => tracing::warn!(kind, error = %e, "watch error (retrying with backoff)"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse_like_watch_namespace() {
        assert_eq!(Namespaces::parse(""), Namespaces::all());
        let n = Namespaces::parse(" b, a ,,a");
        assert!(n.contains("a") && n.contains("b") && !n.contains("c"));
        assert_eq!(n.to_string(), "a,b");
        assert!(Namespaces::all().contains("anything"));
    }

    #[test]
    fn events_of_other_namespaces_are_left_out_but_not_the_lists_bounds() {
        let pod = |ns: &str| {
            let mut p = k8s_openapi::api::core::v1::Pod::default();
            p.metadata.namespace = Some(ns.into());
            p
        };
        let n = Namespaces::parse("a");
        assert!(n.keeps(&watcher::Event::Apply(pod("a"))));
        assert!(!n.keeps(&watcher::Event::InitApply(pod("b"))));
        assert!(!n.keeps(&watcher::Event::Delete(pod("b"))));
        assert!(n.keeps(&watcher::Event::<k8s_openapi::api::core::v1::Pod>::Init));
        assert!(n.keeps(&watcher::Event::<k8s_openapi::api::core::v1::Pod>::InitDone));
    }
}
