//! Following objects with kube-runtime watchers: one LIST, then a WATCH that resumes after dropped connections and
//! server errors (with back-off), never a polling GET.

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

/// Changes to the objects `api` and `config` select, as they happen; errors are reported and the watch resumes.
pub(crate) fn changes<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = Change<K>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config).default_backoff().filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(k) | watcher::Event::InitApply(k)) => Some(Change::Applied(k)),
            Ok(watcher::Event::Delete(k)) => Some(Change::Deleted(k)),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => {
                tracing::debug!(error = %e, "watch interrupted; resuming");
                None
            }
        }
    })
}

/// One change to a watched object.
pub(crate) enum Change<K> {
    Applied(K),
    Deleted(K),
}
