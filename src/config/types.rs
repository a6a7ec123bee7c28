//! Small value types of the configuration, each with the TOML spelling documented on it:
//! listen address lists, port ranges, the FTL on/off/auto switch and the publish policy.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Listen addresses of one protocol. TOML: a list `["0.0.0.0:1935", "[::]:1935"]` or a single
/// string `"0.0.0.0:1935"`. Port 0 binds an ephemeral port (tests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Listen(pub Vec<SocketAddr>);

impl Listen {
    /// A single address.
    pub fn one(addr: SocketAddr) -> Self {
        Self(vec![addr])
    }

    /// `0.0.0.0:port`, the default for every protocol.
    pub fn any_ipv4(port: u16) -> Self {
        Self::one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
    }
}

impl Deref for Listen {
    type Target = [SocketAddr];
    fn deref(&self) -> &[SocketAddr] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let texts = match OneOrMany::deserialize(deserializer).map_err(|_| {
            de::Error::custom("expected a socket address \"IP:PORT\" or a list of them")
        })? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        texts
            .iter()
            .map(|t| {
                t.parse::<SocketAddr>().map_err(|_| {
                    de::Error::custom(format!(
                        "invalid socket address {t:?} (expected IP:PORT, IPv6 as [::]:PORT)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Listen)
    }
}

/// An inclusive UDP port range. TOML: `"20000-20999"` (a single port `"20000"` is a range of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port, inclusive.
    pub start: u16,
    /// Last port, inclusive.
    pub end: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start)) + usize::from(self.start <= self.end)
    }

    /// True when `end < start`.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    /// True when `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid port range {s:?} (expected \"START-END\", e.g. \"20000-20999\")");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let start = a.trim().parse::<u16>().map_err(|_| bad())?;
        let end = b.trim().parse::<u16>().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(format!(
                "invalid port range {s:?}: ports must be 1..=65535 with START <= END"
            ));
        }
        Ok(Self { start, end })
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// A feature switch with an automatic default. TOML: `true`, `false` or `"auto"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Switch {
    /// On when the feature has something to do (for FTL: at least one channel key).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl Serialize for Switch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::On => serializer.serialize_bool(true),
            Self::Off => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SwitchVisitor;
        impl Visitor<'_> for SwitchVisitor {
            type Value = Switch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(if v { Switch::On } else { Switch::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Switch, E> {
                match v {
                    "auto" => Ok(Switch::Auto),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(SwitchVisitor)
    }
}

/// Who may publish to an RTMP app that has no `[[rtmp.apps]]` entry. TOML: `"open"` or `"deny"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishPolicy {
    /// Any key may publish (the quick-start default; a startup warning says how to restrict it).
    #[default]
    Open,
    /// Publishing is refused.
    Deny,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Probe {
        listen: Listen,
        range: PortRange,
        switch: Switch,
    }

    #[test]
    fn listen_accepts_one_or_many() {
        let p: Probe =
            toml::from_str("listen = \"0.0.0.0:1\"\nrange = \"5\"\nswitch = true").unwrap();
        assert_eq!(p.listen.len(), 1);
        assert_eq!(p.range, PortRange { start: 5, end: 5 });
        assert_eq!(p.switch, Switch::On);
        let p: Probe = toml::from_str(
            "listen = [\"0.0.0.0:1\", \"[::]:2\"]\nrange = \"10-19\"\nswitch = \"auto\"",
        )
        .unwrap();
        assert_eq!(p.listen.len(), 2);
        assert_eq!(p.range.len(), 10);
        assert_eq!(p.switch, Switch::Auto);
    }

    #[test]
    fn bad_values_explain_themselves() {
        let err = toml::from_str::<Probe>("listen = \"nope\"\nrange = \"1-2\"\nswitch = true")
            .unwrap_err();
        assert!(err.to_string().contains("invalid socket address"), "{err}");
        let err =
            toml::from_str::<Probe>("listen = []\nrange = \"9-2\"\nswitch = true").unwrap_err();
        assert!(err.to_string().contains("START <= END"), "{err}");
        let err =
            toml::from_str::<Probe>("listen = []\nrange = \"1-2\"\nswitch = \"yes\"").unwrap_err();
        assert!(err.to_string().contains("auto"), "{err}");
    }
}
