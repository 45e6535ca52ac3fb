//! Pub/sub topics, subscription patterns, and an index from patterns to subscribers.
//!
//! Topics are dot-separated segments (`orders.eu.created`). Patterns follow NATS subject rules:
//! `*` matches exactly one segment, `>` as the last segment matches one or more remaining
//! segments, anything else matches itself. [`Subscriptions`] answers "who wants this topic?" with
//! a segment trie, so the cost of a lookup depends on the topic's length and the patterns that
//! actually match, not on how many patterns exist.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Longest topic or pattern accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a string is not a valid topic or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The string was empty.
    #[error("topic is empty; use dot-separated segments such as `orders.created`")]
    Empty,
    /// The string was longer than [`MAX_TOPIC_LEN`].
    #[error("topic is {len} bytes, longer than the {max}-byte limit; use shorter segments")]
    TooLong {
        /// Length of the rejected string in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Two dots in a row, or a leading or trailing dot.
    #[error("segment {index} of the topic is empty; remove the extra `.`")]
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// A character that may not appear in a topic (whitespace or a control character).
    #[error(
        "topic contains {ch:?}, which is not allowed; use no whitespace or control characters"
    )]
    InvalidCharacter {
        /// The offending character.
        ch: char,
    },
    /// A concrete topic contained `*` or `>`.
    #[error("topic segment {index} contains a wildcard; publish to a concrete topic, wildcards are for subscriptions")]
    WildcardInTopic {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// A wildcard shared its segment with other characters (`ord*`).
    #[error("pattern segment {index} mixes a wildcard with other characters; `*` and `>` must be whole segments")]
    PartialWildcard {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// `>` appeared before the last segment.
    #[error("`>` is segment {index} but may only be the last segment of a pattern; use `*` for a single segment")]
    TailNotLast {
        /// Zero-based index of the segment.
        index: usize,
    },
}

/// What a single segment of a checked string is.
enum SegmentKind {
    Literal,
    One,
    Tail,
}

/// Checks the rules shared by topics and patterns, and classifies each segment.
fn check(s: &str) -> Result<Vec<SegmentKind>, TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: s.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    if let Some(ch) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(TopicError::InvalidCharacter { ch });
    }
    s.split('.')
        .enumerate()
        .map(|(index, segment)| classify(index, segment))
        .collect()
}

fn classify(index: usize, segment: &str) -> Result<SegmentKind, TopicError> {
    match segment {
        "" => Err(TopicError::EmptySegment { index }),
        "*" => Ok(SegmentKind::One),
        ">" => Ok(SegmentKind::Tail),
        s if s.contains(['*', '>']) => Err(TopicError::PartialWildcard { index }),
        _ => Ok(SegmentKind::Literal),
    }
}

/// A concrete topic a message is published to, such as `orders.eu.created`.
///
/// Valid by construction: non-empty segments, at most [`MAX_TOPIC_LEN`] bytes, no wildcards, no
/// whitespace or control characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

impl Topic {
    /// Parses and validates a topic.
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        let kinds = check(s)?;
        match kinds
            .iter()
            .position(|k| !matches!(k, SegmentKind::Literal))
        {
            Some(index) => Err(TopicError::WildcardInTopic { index }),
            None => Ok(Topic(s.to_owned())),
        }
    }

    /// The topic as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

/// A subscription pattern such as `orders.*.created` or `orders.>`.
///
/// `*` matches exactly one segment; `>` (only as the last segment) matches one or more remaining
/// segments; any other segment matches only itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(s: &str) -> Result<Pattern, TopicError> {
        let kinds = check(s)?;
        let last = kinds.len() - 1;
        match kinds
            .iter()
            .position(|k| matches!(k, SegmentKind::Tail))
            .filter(|&i| i != last)
        {
            Some(index) => Err(TopicError::TailNotLast { index }),
            None => Ok(Pattern(s.to_owned())),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments, in order (wildcards included as `*` and `>`).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// True if the pattern has no wildcards, so it matches exactly one topic.
    pub fn is_literal(&self) -> bool {
        self.segments().all(|s| s != "*" && s != ">")
    }

    /// True if `topic` is one of the topics this pattern selects.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut topic_segments = topic.segments();
        for segment in self.segments() {
            match (segment, topic_segments.next()) {
                // Parsing guarantees `>` is last; it needs at least this one segment.
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (literal, Some(t)) if literal == t => {}
                _ => return false,
            }
        }
        topic_segments.next().is_none()
    }
}

impl From<Topic> for Pattern {
    /// The literal pattern that matches exactly this topic.
    fn from(topic: Topic) -> Pattern {
        Pattern(topic.0)
    }
}

