//! Following objects with kube-runtime watchers: one LIST, then a WATCH that resumes after dropped connections and
//! server errors (with back-off), never a polling GET; and that gives up, saying why, when the API server keeps
//! refusing it (an expired or forbidden token, a resource that is not there) or keeps failing.

use futures::{Stream, StreamExt};
use kube::Api;
use kube::core::Status;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use crate::error::KubeError;

/// Refusals in a row (401, 403, 404, 405: asking again will not help) that end a watch: a few, since a token being
/// renewed may be refused once. With the back-off between them, about 3 s.
const REFUSALS: u32 = 3;

/// Errors of any kind in a row that end a watch. With kube's back-off (0.8 s doubling up to 30 s) between them,
/// about two and a half minutes of an API server that answers nothing else.
const ERRORS: u32 = 10;

/// Changes to the objects `api` and `config` select, as they happen. Interruptions are logged and the watch resumes;
/// when the server keeps refusing or failing it, the last item is [`Change::Failed`] naming `what` was watched and
/// the server's answer, and the stream ends.
pub(crate) fn changes<K>(api: Api<K>, config: watcher::Config, what: String) -> impl Stream<Item = Change<K>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let state = Failing { refusals: 0, errors: 0, ended: false, what };
    watcher(api, config)
        .default_backoff()
        .scan(state, |state, event| {
            let item = if state.ended { None } else { Some(state.next(event)) };
            std::future::ready(item)
        })
        .filter_map(std::future::ready)
}

/// One change to a watched object, or the end of the watch.
pub(crate) enum Change<K> {
    Applied(K),
    Deleted(K),
    /// The watch gave up: the server kept refusing or failing it. No change follows.
    Failed(KubeError),
}

/// How a watch has been failing lately.
struct Failing {
    refusals: u32,
    errors: u32,
    ended: bool,
    what: String,
}

impl Failing {
    fn next<K>(&mut self, event: Result<watcher::Event<K>, watcher::Error>) -> Option<Change<K>> {
        let error = match event {
            // Every (re)start of the list begins with `Init`, also the one that is refused next: not progress.
            Ok(watcher::Event::Init) => return None,
            Ok(event) => {
                self.refusals = 0;
                self.errors = 0;
                return match event {
                    watcher::Event::Apply(k) | watcher::Event::InitApply(k) => Some(Change::Applied(k)),
                    watcher::Event::Delete(k) => Some(Change::Deleted(k)),
                    watcher::Event::Init | watcher::Event::InitDone => None,
                };
            }
            Err(error) => error,
        };
        self.errors += 1;
        let status = status_of(&error);
        let refused = status.is_some_and(|s| matches!(s.code, 401 | 403 | 404 | 405));
        self.refusals = if refused { self.refusals + 1 } else { 0 };
        let why = match status {
            Some(s) => format!("{} {}: {}", s.code, s.reason, s.message),
            None => error.to_string(),
        };
        if self.refusals >= REFUSALS || self.errors >= ERRORS {
            self.ended = true;
            let what = std::mem::take(&mut self.what);
            let why = if refused {
                format!("the API server refused it {} times in a row: {why}", self.refusals)
            } else {
                format!("it failed {} times in a row, the last with {why}", self.errors)
            };
            tracing::warn!(watch = %what, %why, "watch given up");
            return Some(Change::Failed(KubeError::WatchFailed { what, why }));
        }
        tracing::warn!(watch = %self.what, error = %why, "watch interrupted; resuming after a back-off");
        None
    }
}

/// The API server's answer inside a watcher error, if there is one.
fn status_of(error: &watcher::Error) -> Option<&Status> {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            match e {
                kube::Error::Api(status) => Some(status),
                _ => None,
            }
        }
        watcher::Error::WatchError(status) => Some(status),
        watcher::Error::NoResourceVersion => None,
    }
}
