//! The server's side of the frame trace (benchmark builds, `--features frame-trace`; see
//! [`crate::fanout::trace`]): it gives the sans-IO layer the time of each read and inbox
//! drain, and once a second appends each worker's final rows to
//! `$RINGCAST_FRAME_TRACE/core-N.tsv` (tab-separated: core, ingested µs, then µs from the
//! publisher's read to the ring, first and last prepared send, first and last completed send,
//! and the number of sends). Without the feature every function here is empty.

use crate::fanout::trace::Filled;

/// Starts this worker's trace when `RINGCAST_FRAME_TRACE` names a directory.
#[cfg(feature = "frame-trace")]
pub fn start(core: usize) {
    use std::io::Write;
    use std::time::{Duration, Instant};

    let Some(dir) = std::env::var_os("RINGCAST_FRAME_TRACE").map(std::path::PathBuf::from) else {
        return;
    };
    crate::fanout::trace::start(core);
    let path = dir.join(format!("core-{core}.tsv"));
    super::runtime::spawn(async move {
        loop {
            super::runtime::sleep(Duration::from_secs(1)).await;
            let rows = crate::fanout::trace::take_rows(Instant::now());
            if rows.is_empty() {
                continue;
            }
            let mut text = String::new();
            for r in rows {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r.core,
                    r.ingested_us,
                    r.ring_us,
                    r.first_prepared_us,
                    r.last_prepared_us,
                    r.first_done_us,
                    r.last_done_us,
                    r.sends
                ));
            }
            // A benchmark build may block the worker here, for one small append a second.
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                let _ = file.write_all(text.as_bytes());
            }
        }
    })
    .detach();
}

#[cfg(not(feature = "frame-trace"))]
#[inline(always)]
pub fn start(_core: usize) {}

/// Tells the trace the time of the read or inbox drain this worker is handling now.
#[inline(always)]
pub fn clock() {
    #[cfg(feature = "frame-trace")]
    crate::fanout::trace::set_clock(std::time::Instant::now());
}

/// The frames the watcher's last fill prepared.
#[inline(always)]
pub fn filled() -> Filled {
    crate::fanout::trace::take_filled()
}

/// The send carrying `filled` completed now.
#[inline(always)]
pub fn sent(filled: Filled) {
    #[cfg(feature = "frame-trace")]
    crate::fanout::trace::done(filled, std::time::Instant::now());
    #[cfg(not(feature = "frame-trace"))]
    let _ = filled;
}
