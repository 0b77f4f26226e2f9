//! Capturing one environment's stdout and stderr (one pipe, as Lambda merges them) into log
//! events, and recording the text of the current invocation for `X-Amz-Log-Result`.
//!
//! Ordering: a runtime writes its output before it posts its response, so once the response has
//! arrived, everything it printed is already in the pipe. [`LogCapture::drain`] makes the reader
//! consume the pipe up to that point before `END` and `REPORT` are written.

use std::io::{ErrorKind, PipeReader};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use kappa_core::logs::LogEvent;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::log_writer::LogWriter;

/// The log of one environment: its group, stream, and the reader of its output.
#[derive(Debug, Clone)]
pub struct LogCapture {
    shared: Arc<Mutex<CaptureState>>,
    drain: mpsc::Sender<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct CaptureState {
    group: Arc<str>,
    stream: Arc<str>,
    writer: LogWriter,
    /// Text of the invocation (and, on a cold start, the init) being recorded.
    record: Option<String>,
    partial: Vec<u8>,
}

impl CaptureState {
    fn emit(&mut self, line: &str) {
        if let Some(record) = &mut self.record {
            record.push_str(line);
        }
        let event = LogEvent {
            timestamp: now_ms(),
            message: line.to_owned(),
        };
        self.writer.write(&self.group, &self.stream, event);
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(&String::from_utf8_lossy(&line));
        }
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let mut line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            line.push('\n');
            self.emit(&line);
        }
    }
}

impl LogCapture {
    /// Start reading `output` (the read end of the environment's stdout/stderr pipe).
    pub fn start(
        output: PipeReader,
        group: &str,
        stream: &str,
        writer: LogWriter,
    ) -> std::io::Result<Self> {
        let receiver = pipe::Receiver::from_owned_fd(OwnedFd::from(output))?;
        let shared = Arc::new(Mutex::new(CaptureState {
            group: Arc::from(group),
            stream: Arc::from(stream),
            writer,
            record: Some(String::new()),
            partial: Vec::new(),
        }));
        let (drain, drain_rx) = mpsc::channel(4);
        tokio::spawn(read_output(receiver, Arc::clone(&shared), drain_rx));
        Ok(Self { shared, drain })
    }

    /// Write a line of the platform's own (`START`, `END`, `REPORT`, …); `line` ends with `\n`.
    pub fn platform_line(&self, line: &str) {
        if let Ok(mut state) = self.shared.lock() {
            state.emit(line);
        }
    }

    /// Start recording the invocation's text, keeping what init already recorded.
    pub fn begin_record(&self) {
        if let Ok(mut state) = self.shared.lock()
            && state.record.is_none()
        {
            state.record = Some(String::new());
        }
    }

    /// Stop recording and return the text recorded.
    pub fn take_record(&self) -> String {
        self.shared
            .lock()
            .ok()
            .and_then(|mut state| state.record.take())
            .unwrap_or_default()
    }

    /// Wait until everything the runtime wrote so far has been read.
    pub async fn drain(&self) {
        let (done, wait) = oneshot::channel();
        if self.drain.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn read_output(
    receiver: pipe::Receiver,
    shared: Arc<Mutex<CaptureState>>,
    mut drains: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut open = true;
    while open {
        tokio::select! {
            biased;
            request = drains.recv() => {
                let Some(done) = request else { break };
                open = read_available(&receiver, &shared, &mut buffer);
                if let Ok(mut state) = shared.lock() {
                    state.flush_partial();
                }
                let _ = done.send(());
            }
            ready = receiver.readable() => {
                open = ready.is_ok() && read_available(&receiver, &shared, &mut buffer);
            }
        }
    }
    if let Ok(mut state) = shared.lock() {
        state.flush_partial();
    }
    // Answer drains that arrive after the runtime closed its output.
    while let Some(done) = drains.recv().await {
        let _ = done.send(());
    }
}

/// Read what the pipe holds now; false once the writer side is closed.
fn read_available(
    receiver: &pipe::Receiver,
    shared: &Mutex<CaptureState>,
    buffer: &mut [u8],
) -> bool {
    loop {
        match receiver.try_read(buffer) {
            Ok(0) => return false,
            Ok(n) => {
                if let Ok(mut state) = shared.lock() {
                    state.feed(&buffer[..n]);
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return true,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
