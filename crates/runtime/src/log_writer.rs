//! Writes function logs to the log store in the background, in batches, so the invoke path never
//! waits for a disk flush. A batch is committed at most `FLUSH_INTERVAL` after its first event,
//! at once when someone waits for it (`flush`), or when it reaches `MAX_BATCH_EVENTS`.
//!
//! Writing an event only appends it to a shared buffer: the writer task is woken by the first
//! event of a batch, not by every event, so a busy invoke path costs it no task wake-ups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kappa_core::logs::{LogBatch, LogEvent, LogStore};
use tokio::sync::{Notify, oneshot};

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
const MAX_BATCH_EVENTS: usize = 2000;

/// Events not yet committed, and who waits for them to be.
#[derive(Default)]
struct Buffer {
    events: Vec<(Arc<str>, Arc<str>, LogEvent)>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Buffer {
    /// Commit without waiting out the batch window.
    fn urgent(&self) -> bool {
        !self.waiters.is_empty() || self.events.len() >= MAX_BATCH_EVENTS
    }
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Woken by a batch's first event, a full batch, and every flush.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWriter")
    }
}

impl LogWriter {
    /// Start the writer task. It lives as long as the runtime; call [`LogWriter::flush`] before
    /// shutting down to store what is buffered.
    pub fn start(store: Arc<dyn LogStore>) -> Self {
        let shared = Arc::new(Shared {
            buffer: Mutex::default(),
            wake: Notify::new(),
        });
        tokio::spawn(run(store, Arc::clone(&shared)));
        Self { shared }
    }

    pub fn write(&self, group: &Arc<str>, stream: &Arc<str>, event: LogEvent) {
        let wake = {
            let mut buffer = self.shared.lock();
            buffer
                .events
                .push((Arc::clone(group), Arc::clone(stream), event));
            buffer.events.len() == 1 || buffer.events.len() == MAX_BATCH_EVENTS
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Wait until every event written before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.shared.lock().waiters.push(done);
        self.shared.wake.notify_one();
        let _ = wait.await;
    }
}

async fn run(store: Arc<dyn LogStore>, shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        if !shared.lock().urgent() {
            // The batch's window; a flush or a full batch ends it early.
            tokio::select! {
                () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                () = shared.wake.notified() => {}
            }
        }
        let Buffer { events, waiters } = std::mem::take(&mut *shared.lock());
        commit(&store, events).await;
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}

/// Store `events`, one batch per log stream, each stream's events in the order written.
async fn commit(store: &Arc<dyn LogStore>, events: Vec<(Arc<str>, Arc<str>, LogEvent)>) {
    if events.is_empty() {
        return;
    }
    let mut batches: Vec<LogBatch> = Vec::new();
    let mut index: HashMap<(Arc<str>, Arc<str>), usize> = HashMap::new();
    for (group, stream, event) in events {
        let slot = *index
            .entry((group, stream))
            .or_insert_with_key(|(group, stream)| {
                batches.push(LogBatch {
                    group: group.to_string(),
                    stream: stream.to_string(),
                    events: Vec::new(),
                });
                batches.len() - 1
            });
        if let Some(batch) = batches.get_mut(slot) {
            batch.events.push(event);
        }
    }
    if let Err(err) = store.append(&batches).await {
        tracing::error!(error = %err, "storing function logs failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::logs::LogQuery;
    use kappa_store::SqliteLogStore;

    fn event(timestamp: i64, message: &str) -> LogEvent {
        LogEvent {
            timestamp,
            message: message.to_owned(),
        }
    }

    async fn messages(store: &SqliteLogStore, stream: &str) -> Vec<String> {
        let query = LogQuery {
            group: "/aws/lambda/f".into(),
            streams: vec![stream.into()],
            limit: 100,
            ..LogQuery::default()
        };
        store
            .events(&query)
            .await
            .unwrap()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[tokio::test]
    async fn a_flush_stores_every_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteLogStore::open(&dir.path().join("kappa.db")).unwrap());
        let writer = LogWriter::start(store.clone());
        let group: Arc<str> = Arc::from("/aws/lambda/f");
        let (one, two): (Arc<str>, Arc<str>) = (Arc::from("s1"), Arc::from("s2"));
        writer.write(&group, &one, event(1, "a"));
        writer.write(&group, &two, event(2, "b"));
        writer.write(&group, &one, event(3, "c"));
        writer.flush().await;
        assert_eq!(messages(&store, "s1").await, ["a", "c"]);
        assert_eq!(messages(&store, "s2").await, ["b"]);
        // A flush with nothing buffered returns too.
        writer.flush().await;
    }

    #[tokio::test]
    async fn events_are_stored_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteLogStore::open(&dir.path().join("kappa.db")).unwrap());
        let writer = LogWriter::start(store.clone());
        let (group, stream): (Arc<str>, Arc<str>) = (Arc::from("/aws/lambda/f"), Arc::from("s"));
        for round in 0..3 {
            writer.write(&group, &stream, event(round, &format!("m{round}")));
            // Stored once the batch window has passed (generous bound: this is no timing test).
            let mut stored = Vec::new();
            for _ in 0..200 {
                stored = messages(&store, "s").await;
                if stored.len() == usize::try_from(round + 1).unwrap() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                stored.len(),
                usize::try_from(round + 1).unwrap(),
                "{stored:?}"
            );
        }
    }
}
