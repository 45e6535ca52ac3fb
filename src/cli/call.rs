//! `foundation call SERVICE BODY`: one RPC through a running node (`POST /call/{service}`),
//! routed, retried and load-balanced as the node's own calls are.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use bytes::Bytes;
use foundation_engine::config::parse_duration;
use foundation_engine::http::{percent_encode, Method};

use super::act::{ask, payload_text};
use super::target::NodeTarget;
use super::{out, printable};

/// Time the HTTP exchange may take beyond the call's own deadline.
const SLACK: Duration = Duration::from_secs(2);

/// Options of `foundation call`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation call greeter 'world'
  foundation call billing '{\"cents\": 250}' --timeout 500ms

BODY is sent to the service as it is (text); the service's answer is printed as text, or as
hex when it is not; on a terminal its control characters are shown escaped (\\u{1b}), into a
pipe or a file it is written as it is. Only services served by a handler in a node can be
called; an outside endpoint (`foundation register`) is listed but not called. A failed call
prints why (no instance, deadline, circuit open, the handler's error) and exits non-zero.")]
pub struct CallArgs {
    /// The service.
    pub service: String,
    /// The request body, sent as it is.
    pub body: String,
    /// The call's deadline, retries included (e.g. 500ms, 2s; at most 300s).
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Which node calls.
    #[command(flatten)]
    pub target: NodeTarget,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err("must be more than 0 and at most 300s".into());
    }
    Ok(timeout)
}

/// Calls the service and prints its answer.
pub async fn run(args: CallArgs) -> Result<(), Box<dyn std::error::Error>> {
    let node = args.target.resolve().await?;
    let path = format!(
        "/call/{}?timeout_ms={}",
        percent_encode(&args.service),
        args.timeout.as_millis().max(1)
    );
    let body = Bytes::from(args.body.into_bytes());
    let answer = ask(node, Method::POST, &path, body, args.timeout + SLACK).await?;
    out!(
        "{}",
        shown(&payload_text(&answer), std::io::stdout().is_terminal())
    );
    Ok(())
}

/// The answer is the service's payload: into a pipe or a file it goes as it is, for the
/// program that reads it; on a terminal its control characters are escaped, since any service
/// instance (on any member) wrote it and an escape sequence would rewrite the screen.
fn shown(answer: &str, terminal: bool) -> Cow<'_, str> {
    if terminal {
        printable(answer)
    } else {
        Cow::Borrowed(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn an_answer_is_escaped_on_a_terminal_and_kept_for_a_program() {
        let answer = "two\nlines \u{1b}[2J";
        assert_eq!(shown(answer, true), r"two\nlines \u{1b}[2J");
        assert_eq!(shown(answer, false), answer);
    }
}
