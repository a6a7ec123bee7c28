//! Restream: every stream matching a `[[push]]` entry is pushed to its destination, each
//! destination isolated from the others, reconnecting, and observable (`GET /api/pushes`,
//! `ringcast_push_*` metrics).
//!
//! **Where a push runs.** Every core runs a [`supervise`] task. Each (destination, stream)
//! pair belongs to one core, chosen by a hash of the pair, so pushes spread over the cores
//! with no coordination; the owner runs the push as a watcher of its own copy of the stream
//! (every core holds every stream's ring, whichever core the publisher is on). The supervisor
//! looks a few times a second at the configured destinations and at the streams that have a
//! publisher or are within their grace window, whatever the ingest (RTMP, RTMPS, FTL, fstream
//! FLV): a pair that appears starts a push, a pair whose stream ended stops it. So a push
//! starts when its source goes live and stops when the source ends for good; a publisher
//! that returns within the grace window finds its destinations still connected.
//!
//! **Live changes.** [`Pushes::replace`] swaps the destination list (SIGHUP, see
//! [`reload`]): supervisors stop pushes whose entry went or changed and start the new
//! ones on their next look; untouched entries keep their connections.

pub mod driver;
pub mod status;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::{info, warn};

use super::Core;
use super::runtime::{self, JoinHandle};
use crate::config::PushConfig;
use status::{Board, PushState, PushStatus};

/// How often each core's supervisor compares the wanted pushes with the running ones.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);

/// The node's destinations and what every push is doing; shared by every core.
#[derive(Debug, Default)]
pub struct Pushes {
    list: Mutex<Arc<Vec<Arc<PushConfig>>>>,
    pub board: Board,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a reload changed, by destination id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Pushes {
    pub fn new(list: &[PushConfig]) -> Self {
        let pushes = Pushes::default();
        pushes.replace(list);
        pushes
    }

    /// The current destinations.
    pub fn list(&self) -> Arc<Vec<Arc<PushConfig>>> {
        lock(&self.list).clone()
    }

    /// Replaces the destinations. Entries equal to the old ones keep their `Arc`, so their
    /// pushes are not restarted.
    pub fn replace(&self, list: &[PushConfig]) -> Changes {
        let mut current = lock(&self.list);
        let mut changes = Changes::default();
        let next: Vec<Arc<PushConfig>> = list
            .iter()
            .map(|p| match current.iter().find(|old| old.id == p.id) {
                Some(old) if **old == *p => old.clone(),
                Some(_) => {
                    changes.changed.push(p.id.clone());
                    Arc::new(p.clone())
                }
                None => {
                    changes.added.push(p.id.clone());
                    Arc::new(p.clone())
                }
            })
            .collect();
        changes.removed = current
            .iter()
            .filter(|old| !list.iter().any(|p| p.id == old.id))
            .map(|old| old.id.clone())
            .collect();
        *current = Arc::new(next);
        drop(current);
        self.board.retain_ids(|id| list.iter().any(|p| p.id == id));
        changes
    }
}

/// The core that runs the push of `stream` to destination `id`.
pub fn owner_core(id: &str, stream: &str, cores: usize) -> usize {
    // FNV-1a: stable across runs and builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(stream.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % cores.max(1) as u64) as usize
}

struct Running {
    config: Arc<PushConfig>,
    status: Arc<PushStatus>,
    /// Dropping it cancels the push (its sockets close).
    task: JoinHandle<()>,
}

/// Starts and stops this core's pushes as streams come and go and the config changes.
pub async fn supervise(core: Rc<Core>) {
    let pushes = core.node.pushes.clone();
    let registry = core.hub.registry().clone();
    let cores = registry.cores();
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    loop {
        runtime::sleep(SUPERVISE_EVERY).await;
        let list = pushes.list();
        if list.is_empty() && running.is_empty() {
            continue;
        }
        let streams = registry.published_streams();
        let mut wanted: HashMap<(String, String), Arc<PushConfig>> = HashMap::new();
        for config in list.iter() {
            for stream in streams.iter().filter(|s| config.matches(s)) {
                if owner_core(&config.id, stream, cores) == core.index {
                    wanted.insert((config.id.clone(), stream.clone()), config.clone());
                }
            }
        }
        running.retain(|key, run| {
            let keep = !run.task.is_finished()
                && wanted.get(key).is_some_and(|c| Arc::ptr_eq(c, &run.config));
            if !keep && run.status.state() != PushState::Stopped {
                run.status.set(PushState::Stopped, None);
                info!(push = %run.status.id, stream = %run.status.stream, "push stopped");
            }
            keep
        });
        for (key, config) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let Ok(url) = config.parsed_url() else {
                continue; // validated at load: cannot happen
            };
            let shown = core.config.shown_stream_name(&key.1);
            let status = Arc::new(PushStatus::new(&config.id, &key.1, shown, url.shown()));
            pushes.board.start(status.clone());
            info!(push = %config.id, stream = %status.stream, url = %status.url, worker = core.index, "push starting");
            let task = runtime::spawn(driver::run(driver::PushTask {
                core: core.clone(),
                config: config.clone(),
                url,
                stream: key.1.clone(),
                status: status.clone(),
            }));
            running.insert(
                key,
                Running {
                    config,
                    status,
                    task,
                },
            );
        }
    }
}

/// SIGHUP: re-reads the configuration with `reload` and applies its `[[push]]` entries. A
/// config that fails to load changes nothing and is logged. Called from the node's one SIGHUP
/// handler (`server::on_sighup`).
pub fn reload(pushes: &Pushes, reload: &super::Reload) {
    match reload() {
        Ok(config) => {
            let changes = pushes.replace(&config.push);
            info!(
                added = ?changes.added,
                removed = ?changes.removed,
                changed = ?changes.changed,
                "SIGHUP: [[push]] reloaded"
            );
        }
        Err(e) => warn!(error = %e, "SIGHUP: the configuration did not load; nothing changed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn push(id: &str, url: &str) -> PushConfig {
        PushConfig {
            id: id.into(),
            from: "live/*".into(),
            url: url.into(),
            key: Secret::literal("{key}"),
            ..PushConfig::default()
        }
    }

    #[test]
    fn replacing_the_list_keeps_unchanged_entries_and_names_the_rest() {
        let pushes = Pushes::new(&[push("a", "rtmp://x/a"), push("b", "rtmp://x/b")]);
        let before = pushes.list();
        let changes = pushes.replace(&[
            push("a", "rtmp://x/a"),
            push("b", "rtmp://y/b"),
            push("c", "rtmp://x/c"),
        ]);
        assert_eq!(
            changes,
            Changes {
                added: vec!["c".into()],
                removed: vec![],
                changed: vec!["b".into()],
            }
        );
        let after = pushes.list();
        assert!(Arc::ptr_eq(&before[0], &after[0]), "a untouched");
        assert!(!Arc::ptr_eq(&before[1], &after[1]), "b restarted");
        let changes = pushes.replace(&[push("c", "rtmp://x/c")]);
        assert_eq!(changes.removed, ["a", "b"]);
    }

    #[test]
    fn pushes_spread_over_cores_deterministically() {
        let cores: Vec<usize> = (0..64)
            .map(|i| owner_core("yt", &format!("live/{i}"), 4))
            .collect();
        assert!(cores.iter().all(|&c| c < 4));
        for c in 0..4 {
            assert!(cores.contains(&c), "core {c} gets none");
        }
        assert_eq!(owner_core("yt", "live/a", 4), owner_core("yt", "live/a", 4));
        assert_eq!(owner_core("yt", "live/a", 1), 0);
    }
}
