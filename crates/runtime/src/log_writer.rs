//! Writes function logs to the log store in the background, in batches, so the invoke path never
//! waits for a disk flush. A batch is committed at most `FLUSH_INTERVAL` after its first event.

use std::sync::Arc;
use std::time::Duration;

use kappa_core::logs::{LogBatch, LogEvent, LogStore};
use tokio::sync::{mpsc, oneshot};

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
const MAX_BATCH_EVENTS: usize = 2000;

enum Message {
    Event {
        group: Arc<str>,
        stream: Arc<str>,
        event: LogEvent,
    },
    Flush(oneshot::Sender<()>),
}

/// A cheap handle to the background log writer.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWriter")
    }
}

impl LogWriter {
    /// Start the writer task over `store`.
    pub fn start(store: Arc<dyn LogStore>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    pub fn write(&self, group: &Arc<str>, stream: &Arc<str>, event: LogEvent) {
        let _ = self.tx.send(Message::Event {
            group: Arc::clone(group),
            stream: Arc::clone(stream),
            event,
        });
    }

    /// Wait until everything written so far is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Arc<dyn LogStore>, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut pending: Vec<(Arc<str>, Arc<str>, LogEvent)> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let message = if pending.is_empty() && waiters.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(FLUSH_INTERVAL, rx.recv()).await {
                Ok(message) => message,
                Err(_) => {
                    commit(&store, &mut pending, &mut waiters).await;
                    continue;
                }
            }
        };
        match message {
            None => {
                commit(&store, &mut pending, &mut waiters).await;
                return;
            }
            Some(Message::Event {
                group,
                stream,
                event,
            }) => {
                pending.push((group, stream, event));
                if pending.len() >= MAX_BATCH_EVENTS {
                    commit(&store, &mut pending, &mut waiters).await;
                }
            }
            Some(Message::Flush(done)) => {
                waiters.push(done);
                commit(&store, &mut pending, &mut waiters).await;
            }
        }
    }
}

async fn commit(
    store: &Arc<dyn LogStore>,
    pending: &mut Vec<(Arc<str>, Arc<str>, LogEvent)>,
    waiters: &mut Vec<oneshot::Sender<()>>,
) {
    if !pending.is_empty() {
        let mut batches: Vec<LogBatch> = Vec::new();
        for (group, stream, event) in pending.drain(..) {
            match batches.last_mut() {
                Some(last) if *last.group == *group && *last.stream == *stream => {
                    last.events.push(event);
                }
                _ => batches.push(LogBatch {
                    group: group.to_string(),
                    stream: stream.to_string(),
                    events: vec![event],
                }),
            }
        }
        if let Err(err) = store.append(&batches).await {
            tracing::error!(error = %err, "storing function logs failed");
        }
    }
    for waiter in waiters.drain(..) {
        let _ = waiter.send(());
    }
}
