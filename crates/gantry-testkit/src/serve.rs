//! What the HTTP stand-ins share: an axum app served on a free loopback port until dropped, and queues of faults
//! that each last a number of requests.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An axum app on 127.0.0.1, stopped when dropped.
pub(crate) struct Loopback {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    /// Serves `app` on a free port of 127.0.0.1.
    pub(crate) async fn serve(app: axum::Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Faults in the order they were asked for, each for a number of requests.
pub(crate) struct Faults<T>(Mutex<Vec<(T, u32)>>);

impl<T> Default for Faults<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T: Copy> Faults<T> {
    /// The next `times` requests get `fault` (after those already queued).
    pub(crate) fn push(&self, fault: T, times: u32) {
        if times > 0 {
            lock(&self.0).push((fault, times));
        }
    }

    /// The fault for this request, if any, using one of its uses.
    pub(crate) fn take(&self) -> Option<T> {
        let mut list = lock(&self.0);
        let (fault, times) = list.first_mut()?;
        let fault = *fault;
        *times -= 1;
        if *times == 0 {
            list.remove(0);
        }
        Some(fault)
    }
}
