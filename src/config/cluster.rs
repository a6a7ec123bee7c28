//! `[cluster]`: several nodes serving one stream together behind a load balancer, with Redis
//! (or a static list of origins) as the stream directory. See README "Scale-out".
//!
//! No IO here: the accessors only interpret the values (the host name fallback of `node_id`
//! is read by the server, which may touch the system).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, FieldDoc};

/// How this node finds the streams it does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// One node on its own: no directory, no pulls.
    #[default]
    Standalone,
    /// Ask `origins`, in order, for a stream this node does not have.
    Static,
    /// Publishers register their streams in Redis; other nodes look them up there.
    Redis,
}

section! {
    /// Scale-out: origin and edge nodes behind a load balancer, with Redis (or a static list
    /// of origins) as the stream directory.
    pub struct ClusterConfig {
        /// "standalone" (one node), "static" (pull from `origins`) or "redis" (publishers
        /// register in Redis, other nodes look streams up there and pull them).
        pub mode: ClusterMode = ClusterMode::Standalone,
        /// This node's unique name in the directory; empty = the host name.
        pub node_id: String = String::new(),
        /// The inter-node listener other nodes pull from ("IP:PORT", RTMP, never a PROXY
        /// header); empty = none. Also on a standalone node (the origin of static-mode edges).
        /// Keep it off the public balancer.
        pub listen: String = String::new(),
        /// The address this node registers for its streams ("IP:PORT"); empty = `listen`.
        pub advertise: String = String::new(),
        /// The Redis holding the stream directory (`redis://HOST:PORT`, optionally with
        /// `/DB`). Registrations live 5 s and are refreshed every second.
        pub redis: String = "redis://127.0.0.1:6379".to_owned(),
        /// Static mode: the nodes to ask, in order, as `HOST:PORT` (another ringcast's
        /// cluster listener) or `rtmp://HOST[:PORT]/APP` (any RTMP server, e.g. nginx-rtmp
        /// or SRS; the stream is played as its name within that app).
        pub origins: Vec<String> = Vec::new(),
        /// An edge drops its pull of a stream this long after its last local consumer left,
        /// in milliseconds.
        pub idle_close_ms: u64 = 10_000,
    }
}

/// Where a pull connects: a host, a port and the RTMP app to play from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAddr {
    pub host: String,
    pub port: u16,
    /// The app to `connect` to; `None` = the stream's own app (ringcast to ringcast).
    pub app: Option<String>,
}

impl OriginAddr {
    /// Parses `HOST:PORT` or `rtmp://HOST[:PORT]/APP`.
    pub fn parse(text: &str) -> Result<OriginAddr, String> {
        if let Some(rest) = text.strip_prefix("rtmp://") {
            let (hostport, app) = rest.split_once('/').ok_or_else(|| {
                format!("{text:?}: an rtmp:// origin needs an app (rtmp://host/app)")
            })?;
            let app = app.trim_end_matches('/');
            if app.is_empty() {
                return Err(format!("{text:?}: the app is empty"));
            }
            let (host, port) = split_host_port(hostport, Some(1935))
                .ok_or_else(|| format!("{text:?}: bad host or port"))?;
            return Ok(OriginAddr {
                host,
                port,
                app: Some(app.to_owned()),
            });
        }
        let (host, port) = split_host_port(text, None)
            .ok_or_else(|| format!("{text:?}: expected HOST:PORT or rtmp://HOST[:PORT]/APP"))?;
        Ok(OriginAddr {
            host,
            port,
            app: None,
        })
    }
}

/// `host:port` (or `[v6]:port`); `default_port` when the port is absent and allowed.
fn split_host_port(text: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some((addr.ip().to_string(), addr.port()));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Some((host.to_owned(), port.parse().ok()?))
        }
        None if !text.is_empty() => Some((text.to_owned(), default_port?)),
        _ => None,
    }
}

/// A parsed `redis` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host: String,
    pub port: u16,
    pub db: u32,
}

impl RedisAddr {
    /// Parses `redis://HOST[:PORT][/DB]`.
    pub fn parse(text: &str) -> Result<RedisAddr, String> {
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{text:?}: expected redis://HOST[:PORT][/DB]"))?;
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, db)) => (
                h,
                db.parse().map_err(|_| format!("{text:?}: bad db number"))?,
            ),
            None => (rest, 0),
        };
        if hostport.contains('@') {
            return Err(format!(
                "{text:?}: credentials in the URL are not supported"
            ));
        }
        let (host, port) = split_host_port(hostport, Some(6379))
            .ok_or_else(|| format!("{text:?}: bad host or port"))?;
        Ok(RedisAddr { host, port, db })
    }
}

