//! `transport.bulk_port` and `transport.sealed_port`: the node's extra UDP sockets, each `auto`,
//! `off` or a fixed port.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The bulk port production uses unless told otherwise: next to QUIC's 7400/udp and HTTP's
/// 7401/tcp, so a firewall rule can name them all.
pub const DEFAULT_BULK_PORT: u16 = 7402;

/// The sealed membership port production uses unless told otherwise: after the bulk port's.
pub const DEFAULT_SEALED_PORT: u16 = 7403;

/// The UDP port of one of the node's extra sockets: the bulk endpoint, a second QUIC socket that
/// keeps large transfers from queueing ahead of urgent messages (see
/// [`TransportConfig::bulk_endpoint`](foundation_transport::TransportConfig::bulk_endpoint)), or
/// the sealed membership socket (see
/// [`TransportConfig::sealed_membership`](foundation_transport::TransportConfig::sealed_membership)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortSetting {
    /// Any free port, picked at start and announced to peers. The development default: many
    /// nodes share one machine.
    Auto,
    /// This port. Production's defaults are [`DEFAULT_BULK_PORT`] and [`DEFAULT_SEALED_PORT`],
    /// so a firewall can be told which ports to open.
    Fixed(u16),
    /// No socket: bulk transfers share the regular port (urgent messages wait longer under a
    /// large one), membership rides QUIC datagrams. For hosts where fewer UDP ports may be
    /// opened.
    Off,
}

impl PortSetting {
    /// Whether the node gets the socket at all.
    pub fn enabled(self) -> bool {
        self != PortSetting::Off
    }

    /// The port to bind, 0 letting the kernel pick; `None` when off.
    pub fn port(self) -> Option<u16> {
        match self {
            PortSetting::Auto => Some(0),
            PortSetting::Fixed(port) => Some(port),
            PortSetting::Off => None,
        }
    }
}

impl fmt::Display for PortSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSetting::Auto => f.write_str("auto"),
            PortSetting::Fixed(port) => write!(f, "{port}"),
            PortSetting::Off => f.write_str("off"),
        }
    }
}

impl FromStr for PortSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PortSetting::Auto),
            "off" => Ok(PortSetting::Off),
            text => match text.parse::<u16>() {
                Ok(port) => fixed(u64::from(port)),
                Err(_) => Err(refusal(&format!("{s:?}"))),
            },
        }
    }
}

fn fixed(port: u64) -> Result<PortSetting, String> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Ok(PortSetting::Fixed(port)),
        _ => Err(refusal(&port.to_string())),
    }
}

fn refusal(shown: &str) -> String {
    format!("{shown} is not a port setting: expected \"auto\", \"off\" or a port from 1 to 65535")
}

impl<'de> Deserialize<'de> for PortSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortSettingVisitor)
    }
}

struct PortSettingVisitor;

impl Visitor<'_> for PortSettingVisitor {
    type Value = PortSetting;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\", \"off\" or a port number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PortSetting, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, port: i64) -> Result<PortSetting, E> {
        fixed(u64::try_from(port).unwrap_or(u64::MAX)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<PortSetting, E> {
        fixed(port).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_parse_and_print_back() {
        for text in ["auto", "off", "7402", "1", "65535"] {
            let port: PortSetting = text.parse().unwrap();
            assert_eq!(port.to_string(), text);
        }
        assert_eq!(" AUTO ".parse::<PortSetting>(), Ok(PortSetting::Auto));
    }

    #[test]
    fn zero_out_of_range_and_words_are_refused_with_the_choices() {
        for text in ["0", "65536", "-1", "on", ""] {
            let error = text.parse::<PortSetting>().unwrap_err();
            assert!(error.contains("\"auto\", \"off\""), "{text}: {error}");
        }
    }

    #[test]
    fn only_off_has_no_socket() {
        assert_eq!(PortSetting::Auto.port(), Some(0));
        assert_eq!(PortSetting::Fixed(9000).port(), Some(9000));
        assert_eq!(PortSetting::Off.port(), None);
        assert!(!PortSetting::Off.enabled());
    }

    #[test]
    fn production_defaults_are_distinct() {
        assert_ne!(DEFAULT_BULK_PORT, DEFAULT_SEALED_PORT);
    }
}
