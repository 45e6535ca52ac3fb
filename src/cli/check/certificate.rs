//! When a PEM certificate expires, read from its DER without a certificate library: the path
//! to `tbsCertificate.validity.notAfter` is fixed by X.509, so a small walker over tag-length
//! values finds it. Every length is checked against the bytes there: a file is input, and a
//! malformed one is an error, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first certificate's `notAfter` in `pem`.
pub fn not_after(pem: &str) -> Result<SystemTime, String> {
    let der = first_certificate(pem)?;
    let certificate = enter(&der, 0x30).ok_or("not a DER certificate")?;
    let tbs = enter(certificate, 0x30).ok_or("no tbsCertificate")?;
    let mut rest = tbs;
    // [0] version is optional; then serialNumber, signature, issuer, validity.
    if rest.first() == Some(&0xA0) {
        rest = skip(rest).ok_or("bad version")?;
    }
    for field in ["serial number", "signature algorithm", "issuer"] {
        rest = skip(rest).ok_or(format!("bad {field}"))?;
    }
    let validity = enter(rest, 0x30).ok_or("no validity")?;
    let after_not_before = skip(validity).ok_or("bad notBefore")?;
    let (tag, value) = element(after_not_before).ok_or("no notAfter")?;
    let text = std::str::from_utf8(value).map_err(|_| "notAfter is not text")?;
    parse_time(tag, text).ok_or_else(|| format!("unreadable notAfter {text:?}"))
}

/// The DER of the first `CERTIFICATE` block.
fn first_certificate(pem: &str) -> Result<Vec<u8>, String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).ok_or("no PEM certificate")? + begin.len();
    let end = pem[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or("unterminated PEM certificate")?;
    let base64: String = pem[start..start + end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    decode_base64(&base64).ok_or_else(|| "the PEM block is not base64".to_owned())
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in bytes {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The tag and contents of the element at the start of `der`.
fn element(der: &[u8]) -> Option<(u8, &[u8])> {
    let (len, header) = length(der.get(1..)?)?;
    let start = 1 + header;
    Some((der[0], der.get(start..start.checked_add(len)?)?))
}

/// The contents of the element at the start of `der`, if it has tag `tag`.
fn enter(der: &[u8], tag: u8) -> Option<&[u8]> {
    element(der).and_then(|(found, value)| (found == tag).then_some(value))
}

/// What follows the element at the start of `der`.
fn skip(der: &[u8]) -> Option<&[u8]> {
    let (len, header) = length(der.get(1..)?)?;
    der.get((1 + header).checked_add(len)?..)
}

/// A DER length and how many bytes it took.
fn length(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let len = bytes
        .get(1..=count)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((len, 1 + count))
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &str) -> Option<SystemTime> {
    let digits = text.strip_suffix('Z')?;
    // Fixed-width fields: anything but ASCII digits would be cut mid-character or read as a sign.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let seconds = field(4)? * 3600 + field(6)? * 60 + field(8)?;
    let days = days_from_civil(year, month, day)?;
    let total = u64::try_from(days.checked_mul(86_400)?.checked_add(seconds)?).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(total))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 12, 3), Some(20_790));
        let y2k = parse_time(0x17, "000301000000Z").unwrap();
        assert_eq!(y2k, UNIX_EPOCH + Duration::from_secs(11_017 * 86_400));
        let general = parse_time(0x18, "20000301000001Z").unwrap();
        assert_eq!(general, y2k + Duration::from_secs(1));
    }

    #[test]
    fn a_generated_certificate_expires_when_it_says() {
        let mut params = rcgen::CertificateParams::new(vec!["x.foundation".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 6, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        let expected =
            UNIX_EPOCH + Duration::from_secs(days_from_civil(2031, 6, 15).unwrap() as u64 * 86_400);
        assert_eq!(not_after(&pem), Ok(expected));
    }

    /// A time is ASCII digits: a character of several bytes where a digit belongs made the
    /// fixed-width slicing cut inside it (a panic), and a sign is no digit either.
    #[test]
    fn a_time_that_is_not_all_digits_is_unreadable() {
        assert_eq!(parse_time(0x17, "0\u{20ac}00000000Z"), None);
        assert_eq!(parse_time(0x18, "000\u{20ac}00000000Z"), None);
        assert_eq!(parse_time(0x17, "31+615000000Z"), None);
        assert!(parse_time(0x17, "310615000000Z").is_some());
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut params = rcgen::CertificateParams::new(vec!["x.foundation".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 6, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        assert!(not_after("").is_err());
        assert!(not_after("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_err());
        // Every truncation of the real certificate's body is refused or read, never a panic.
        let body: Vec<&str> = pem.lines().collect();
        for cut in 1..body.len() - 1 {
            let mut short = body[..cut].join("\n");
            short.push_str("\n-----END CERTIFICATE-----\n");
            let _ = not_after(&short);
        }
    }
}