impl ClusterConfig {
    /// True unless the node runs on its own.
    pub fn is_clustered(&self) -> bool {
        self.mode != ClusterMode::Standalone
    }

    /// The inter-node listener, if one is configured.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// What this node registers: `advertise`, else `listen`.
    pub fn advertised(&self) -> &str {
        if self.advertise.is_empty() {
            &self.listen
        } else {
            &self.advertise
        }
    }

    /// Checks the section (called by the config's validation).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: format!("cluster.{field}"),
            reason,
        };
        if !self.listen.is_empty() && self.listen_addr().is_none() {
            return Err(invalid(
                "listen",
                format!("{:?} is not IP:PORT", self.listen),
            ));
        }
        if !self.advertise.is_empty() {
            OriginAddr::parse(&self.advertise)
                .ok()
                .filter(|a| a.app.is_none())
                .ok_or_else(|| {
                    invalid(
                        "advertise",
                        format!("{:?} is not HOST:PORT", self.advertise),
                    )
                })?;
        }
        if !(100..=3_600_000).contains(&self.idle_close_ms) {
            return Err(invalid(
                "idle_close_ms",
                "must be between 100 and 3600000".to_owned(),
            ));
        }
        for origin in &self.origins {
            OriginAddr::parse(origin).map_err(|e| invalid("origins", e))?;
        }
        match self.mode {
            ClusterMode::Standalone => Ok(()),
            ClusterMode::Static if self.origins.is_empty() => Err(invalid(
                "origins",
                "static mode needs at least one origin".to_owned(),
            )),
            ClusterMode::Static => Ok(()),
            ClusterMode::Redis => {
                RedisAddr::parse(&self.redis).map_err(|e| invalid("redis", e))?;
                if self.listen.is_empty() {
                    return Err(invalid(
                        "listen",
                        "redis mode needs the inter-node listener other nodes pull from".to_owned(),
                    ));
                }
                if self.listen_addr().is_some_and(|a| a.ip().is_unspecified())
                    && self.advertise.is_empty()
                {
                    return Err(invalid(
                        "advertise",
                        "listen is a wildcard address: set the address other nodes reach"
                            .to_owned(),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_as_nodes_or_rtmp_urls() {
        let node = OriginAddr::parse("127.0.0.11:1940").unwrap();
        assert_eq!(
            (node.host.as_str(), node.port, node.app),
            ("127.0.0.11", 1940, None)
        );
        let nginx = OriginAddr::parse("rtmp://127.0.0.20/live").unwrap();
        assert_eq!(nginx.port, 1935);
        assert_eq!(nginx.app.as_deref(), Some("live"));
        assert!(OriginAddr::parse("rtmp://host").is_err());
        assert!(OriginAddr::parse("nohostport").is_err());
    }

    #[test]
    fn redis_urls_parse_with_port_and_db() {
        let r = RedisAddr::parse("redis://127.0.0.5:6390/2").unwrap();
        assert_eq!((r.host.as_str(), r.port, r.db), ("127.0.0.5", 6390, 2));
        assert_eq!(RedisAddr::parse("redis://h").unwrap().port, 6379);
        assert!(RedisAddr::parse("http://h").is_err());
        assert!(RedisAddr::parse("redis://user:pw@h").is_err());
    }

    #[test]
    fn redis_mode_requires_a_listener() {
        let c = ClusterConfig {
            mode: ClusterMode::Redis,
            ..ClusterConfig::default()
        };
        assert!(c.validate().is_err());
        let c = ClusterConfig {
            listen: "127.0.0.11:1940".into(),
            ..c
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.advertised(), "127.0.0.11:1940");
    }

    #[test]
    fn the_deploy_example_is_a_valid_config() {
        let text = include_str!("../../deploy/cluster/node1.toml");
        let mut config = crate::config::Config::parse_toml(text, "node1.toml").unwrap();
        config.finish(&|_| None).unwrap();
        assert_eq!(config.cluster.mode, ClusterMode::Redis);
        assert_eq!(config.cluster.advertised(), "10.0.0.11:1940");
        assert!(config.fanout.publisher_grace_ms > 5_000);
    }
}
