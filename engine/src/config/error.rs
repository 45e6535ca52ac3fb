//! What can be wrong with a configuration, and where the offending value came from.

use std::fmt;

/// Where a setting's value came from, so an error can point at it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// The profile's default.
    #[default]
    Default,
    /// A key in a TOML file, at this line (1-based).
    File {
        /// The file as it was named.
        path: String,
        /// The line of the key.
        line: usize,
    },
    /// An environment variable.
    Env(&'static str),
    /// The builder (or the CLI, which uses it).
    Builder,
}

impl fmt::Display for Origin {
    /// A prefix for messages: `"config.toml line 7: "`, `"FOUNDATION_BIND: "`, or nothing for a
    /// default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => Ok(()),
            Origin::File { path, line } => write!(f, "{path} line {line}: "),
            Origin::Env(var) => write!(f, "{var}: "),
            Origin::Builder => f.write_str("builder: "),
        }
    }
}

/// A configuration that cannot be used. Every message names the file and line, the
/// environment variable or the field, and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file as it was named.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}{}: {message}", line_suffix(*line))]
    File {
        /// The file as it was named.
        path: String,
        /// The line of the problem, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value that cannot be used.
    #[error("{var}: {problem}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong (the value is quoted unless it is a secret).
        problem: String,
    },
    /// A setting has a value that cannot be used, or settings contradict each other.
    #[error("{origin}{field}: {problem}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The field, as a dotted TOML key (`membership.probe_rtt`).
        field: String,
        /// What is wrong and, where useful, what to set instead.
        problem: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|line| format!(" line {line}")).unwrap_or_default()
}

impl ConfigError {
    /// An invalid value of `field` that came from `origin`.
    pub(crate) fn invalid(
        origin: Origin,
        field: impl Into<String>,
        problem: impl ToString,
    ) -> Self {
        ConfigError::Invalid {
            origin,
            field: field.into(),
            problem: problem.to_string(),
        }
    }

    /// A bad value in environment variable `var`.
    pub(crate) fn env(var: &'static str, problem: impl ToString) -> Self {
        ConfigError::Env {
            var,
            problem: problem.to_string(),
        }
    }
}
