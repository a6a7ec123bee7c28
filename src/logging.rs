//! Logging that never blocks a worker: lines go to one writer thread through a bounded queue.
//!
//! `tracing`'s formatter writes each event to the writer `LogSink::make_writer` (its `MakeWriter` impl) returns; that
//! writer bounds the line ([`MAX_LINE`] bytes, cut at a character boundary and marked
//! `[truncated]`) and offers it to the queue with `try_send`. When the queue is full (the
//! process's stderr reader — a pipe to journald, Docker's log driver, a terminal — fell behind)
//! the line is dropped and counted (`ringcast_log_lines_dropped_total`); the worker never waits.
//! Once the writer thread can write again it logs one line saying how many lines were lost.
//!
//! The queue holds [`QUEUE_LINES`] lines, so a stalled reader costs at most
//! `QUEUE_LINES × MAX_LINE` bytes. [`LogSink::flush`] (at exit) waits a bounded time for the
//! queue to drain.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// Longest line written, in bytes; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// Lines waiting for the writer thread before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;
/// How often an idle writer thread checks whether drops are still unreported.
const REPORT_EVERY: Duration = Duration::from_millis(500);
const TRUNCATED: &[u8] = b" [truncated]\n";

/// Lines dropped because the queue was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since the process started (`ringcast_log_lines_dropped_total`).
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// The sending side of the log queue; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    tx: SyncSender<Message>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl LogSink {
    /// Starts the writer thread writing to `out` (stderr in the binary).
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<LogSink> {
        Self::spawn_with(out, QUEUE_LINES)
    }

    /// Like [`LogSink::spawn`] with a queue of `lines`.
    pub fn spawn_with<W: Write + Send + 'static>(out: W, lines: usize) -> std::io::Result<LogSink> {
        let (tx, rx) = mpsc::sync_channel(lines.max(1));
        std::thread::Builder::new()
            .name("ringcast-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(LogSink { tx })
    }

    /// Offers one formatted line; drops (and counts) it if the queue is full.
    pub fn offer(&self, line: &[u8]) {
        let line = bound_line(line);
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits up to `timeout` for every queued line to be written (at exit).
    pub fn flush(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let mut flush = Message::Flush(done_tx);
        loop {
            match self.tx.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    flush = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = done_rx.recv_timeout(left);
    }
}

/// `line` cut to [`MAX_LINE`] bytes at a character boundary, ending in a newline.
fn bound_line(line: &[u8]) -> Vec<u8> {
    if line.len() <= MAX_LINE {
        return line.to_vec();
    }
    let mut cut = MAX_LINE - TRUNCATED.len();
    // Back up to the start of a UTF-8 character (continuation bytes are 0b10xx_xxxx).
    while cut > 0 && line.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(MAX_LINE);
    out.extend_from_slice(line.get(..cut).unwrap_or_default());
    out.extend_from_slice(TRUNCATED);
    out
}

/// The writer thread: writes lines as they come and, after drops, how many were lost.
fn write_lines<W: Write>(rx: Receiver<Message>, mut out: W) {
    let mut reported = 0u64;
    loop {
        let message = rx.recv_timeout(REPORT_EVERY);
        // Anything received means the last write finished: the reader is keeping up again.
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > reported {
            let lost = dropped - reported;
            reported = dropped;
            let _ = writeln!(
                out,
                "ringcast: {lost} log lines dropped: the log reader fell behind (ringcast_log_lines_dropped_total = {dropped})"
            );
        }
        match message {
            Ok(Message::Line(line)) => {
                let _ = out.write_all(&line);
            }
            Ok(Message::Flush(done)) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The per-event writer `tracing-subscriber` formats into.
pub struct LineWriter {
    sink: LogSink,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.offer(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer that blocks until the test opens its gate, then records everything.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.seen.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_drops_lines_without_blocking_and_the_loss_is_reported_after() {
        let gated = Gated {
            gate: Arc::new(Mutex::new(())),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let closed = gated.gate.lock().unwrap();
        let before = dropped_total();
        let sink = LogSink::spawn_with(gated.clone(), 4).unwrap();
        for i in 0..100 {
            sink.offer(format!("line {i}\n").as_bytes());
        }
        assert!(
            dropped_total() - before >= 90,
            "lines beyond the queue dropped"
        );
        drop(closed);
        sink.offer(b"after\n");
        sink.flush(Duration::from_secs(10));
        let text = String::from_utf8(gated.seen.lock().unwrap().clone()).unwrap();
        assert!(text.contains("log lines dropped"), "{text}");
        assert!(text.contains("line 0\n"));
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let bounded = bound_line(long.as_bytes());
        assert!(bounded.len() <= MAX_LINE);
        let text = String::from_utf8(bounded).unwrap();
        assert!(text.ends_with(" [truncated]\n"));
        assert_eq!(bound_line(b"short\n"), b"short\n");
    }
}