macro_rules! string_like {
    ($ty:ident) => {
        impl FromStr for $ty {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<$ty, TopicError> {
                $ty::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = TopicError;
            fn try_from(s: String) -> Result<$ty, TopicError> {
                $ty::parse(&s)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }
    };
}
string_like!(Topic);
string_like!(Pattern);

/// One trie node: the subscribers of patterns that end here, and the children by next segment.
#[derive(Debug, Clone)]
struct Node<T> {
    /// Values whose pattern ends exactly at this node.
    exact: BTreeSet<T>,
    /// Values whose pattern has `>` after this node's path.
    tail: BTreeSet<T>,
    /// Children for `*`.
    one: Option<Box<Node<T>>>,
    /// Children for literal segments.
    literal: BTreeMap<String, Node<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            exact: BTreeSet::new(),
            tail: BTreeSet::new(),
            one: None,
            literal: BTreeMap::new(),
        }
    }
}

impl<T: Ord> Node<T> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.tail.is_empty()
            && self.one.is_none()
            && self.literal.is_empty()
    }

    /// The set at the end of `segments`, creating nodes on the way.
    fn set_mut_or_create(&mut self, segments: &[&str]) -> &mut BTreeSet<T> {
        match segments {
            [] => &mut self.exact,
            [">"] => &mut self.tail,
            ["*", rest @ ..] => self.one.get_or_insert_default().set_mut_or_create(rest),
            [literal, rest @ ..] => self
                .literal
                .entry((*literal).to_owned())
                .or_default()
                .set_mut_or_create(rest),
        }
    }

    /// Removes `value` under `segments`, pruning nodes left empty. True if it was present.
    fn remove(&mut self, segments: &[&str], value: &T) -> bool {
        match segments {
            [] => self.exact.remove(value),
            [">"] => self.tail.remove(value),
            ["*", rest @ ..] => {
                let Some(child) = self.one.as_mut() else {
                    return false;
                };
                let removed = child.remove(rest, value);
                if child.is_empty() {
                    self.one = None;
                }
                removed
            }
            [literal, rest @ ..] => {
                let Some(child) = self.literal.get_mut(*literal) else {
                    return false;
                };
                let removed = child.remove(rest, value);
                if child.is_empty() {
                    self.literal.remove(*literal);
                }
                removed
            }
        }
    }

    /// Removes `value` from every pattern, pruning empty nodes. Returns how many were removed.
    fn remove_everywhere(&mut self, value: &T) -> usize {
        let mut removed =
            usize::from(self.exact.remove(value)) + usize::from(self.tail.remove(value));
        if let Some(child) = self.one.as_mut() {
            removed += child.remove_everywhere(value);
            if child.is_empty() {
                self.one = None;
            }
        }
        for child in self.literal.values_mut() {
            removed += child.remove_everywhere(value);
        }
        self.literal.retain(|_, child| !child.is_empty());
        removed
    }

    /// Adds to `out` every value whose pattern matches `segments`.
    fn collect<'s>(&'s self, segments: &[&str], out: &mut BTreeSet<&'s T>) {
        let Some((first, rest)) = segments.split_first() else {
            out.extend(&self.exact);
            return;
        };
        // At least one segment remains, which is what `>` needs.
        out.extend(&self.tail);
        if let Some(child) = self.literal.get(*first) {
            child.collect(rest, out);
        }
        if let Some(child) = &self.one {
            child.collect(rest, out);
        }
    }

    fn contains(&self, segments: &[&str], value: &T) -> bool {
        match segments {
            [] => self.exact.contains(value),
            [">"] => self.tail.contains(value),
            ["*", rest @ ..] => self.one.as_ref().is_some_and(|c| c.contains(rest, value)),
            [literal, rest @ ..] => self
                .literal
                .get(*literal)
                .is_some_and(|c| c.contains(rest, value)),
        }
    }
}

