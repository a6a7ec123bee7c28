//! The Redis stream directory, on a thread of its own.
//!
//! Workers never talk to Redis: they send [`Request`]s through a channel (never blocking) and a
//! lookup's answer comes back through a [`Slot`] the asking task awaits with its own timeout.
//! The thread holds one connection (blocking sockets with short timeouts), reconnects with
//! backoff, and once a second refreshes every stream this node publishes:
//!
//! - register: `SET ringcast:stream:<name> "<node_id> <advertise>" NX EX 5`. If another node
//!   holds the name this node is a *candidate*: it retries every second and takes over as soon
//!   as the holder's registration lapses (the holder died, or its publisher moved here).
//! - refresh: a script extends the TTL only while the value is still ours.
//! - unregister: a script deletes the key only while the value is still ours.
//! - lookup: `GET`; answers are cached, so a lookup while Redis is down still finds a stream
//!   it found before (a pull re-resolving after its origin moved may then try a dead node and
//!   retry, which is no worse than failing).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use tracing::{info, warn};

use super::shown;
use crate::config::RedisAddr;
use crate::proto::resp::{self, Reply};

/// How long a registration lives without a refresh.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(5);
/// How often registrations are refreshed (and candidates retry).
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Connect, read and write timeout of the Redis connection.
const IO_TIMEOUT: Duration = Duration::from_millis(1500);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Extends the key's TTL if it still holds our value.
const REFRESH_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end";
/// Deletes the key if it still holds our value.
const DELETE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";

/// The Redis key of a stream: the app in clear (for operators), the rest hashed, so the
/// directory never holds a stream key (`ringcast:stream:live/<sha256 hex of live/KEY>`).
pub fn key(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let app = name.rsplit_once('/').map_or("", |(app, _)| app);
    let digest = Sha256::digest(name.as_bytes());
    format!("ringcast:stream:{app}/{}", hex::encode(digest))
}

/// What a node registers: its id and the address other nodes pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node_id: String,
    pub advertise: String,
}

impl Entry {
    pub fn encode(&self) -> String {
        format!("{} {}", self.node_id, self.advertise)
    }

    /// Parses a directory value; `None` if it is not `<node_id> <host:port>`.
    pub fn parse(value: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(value).ok()?;
        let (node_id, advertise) = text.rsplit_once(' ')?;
        let port = advertise.rsplit_once(':')?.1;
        (!node_id.is_empty() && port.parse::<u16>().is_ok()).then(|| Entry {
            node_id: node_id.to_owned(),
            advertise: advertise.to_owned(),
        })
    }
}

/// A lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Entry),
    NotFound,
    /// Redis could not answer (and nothing was cached), or answered something unusable.
    Failed(String),
}

/// A one-shot answer from the directory thread to a worker task.
#[derive(Debug)]
pub struct Slot<T> {
    value: Mutex<Option<T>>,
    waker: AtomicWaker,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: Mutex::new(None),
            waker: AtomicWaker::new(),
        }
    }
}

impl<T> Slot<T> {
    pub fn put(&self, value: T) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        self.waker.wake();
    }

    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        self.waker.register(cx.waker());
        match self
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

/// What workers ask of the directory thread.
#[derive(Debug)]
pub enum Request {
    /// A local publisher of this stream started.
    Register(String),
    /// A local publisher of this stream ended.
    Unregister(String),
    Lookup(String, Arc<Slot<Lookup>>),
}

/// A stream this node publishes.
#[derive(Debug)]
struct Owned {
    /// Local publishers (a takeover overlaps two briefly).
    count: u32,
    /// The key holds our value (else we are a candidate).
    registered: bool,
    candidate_logged: bool,
}

/// The directory thread's state.
pub struct Directory {
    addr: RedisAddr,
    me: Entry,
    conn: Option<Conn>,
    owned: HashMap<String, Owned>,
    cache: HashMap<String, Entry>,
    up: Arc<AtomicBool>,
    backoff: Duration,
    next_connect: Instant,
}

/// One connection to Redis.
struct Conn {
    stream: TcpStream,
    input: BytesMut,
}

