//! Scale-out: several nodes serve one stream together (issue #12).
//!
//! A node that accepts a publish registers the stream in the directory ([`directory`], Redis,
//! on a thread of its own: sessions and the data path never wait on it). A node asked to play
//! a stream it does not have looks it up and opens **one** pull per stream per node ([`pull`]),
//! an outbound RTMP play from the origin's inter-node listener, fed into the local fan-out as
//! a local publisher, so the GOP cache, grace window and policies apply unchanged. The pull
//! ends `cluster.idle_close_ms` after the last local consumer left.
//!
//! In static mode there is no directory: the configured `origins` are asked in order (another
//! ringcast's inter-node listener, or any RTMP server as `rtmp://host/app`).

pub mod directory;
pub mod pull;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::{ClusterConfig, ClusterMode, OriginAddr, RedisAddr};
use crate::metrics::ClusterGauges;
use crate::server::Core;
use crate::server::runtime;
use directory::{Directory, Entry, Lookup, Request, Slot};

/// How long a "not found" end is remembered, for the drivers to tell it apart from an end.
const NOT_FOUND_MEMORY: Duration = Duration::from_secs(5);
/// How long a pull waits for the directory to answer a lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The node's cluster state, shared by every core.
#[derive(Debug)]
pub struct Cluster {
    mode: ClusterMode,
    me: Entry,
    origins: Vec<OriginAddr>,
    idle_close: Duration,
    requests: Option<mpsc::Sender<Request>>,
    /// Streams with a pull task on some core.
    pulls: Mutex<HashSet<String>>,
    /// Streams recently ended for their viewers because no origin had them, and when.
    not_found: Mutex<HashMap<String, Instant>>,
    directory_up: Arc<AtomicBool>,
    upstreams: AtomicI64,
    pulls_started: AtomicU64,
    pull_bytes: AtomicU64,
    pull_reconnects: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host name, for a `node_id` left empty.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().replace(' ', "_"))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ringcast".to_owned())
}

/// A stream name as logs show it: the app, and the key redacted.
pub fn shown(name: &str) -> String {
    match name.rsplit_once('/') {
        Some((app, key)) => format!("{app}/{}", crate::config::redact_key(key)),
        None => crate::config::redact_key(name),
    }
}

impl Cluster {
    /// The cluster state for `config`; in redis mode, starts the directory thread.
    pub fn start(config: &ClusterConfig) -> std::io::Result<Arc<Cluster>> {
        let node_id = if config.node_id.is_empty() {
            host_name()
        } else {
            config.node_id.replace(' ', "_")
        };
        let me = Entry {
            node_id,
            advertise: config.advertised().to_owned(),
        };
        let directory_up = Arc::new(AtomicBool::new(false));
        let requests = if config.mode == ClusterMode::Redis {
            let addr = RedisAddr::parse(&config.redis)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let (tx, rx) = mpsc::channel();
            let directory = Directory::new(addr, me.clone(), directory_up.clone());
            std::thread::Builder::new()
                .name("ringcast-dir".into())
                .spawn(move || directory.run(rx))?;
            Some(tx)
        } else {
            None
        };
        Ok(Arc::new(Cluster {
            mode: config.mode,
            me,
            origins: config
                .origins
                .iter()
                .filter_map(|o| OriginAddr::parse(o).ok())
                .collect(),
            idle_close: Duration::from_millis(config.idle_close_ms),
            requests,
            pulls: Mutex::new(HashSet::new()),
            not_found: Mutex::new(HashMap::new()),
            directory_up,
            upstreams: AtomicI64::new(0),
            pulls_started: AtomicU64::new(0),
            pull_bytes: AtomicU64::new(0),
            pull_reconnects: AtomicU64::new(0),
        }))
    }

    /// A node on its own (no cluster).
    pub fn standalone() -> Arc<Cluster> {
        Arc::new(Cluster {
            mode: ClusterMode::Standalone,
            me: Entry {
                node_id: String::new(),
                advertise: String::new(),
            },
            origins: Vec::new(),
            idle_close: Duration::from_secs(10),
            requests: None,
            pulls: Mutex::new(HashSet::new()),
            not_found: Mutex::new(HashMap::new()),
            directory_up: Arc::new(AtomicBool::new(false)),
            upstreams: AtomicI64::new(0),
            pulls_started: AtomicU64::new(0),
            pull_bytes: AtomicU64::new(0),
            pull_reconnects: AtomicU64::new(0),
        })
    }

    pub fn mode(&self) -> ClusterMode {
        self.mode
    }

    /// This node's directory identity.
    pub fn me(&self) -> &Entry {
        &self.me
    }

