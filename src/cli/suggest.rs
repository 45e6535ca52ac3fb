//! "Did you mean …?" for a mistyped command or option: the closest name the command line
//! could have meant, added to clap's error (its own suggestions need a dependency we do not
//! carry).

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Adds a suggestion to `error` when it is about an unknown subcommand or option and a known
/// one is close enough. `argv` is the command line (program name first) and `command` the
/// top-level command it was parsed against.
pub fn with_suggestion(
    mut error: clap::Error,
    command: &clap::Command,
    argv: &[String],
) -> clap::Error {
    let (invalid_kind, suggested_kind) = match error.kind() {
        ErrorKind::InvalidSubcommand => (
            ContextKind::InvalidSubcommand,
            ContextKind::SuggestedSubcommand,
        ),
        ErrorKind::UnknownArgument => (ContextKind::InvalidArg, ContextKind::SuggestedArg),
        _ => return error,
    };
    let Some(ContextValue::String(typed)) = error.get(invalid_kind).cloned() else {
        return error;
    };
    let scope = innermost(command, argv, &typed);
    let candidates: Vec<String> = if suggested_kind == ContextKind::SuggestedSubcommand {
        scope
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .flat_map(|c| {
                std::iter::once(c.get_name().to_owned())
                    .chain(c.get_all_aliases().map(str::to_owned))
            })
            .collect()
    } else {
        let name = typed.split('=').next().unwrap_or(&typed).to_owned();
        let found: Vec<String> = scope
            .get_arguments()
            .chain(command.get_arguments().filter(|a| a.is_global_set()))
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        return match closest(&name, found) {
            Some(best) => {
                error.insert(suggested_kind, ContextValue::String(best));
                error
            }
            None => error,
        };
    };
    if let Some(best) = closest(&typed, candidates) {
        error.insert(suggested_kind, ContextValue::String(best));
    }
    error
}

/// The deepest subcommand `argv` names before the word `typed`.
fn innermost<'a>(command: &'a clap::Command, argv: &[String], typed: &str) -> &'a clap::Command {
    let mut scope = command;
    for word in argv.iter().skip(1) {
        if word == typed {
            break;
        }
        if let Some(sub) = scope.find_subcommand(word) {
            scope = sub;
        }
    }
    scope
}

/// The candidate closest to `typed`, if it is close: at most a third of its length in edits
/// (at least one), or `typed` is the start of exactly one candidate.
pub fn closest(typed: &str, candidates: impl IntoIterator<Item = String>) -> Option<String> {
    let candidates: Vec<String> = candidates.into_iter().collect();
    let limit = (typed.chars().count() / 3).max(1);
    let best = candidates
        .iter()
        .map(|c| (distance(typed, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, (*c).clone()))
        .map(|(_, c)| c.clone());
    best.or_else(|| {
        let mut starting = candidates
            .iter()
            .filter(|c| typed.len() >= 2 && c.starts_with(typed));
        match (starting.next(), starting.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    })
}

/// Levenshtein distance counting an adjacent transposition as one edit (`memebrs` → `members`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let commands = names(&["node", "members", "services", "config", "leave", "sim"]);
        assert_eq!(
            closest("memebrs", commands.clone()).as_deref(),
            Some("members")
        );
        assert_eq!(
            closest("membres", commands.clone()).as_deref(),
            Some("members")
        );
        assert_eq!(
            closest("servics", commands.clone()).as_deref(),
            Some("services")
        );
        assert_eq!(closest("nod", commands.clone()).as_deref(), Some("node"));
        assert_eq!(closest("conf", commands.clone()).as_deref(), Some("config"));
        assert_eq!(closest("leav", commands.clone()).as_deref(), Some("leave"));
        assert_eq!(closest("status", commands.clone()), None);
        assert_eq!(closest("xyzzy", commands), None);
    }

    #[test]
    fn transpositions_are_one_edit() {
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("members", "memebrs"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