impl Conn {
    fn open(addr: &RedisAddr) -> io::Result<Conn> {
        let target = (addr.host.as_str(), addr.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&target, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            input: BytesMut::new(),
        };
        if addr.db != 0 {
            let db = addr.db.to_string();
            match conn.call(&[b"SELECT", db.as_bytes()])? {
                Reply::Simple(_) => {}
                other => return Err(unexpected(&other)),
            }
        }
        match conn.call(&[b"PING"])? {
            Reply::Simple(_) => Ok(conn),
            other => Err(unexpected(&other)),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = BytesMut::new();
        resp::encode(args, &mut out);
        self.stream.write_all(&out)?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(reply) = resp::decode(&mut self.input)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                return Ok(reply);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}

fn unexpected(reply: &Reply) -> io::Error {
    let text = match reply {
        Reply::Error(e) => format!("Redis error: {e}"),
        other => format!("unexpected Redis reply {other:?}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

impl Directory {
    pub fn new(addr: RedisAddr, me: Entry, up: Arc<AtomicBool>) -> Directory {
        Directory {
            addr,
            me,
            conn: None,
            owned: HashMap::new(),
            cache: HashMap::new(),
            up,
            backoff: BACKOFF_MIN,
            next_connect: Instant::now(),
        }
    }

    /// Serves requests until every sender is gone.
    pub fn run(mut self, requests: Receiver<Request>) {
        let mut next_tick = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match requests.recv_timeout(wait) {
                Ok(request) => self.handle(request),
                Err(RecvTimeoutError::Timeout) => {
                    next_tick = Instant::now() + REFRESH_EVERY;
                    self.tick();
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Register(name) => {
                let owned = self.owned.entry(name.clone()).or_insert(Owned {
                    count: 0,
                    registered: false,
                    candidate_logged: false,
                });
                owned.count += 1;
                if !owned.registered {
                    self.claim(&name);
                }
            }
            Request::Unregister(name) => {
                let Some(owned) = self.owned.get_mut(&name) else {
                    return;
                };
                owned.count = owned.count.saturating_sub(1);
                if owned.count > 0 {
                    return;
                }
                let registered = owned.registered;
                self.owned.remove(&name);
                if registered {
                    let value = self.me.encode();
                    let (k, script) = (key(&name), DELETE_SCRIPT.as_bytes());
                    match self.call(&[b"EVAL", script, b"1", k.as_bytes(), value.as_bytes()]) {
                        Ok(_) => info!(stream = %shown(&name), "cluster: registration removed"),
                        Err(e) => {
                            warn!(stream = %shown(&name), error = %e, "cluster: could not remove the registration; it lapses on its own")
                        }
                    }
                }
            }
            Request::Lookup(name, slot) => slot.put(self.lookup(&name)),
        }
    }

    fn lookup(&mut self, name: &str) -> Lookup {
        let k = key(name);
        match self.call(&[b"GET", k.as_bytes()]) {
            Ok(Reply::Bulk(Some(value))) => match Entry::parse(&value) {
                Some(entry) => {
                    self.cache.insert(name.to_owned(), entry.clone());
                    Lookup::Found(entry)
                }
                None => Lookup::Failed(format!(
                    "the directory entry of {} does not parse: {:?}",
                    shown(name),
                    String::from_utf8_lossy(&value)
                )),
            },
            Ok(Reply::Bulk(None)) => {
                self.cache.remove(name);
                Lookup::NotFound
            }
            Ok(other) => Lookup::Failed(unexpected(&other).to_string()),
            Err(e) => match self.cache.get(name) {
                Some(entry) => Lookup::Found(entry.clone()),
                None => Lookup::Failed(format!("the directory is unreachable: {e}")),
            },
        }
    }

    /// Registers `name` if nobody holds it (or we already do); else stays a candidate.
    fn claim(&mut self, name: &str) {
        let value = self.me.encode();
        let k = key(name);
        let ttl = REGISTRATION_TTL.as_secs().to_string();
        let refreshed = self.call(&[
            b"EVAL",
            REFRESH_SCRIPT.as_bytes(),
            b"1",
            k.as_bytes(),
            value.as_bytes(),
            ttl.as_bytes(),
        ]);
        let registered = match refreshed {
            Ok(Reply::Integer(1)) => true,
            Ok(_) => {
                match self.call(&[
                    b"SET",
                    k.as_bytes(),
                    value.as_bytes(),
                    b"NX",
                    b"EX",
                    ttl.as_bytes(),
                ]) {
                    Ok(Reply::Simple(_)) => true,
                    Ok(_) => false,
                    Err(_) => return,
                }
            }
            Err(_) => return,
        };
        let Some(owned) = self.owned.get_mut(name) else {
            return;
        };
        match (owned.registered, registered) {
            (false, true) => {
                info!(stream = %shown(name), node = %self.me.node_id, "cluster: stream registered")
            }
            (true, false) => {
                warn!(stream = %shown(name), "cluster: lost the registration to another node; waiting as a candidate")
            }
            (false, false) if !owned.candidate_logged => {
                info!(stream = %shown(name), "cluster: another node holds the stream; waiting as a candidate until its registration lapses");
                owned.candidate_logged = true;
            }
            _ => {}
        }
        owned.registered = registered;
    }

    fn tick(&mut self) {
        if self.conn.is_none() {
            if Instant::now() >= self.next_connect {
                self.connect();
            }
        } else {
            // A liveness check even when nothing is registered, so directory_up is true.
            let _ = self.call(&[b"PING"]);
        }
        let names: Vec<String> = self.owned.keys().cloned().collect();
        for name in names {
            self.claim(&name);
        }
    }

    fn connect(&mut self) {
        match Conn::open(&self.addr) {
            Ok(conn) => {
                info!(host = %self.addr.host, port = self.addr.port, "cluster: directory connected");
                self.conn = Some(conn);
                self.backoff = BACKOFF_MIN;
                self.up.store(true, Ordering::Release);
            }
            Err(e) => {
                if self.up.swap(false, Ordering::AcqRel) || self.backoff == BACKOFF_MIN {
                    warn!(host = %self.addr.host, port = self.addr.port, error = %e, "cluster: directory unreachable; retrying with backoff");
                }
                self.next_connect = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// One command on the connection, opening it first if due; a failure drops it.
    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        if self.conn.is_none() && Instant::now() >= self.next_connect {
            self.connect();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected to Redis",
            ));
        };
        match conn.call(args) {
            Ok(Reply::Error(e)) => Err(io::Error::other(format!("Redis error: {e}"))),
            Ok(reply) => Ok(reply),
            Err(e) => {
                warn!(error = %e, "cluster: directory connection failed; reconnecting");
                self.conn = None;
                self.up.store(false, Ordering::Release);
                self.next_connect = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_does_not_parse() {
        let e = Entry {
            node_id: "n1".into(),
            advertise: "127.0.0.11:1940".into(),
        };
        assert_eq!(Entry::parse(e.encode().as_bytes()), Some(e));
        for bad in [
            &b""[..],
            b"n1",
            b"n1 host",
            b"n1 host:x",
            b" 1.2.3.4:5",
            b"\xff\xfe 1:2",
        ] {
            assert_eq!(Entry::parse(bad), None, "{bad:?}");
        }
    }
}