    /// Registers a local publisher of `name` in the directory (redis mode); the registration is
    /// removed, by its owner only, when the returned guard drops.
    pub fn register(self: &Arc<Self>, name: &str) -> Option<Registration> {
        let requests = self.requests.as_ref()?;
        // The directory thread outlives every worker; a failed send only means shutdown.
        let _ = requests.send(Request::Register(name.to_owned()));
        Some(Registration {
            cluster: self.clone(),
            name: name.to_owned(),
        })
    }

    /// True while a pull task of `name` runs on this node: a local publisher then takes the
    /// stream over whatever the takeover policy says (the pull was only standing in).
    pub fn is_pulling(&self, name: &str) -> bool {
        self.mode != ClusterMode::Standalone && lock(&self.pulls).contains(name)
    }

    /// A local consumer wants `name`: unless it is live here or already pulled, start this
    /// node's one pull of it, on the caller's core.
    pub fn want(self: &Arc<Self>, core: &Rc<Core>, name: &str) {
        if self.mode == ClusterMode::Standalone || name.split('/').next() == Some("fstream") {
            // fstream channels carry their broadcaster's password: they are not pulled.
            return;
        }
        if core
            .hub
            .registry()
            .get(name)
            .is_some_and(|stream| stream.is_live())
        {
            return;
        }
        if !lock(&self.pulls).insert(name.to_owned()) {
            return;
        }
        let task = pull::Pull {
            core: core.clone(),
            cluster: self.clone(),
            name: name.to_owned(),
        };
        runtime::spawn(pull::run(task)).detach();
    }

    /// Where to pull `name` from, in the order to try.
    async fn resolve(&self, name: &str) -> Result<Vec<OriginAddr>, String> {
        match self.mode {
            ClusterMode::Standalone => Err("this node is standalone".to_owned()),
            ClusterMode::Static => Ok(self.origins.clone()),
            ClusterMode::Redis => match self.lookup(name).await {
                Lookup::Found(entry)
                    if entry.node_id == self.me.node_id || entry.advertise == self.me.advertise =>
                {
                    Err("the directory names this node (never pulled from itself)".to_owned())
                }
                Lookup::Found(entry) => OriginAddr::parse(&entry.advertise)
                    .map(|addr| vec![addr])
                    .map_err(|e| format!("directory entry of {}: {e}", entry.node_id)),
                Lookup::NotFound => Err("not in the directory".to_owned()),
                Lookup::Failed(reason) => Err(reason),
            },
        }
    }

    async fn lookup(&self, name: &str) -> Lookup {
        let Some(requests) = &self.requests else {
            return Lookup::Failed("no directory".to_owned());
        };
        let slot = Arc::new(Slot::default());
        if requests
            .send(Request::Lookup(name.to_owned(), slot.clone()))
            .is_err()
        {
            return Lookup::Failed("the directory thread is gone".to_owned());
        }
        let answer = std::future::poll_fn(|cx| slot.poll_take(cx));
        match compio::time::timeout(LOOKUP_TIMEOUT, answer).await {
            Ok(found) => found,
            Err(_) => Lookup::Failed(format!(
                "the directory did not answer within {LOOKUP_TIMEOUT:?}"
            )),
        }
    }

    /// Records that `name`'s viewers are being told no origin has it.
    fn mark_not_found(&self, name: &str) {
        let mut not_found = lock(&self.not_found);
        not_found.retain(|_, at| at.elapsed() < NOT_FOUND_MEMORY);
        not_found.insert(name.to_owned(), Instant::now());
    }

    /// True if `name` ended for its viewers just now because no origin had it.
    pub fn was_not_found(&self, name: &str) -> bool {
        self.mode != ClusterMode::Standalone
            && lock(&self.not_found)
                .get(name)
                .is_some_and(|at| at.elapsed() < NOT_FOUND_MEMORY)
    }

    fn pull_ended(&self, name: &str) {
        lock(&self.pulls).remove(name);
    }

    /// What `/metrics` shows.
    pub fn gauges(&self) -> Option<ClusterGauges> {
        (self.mode != ClusterMode::Standalone).then(|| ClusterGauges {
            upstreams: self.upstreams.load(Ordering::Relaxed).max(0) as u64,
            directory_up: (self.mode == ClusterMode::Redis)
                .then(|| self.directory_up.load(Ordering::Acquire)),
            pulls: self.pulls_started.load(Ordering::Relaxed),
            pull_bytes: self.pull_bytes.load(Ordering::Relaxed),
            pull_reconnects: self.pull_reconnects.load(Ordering::Relaxed),
        })
    }
}

/// A stream this node publishes, registered in the directory until dropped.
#[derive(Debug)]
pub struct Registration {
    cluster: Arc<Cluster>,
    name: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(requests) = &self.cluster.requests
            && requests
                .send(Request::Unregister(std::mem::take(&mut self.name)))
                .is_err()
        {
            warn!("cluster: the directory thread is gone; the registration lapses on its own");
        }
    }
}
