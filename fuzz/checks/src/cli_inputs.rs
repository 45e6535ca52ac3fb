//! Arbitrary bytes as what the `foundation` CLI reads besides its arguments: a certificate file
//! (`foundation check` reads when it expires, with its own small DER walker; the bytes are tried
//! as the file's text and as its DER), and a node's HTTP answers as the commands turn them into
//! lines: a refusal's body, a message's payload JSON, and a config value as typed.
//!
//! Properties: nothing panics; a certificate is read or refused with a reason; a refusal's line
//! carries the status and the node's `error` text when the body is JSON holding one, else the
//! body; a payload's text is its `data`, else its `data_hex`; a typed value is the JSON it
//! holds, else the text itself as a string.

use foundation::cli::act::{payload_text, refusal};
use foundation::cli::check::not_after;
use foundation::cli::config::parse_value;
use serde_json::Value;

/// Checks the properties above on one input; panics if one fails.
pub fn check(data: &[u8]) {
    // The bytes as a certificate's DER too: mutations of base64 text seldom reach the walker.
    if let Err(why) = not_after(&pem(data)) {
        assert!(!why.is_empty(), "a certificate refused without a reason");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return; // each reader takes text; a file that is not UTF-8 is refused before them
    };
    if let Err(why) = not_after(text) {
        assert!(!why.is_empty(), "a certificate refused without a reason");
    }
    let json: Option<Value> = serde_json::from_str(text).ok();
    refused(text, json.as_ref());
    if let Some(value) = &json {
        let shown = payload_text(value);
        match (value["data"].as_str(), value["data_hex"].as_str()) {
            (Some(data), _) => assert_eq!(shown, data),
            (None, Some(hex)) => assert!(shown.ends_with(hex)),
            (None, None) => assert!(shown.is_empty()),
        }
    }
    let typed = parse_value(text);
    assert_eq!(
        typed,
        json.unwrap_or_else(|| Value::String(text.to_owned()))
    );
}

/// `der` as a PEM certificate block.
pub fn pem(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            let c = if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
            text.push(char::from(c));
        }
    }
    format!("-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n")
}

fn refused(body: &str, json: Option<&Value>) {
    let line = refusal(503, body);
    assert!(line.starts_with("refused (503): "), "{line}");
    let error = json.and_then(|v| v.get("error")).and_then(Value::as_str);
    assert!(line.ends_with(error.unwrap_or(body)), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed of the bug found here reaches the time's reader, and is refused there.
    #[test]
    fn the_seed_with_a_wide_character_in_its_expiry_is_unreadable() {
        let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../seeds/cli_inputs/cli-01");
        let pem = std::fs::read_to_string(seed).expect("the seed");
        check(pem.as_bytes());
        let why = not_after(&pem).expect_err("refused");
        assert!(why.starts_with("unreadable notAfter"), "{why}");
    }
}