/// An index from subscription patterns to values (typically subscriber ids).
///
/// Each (pattern, value) pair is stored once. [`Subscriptions::matching`] yields every value with
/// at least one pattern matching the topic — once, even if several of its patterns match, in
/// ascending order of `T`. A subscriber that must see a message once per subscription should use
/// a value that includes the subscription (e.g. `(subscriber, subscription_id)`).
#[derive(Debug, Clone)]
pub struct Subscriptions<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for Subscriptions<T> {
    fn default() -> Self {
        Subscriptions {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: Ord> Subscriptions<T> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` under `pattern`. Returns false if that pair was already present.
    pub fn insert(&mut self, pattern: &Pattern, value: T) -> bool {
        let segments: Vec<&str> = pattern.segments().collect();
        let inserted = self.root.set_mut_or_create(&segments).insert(value);
        self.len += usize::from(inserted);
        inserted
    }

    /// Removes `value` from `pattern`. Returns false if that pair was not present.
    pub fn remove(&mut self, pattern: &Pattern, value: &T) -> bool {
        let segments: Vec<&str> = pattern.segments().collect();
        let removed = self.root.remove(&segments, value);
        self.len -= usize::from(removed);
        removed
    }

    /// Removes `value` from every pattern it is subscribed under (a subscriber went away).
    /// Returns how many subscriptions were removed.
    pub fn remove_value(&mut self, value: &T) -> usize {
        let removed = self.root.remove_everywhere(value);
        self.len -= removed;
        removed
    }

    /// True if `value` is subscribed under exactly `pattern`.
    pub fn contains(&self, pattern: &Pattern, value: &T) -> bool {
        let segments: Vec<&str> = pattern.segments().collect();
        self.root.contains(&segments, value)
    }

    /// Every value with a pattern matching `topic`, each once, in ascending order.
    pub fn matching(&self, topic: &Topic) -> impl Iterator<Item = &T> {
        let segments: Vec<&str> = topic.segments().collect();
        let mut out = BTreeSet::new();
        self.root.collect(&segments, &mut out);
        out.into_iter()
    }

    /// Number of (pattern, value) pairs stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn topic_validation() {
        assert!(Topic::parse("orders.eu.created").is_ok());
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert_eq!(
            Topic::parse("orders..created"),
            Err(TopicError::EmptySegment { index: 1 })
        );
        assert_eq!(
            Topic::parse(".orders"),
            Err(TopicError::EmptySegment { index: 0 })
        );
        assert_eq!(
            Topic::parse("orders."),
            Err(TopicError::EmptySegment { index: 1 })
        );
        assert_eq!(
            Topic::parse("orders.*"),
            Err(TopicError::WildcardInTopic { index: 1 })
        );
        assert_eq!(
            Topic::parse("orders.>"),
            Err(TopicError::WildcardInTopic { index: 1 })
        );
        assert_eq!(
            Topic::parse("ord ers"),
            Err(TopicError::InvalidCharacter { ch: ' ' })
        );
        assert!(Topic::parse(&"a".repeat(MAX_TOPIC_LEN)).is_ok());
        assert_eq!(
            Topic::parse(&"a".repeat(MAX_TOPIC_LEN + 1)),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN
            })
        );
    }

    #[test]
    fn pattern_validation() {
        assert!(Pattern::parse("orders.*.created").is_ok());
        assert!(Pattern::parse(">").is_ok());
        assert!(Pattern::parse("*.*").is_ok());
        assert_eq!(
            Pattern::parse("orders.>.created"),
            Err(TopicError::TailNotLast { index: 1 })
        );
        assert_eq!(
            Pattern::parse("ord*.created"),
            Err(TopicError::PartialWildcard { index: 0 })
        );
        assert_eq!(
            Pattern::parse("orders.a>"),
            Err(TopicError::PartialWildcard { index: 1 })
        );
        assert_eq!(
            Pattern::parse("orders..*"),
            Err(TopicError::EmptySegment { index: 1 })
        );
    }

    #[test]
    fn wildcard_semantics() {
        let star = p("orders.*.created");
        assert!(star.matches(&t("orders.eu.created")));
        assert!(!star.matches(&t("orders.created")));
        assert!(!star.matches(&t("orders.eu.west.created")));

        let tail = p("orders.>");
        assert!(tail.matches(&t("orders.eu")));
        assert!(tail.matches(&t("orders.eu.created")));
        assert!(
            !tail.matches(&t("orders")),
            "`>` needs at least one segment"
        );
        assert!(!tail.matches(&t("billing.eu")));

        assert!(p(">").matches(&t("anything.at.all")));
        assert!(!p("orders").matches(&t("orders.eu")));
        assert!(!p("orders.eu").matches(&t("orders")));
    }

    #[test]
    fn index_insert_remove_and_order() {
        let mut subs = Subscriptions::new();
        assert!(subs.insert(&p("orders.>"), 3));
        assert!(subs.insert(&p("orders.*.created"), 1));
        assert!(subs.insert(&p("orders.eu.created"), 2));
        assert!(subs.insert(&p("orders.eu.created"), 1));
        assert!(!subs.insert(&p("orders.eu.created"), 1), "duplicate pair");
        assert!(subs.insert(&p("billing.>"), 4));
        assert_eq!(subs.len(), 5);

        let got: Vec<_> = subs.matching(&t("orders.eu.created")).copied().collect();
        assert_eq!(got, vec![1, 2, 3], "each value once, ascending");

        assert!(subs.remove(&p("orders.>"), &3));
        assert!(!subs.remove(&p("orders.>"), &3));
        assert!(!subs.remove(&p("nothing.here"), &3));
        let got: Vec<_> = subs.matching(&t("orders.eu.created")).copied().collect();
        assert_eq!(got, vec![1, 2]);

        assert_eq!(subs.remove_value(&1), 2);
        assert_eq!(subs.len(), 2);
        assert!(!subs.contains(&p("orders.*.created"), &1));
        assert!(subs.contains(&p("billing.>"), &4));
    }

    #[test]
    fn removing_everything_prunes_the_trie() {
        let mut subs = Subscriptions::new();
        for (i, pat) in ["a.b.c", "a.*.c", "a.>", ">", "*"].iter().enumerate() {
            subs.insert(&p(pat), i);
        }
        for (i, pat) in ["a.b.c", "a.*.c", "a.>", ">", "*"].iter().enumerate() {
            assert!(subs.remove(&p(pat), &i));
        }
        assert!(subs.is_empty());
        assert!(subs.root.is_empty(), "no empty nodes left behind");
    }

    #[test]
    fn serde_validates() {
        let topic = t("orders.created");
        let json = serde_json::to_string(&topic).unwrap();
        assert_eq!(json, "\"orders.created\"");
        assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), topic);
        assert!(serde_json::from_str::<Topic>("\"orders.*\"").is_err());
        assert!(serde_json::from_str::<Pattern>("\"orders.>.x\"").is_err());
    }

    /// Short topics over a small alphabet, so that random patterns often match them.
    pub(crate) fn topic_strategy() -> impl Strategy<Value = Topic> {
        prop::collection::vec("[abc]", 1..6).prop_map(|segs| t(&segs.join(".")))
    }

    /// Patterns over the topics of [`topic_strategy`], with `*` and a trailing `>`.
    pub(crate) fn pattern_strategy() -> impl Strategy<Value = Pattern> {
        (
            prop::collection::vec(prop_oneof!["[abc]", Just("*".to_owned())], 0..6),
            any::<bool>(),
        )
            .prop_filter_map("pattern needs a segment", |(mut segs, tail)| {
                if tail {
                    segs.push(">".to_owned());
                }
                (!segs.is_empty()).then(|| p(&segs.join(".")))
            })
    }

    proptest! {
        #[test]
        fn star_substitution_matches(topic in topic_strategy(), mask in any::<u8>()) {
            let segs: Vec<&str> = topic
                .segments()
                .enumerate()
                .map(|(i, s)| if mask & (1 << i) != 0 { "*" } else { s })
                .collect();
            prop_assert!(p(&segs.join(".")).matches(&topic));
        }

        #[test]
        fn tail_substitution_matches(topic in topic_strategy(), keep in 0usize..6) {
            let segs: Vec<&str> = topic.segments().collect();
            let keep = keep.min(segs.len() - 1);
            let mut pattern: Vec<&str> = segs[..keep].to_vec();
            pattern.push(">");
            prop_assert!(p(&pattern.join(".")).matches(&topic));
        }

        #[test]
        fn literal_pattern_matches_only_its_topic(a in topic_strategy(), b in topic_strategy()) {
            let pattern = Pattern::from(a.clone());
            prop_assert!(pattern.is_literal());
            prop_assert_eq!(pattern.matches(&b), a == b);
        }

        #[test]
        fn index_agrees_with_brute_force(
            entries in prop::collection::vec((pattern_strategy(), 0u8..8), 0..40),
            removals in prop::collection::vec(0usize..40, 0..10),
            topics in prop::collection::vec(topic_strategy(), 1..10),
        ) {
            let mut subs = Subscriptions::new();
            let mut model: BTreeSet<(Pattern, u8)> = BTreeSet::new();
            for (pattern, value) in &entries {
                prop_assert_eq!(subs.insert(pattern, *value), model.insert((pattern.clone(), *value)));
            }
            for i in removals {
                if let Some((pattern, value)) = entries.get(i) {
                    prop_assert_eq!(subs.remove(pattern, value), model.remove(&(pattern.clone(), *value)));
                }
            }
            prop_assert_eq!(subs.len(), model.len());
            for topic in &topics {
                let got: Vec<u8> = subs.matching(topic).copied().collect();
                let want: Vec<u8> = model
                    .iter()
                    .filter(|(pattern, _)| pattern.matches(topic))
                    .map(|(_, v)| *v)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Topic::parse(&s);
            let _ = Pattern::parse(&s);
        }
    }
}
