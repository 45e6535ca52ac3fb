//! The `foundation` command's subcommands.

pub mod act;
pub mod agents;
pub mod call;
pub mod check;
pub mod config;
pub mod federation;
pub mod force_leave;
pub mod leave;
pub mod members;
pub mod monitor;
pub mod node;
mod open_secret;
pub mod placement;
pub mod pubsub;
pub mod register;
pub mod services;
mod signals;
pub mod sim;
pub mod snapshot;
pub mod suggest;
pub mod target;
pub mod vars;

use std::borrow::Cow;

/// `text` with its control characters escaped (`\u{1b}`, `\n`), the rest as it is. Names, keys,
/// ids, topics and reasons in a node's answers come from any member of the cluster; written raw,
/// an escape sequence among them would rewrite the operator's terminal and a newline would
/// split one line of a table or a stream into two.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// Writes `line` and a newline to stdout, never panicking as `println!` does when stdout is
/// closed. A reader that went away (`foundation members | head -1`) got what it wanted: the
/// command ends quietly with success, as it would have had the output been shorter (a
/// conventional 141 would fail such a pipeline under `set -o pipefail` for no fault of
/// anyone's). Any other failure (a full disk) ends it with the reason and status 1.
pub fn write_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(error) if stdout_closed(&error) => std::process::exit(0),
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "foundation: cannot write to stdout: {error}"
            );
            std::process::exit(1)
        }
    }
}

/// Whether writing failed because nobody reads stdout any more.
pub fn stdout_closed(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}

/// `println!` through [`write_line`], for what this program says itself.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(&format!($($arg)*))
    };
}
pub(crate) use out;

/// `println!` for a line built from what a node reports: shown through [`printable`], written
/// by [`write_line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(&$crate::cli::printable(&format!($($arg)*)))
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("api-1 ünïcode"), "api-1 ünïcode");
        assert_eq!(printable("a\u{1b}[2Jb"), r"a\u{1b}[2Jb");
        assert_eq!(printable("two\nlines\t"), r"two\nlines\t");
        // C1 controls too: U+009B starts a sequence on terminals that take 8-bit controls.
        assert_eq!(printable("\u{9b}31m"), r"\u{9b}31m");
    }
}
