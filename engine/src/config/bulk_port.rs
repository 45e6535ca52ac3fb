//! `transport.bulk_port`: where bulk transfers (full states, snapshots) arrive.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The bulk port production uses unless told otherwise: next to QUIC's 7400/udp and HTTP's
/// 7401/tcp, so a firewall rule can name all three.
pub const DEFAULT_BULK_PORT: u16 = 7402;

/// The UDP port of the node's bulk endpoint, a second QUIC socket that keeps large transfers
/// from queueing ahead of urgent messages (see
/// [`TransportConfig::bulk_endpoint`](foundation_transport::TransportConfig::bulk_endpoint)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkPort {
    /// Any free port, picked at start and announced to peers. The development default: many
    /// nodes share one machine.
    Auto,
    /// This port. The production default is [`DEFAULT_BULK_PORT`], so a firewall can be told
    /// which port to open.
    Fixed(u16),
    /// No bulk endpoint: transfers share the regular port, and under a large transfer urgent
    /// messages wait longer. For hosts where only one UDP port may be opened.
    Off,
}

impl BulkPort {
    /// Whether the node gets a bulk endpoint at all.
    pub fn enabled(self) -> bool {
        self != BulkPort::Off
    }

    /// The port to bind, 0 letting the kernel pick; `None` when off.
    pub fn port(self) -> Option<u16> {
        match self {
            BulkPort::Auto => Some(0),
            BulkPort::Fixed(port) => Some(port),
            BulkPort::Off => None,
        }
    }
}

impl fmt::Display for BulkPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkPort::Auto => f.write_str("auto"),
            BulkPort::Fixed(port) => write!(f, "{port}"),
            BulkPort::Off => f.write_str("off"),
        }
    }
}

impl FromStr for BulkPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BulkPort::Auto),
            "off" => Ok(BulkPort::Off),
            text => match text.parse::<u16>() {
                Ok(port) => fixed(u64::from(port)),
                Err(_) => Err(format!(
                    "{s:?} is not a bulk port: expected \"auto\", \"off\" or a port from 1 to 65535"
                )),
            },
        }
    }
}

fn fixed(port: u64) -> Result<BulkPort, String> {
    match u16::try_from(port) {
        Ok(port) if port != 0 => Ok(BulkPort::Fixed(port)),
        _ => Err(format!(
            "{port} is not a bulk port: expected \"auto\", \"off\" or a port from 1 to 65535"
        )),
    }
}

impl<'de> Deserialize<'de> for BulkPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BulkPortVisitor)
    }
}

struct BulkPortVisitor;

impl Visitor<'_> for BulkPortVisitor {
    type Value = BulkPort;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\", \"off\" or a port number")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<BulkPort, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, port: i64) -> Result<BulkPort, E> {
        fixed(u64::try_from(port).unwrap_or(u64::MAX)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<BulkPort, E> {
        fixed(port).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_parse_and_print_back() {
        for text in ["auto", "off", "7402", "1", "65535"] {
            let port: BulkPort = text.parse().unwrap();
            assert_eq!(port.to_string(), text);
        }
        assert_eq!(" AUTO ".parse::<BulkPort>(), Ok(BulkPort::Auto));
    }

    #[test]
    fn zero_out_of_range_and_words_are_refused_with_the_choices() {
        for text in ["0", "65536", "-1", "on", ""] {
            let error = text.parse::<BulkPort>().unwrap_err();
            assert!(error.contains("\"auto\", \"off\""), "{text}: {error}");
        }
    }

    #[test]
    fn only_off_has_no_endpoint() {
        assert_eq!(BulkPort::Auto.port(), Some(0));
        assert_eq!(BulkPort::Fixed(9000).port(), Some(9000));
        assert_eq!(BulkPort::Off.port(), None);
        assert!(!BulkPort::Off.enabled());
    }
}
