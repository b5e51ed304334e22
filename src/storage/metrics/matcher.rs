//! Label matchers (`=`, `!=`, `=~`, `!~`) and their evaluation over postings.

use regex::Regex;
use roaring::RoaringBitmap;

use super::index::MemPostings;

#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal(String),
    NotEqual(String),
    /// Anchored (`^(?:…)$`) as Prometheus anchors its regexes.
    Regex(Regex),
    NotRegex(Regex),
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
}

impl Matcher {
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal(value.into()),
        }
    }

    /// Build a regex matcher; the pattern is anchored at both ends.
    pub fn regex(
        name: impl Into<String>,
        pattern: &str,
        negate: bool,
    ) -> Result<Matcher, regex::Error> {
        let regex = Regex::new(&format!("^(?s:{pattern})$"))?;
        Ok(Matcher {
            name: name.into(),
            op: if negate {
                MatchOp::NotRegex(regex)
            } else {
                MatchOp::Regex(regex)
            },
        })
    }

    /// Whether a label value matches; an absent label has the value "".
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal(v) => v == value,
            MatchOp::NotEqual(v) => v != value,
            MatchOp::Regex(r) => r.is_match(value),
            MatchOp::NotRegex(r) => !r.is_match(value),
        }
    }
}

/// Series ids whose labels satisfy every matcher, with Prometheus' semantics
/// for matchers that match the empty string (they also select series that
/// lack the label).
pub fn select(postings: &MemPostings, matchers: &[Matcher]) -> RoaringBitmap {
    let mut result: Option<RoaringBitmap> = None;
    // Positive matchers first: they narrow fastest.
    let (empty_matching, narrowing): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| m.matches(""));
    for matcher in narrowing {
        let ids = match &matcher.op {
            MatchOp::Equal(value) => postings
                .get(&matcher.name, value)
                .cloned()
                .unwrap_or_default(),
            _ => {
                let mut ids = RoaringBitmap::new();
                for (value, list) in postings.values(&matcher.name) {
                    if matcher.matches(value) {
                        ids |= list;
                    }
                }
                ids
            }
        };
        result = Some(match result {
            Some(acc) => acc & ids,
            None => ids,
        });
        if result.as_ref().is_some_and(RoaringBitmap::is_empty) {
            return RoaringBitmap::new();
        }
    }
    let mut result = result.unwrap_or_else(|| postings.all().clone());
    for matcher in empty_matching {
        // Remove series whose value for this label does not match.
        for (value, list) in postings.values(&matcher.name) {
            if !matcher.matches(value) {
                result -= list;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn ids(postings: &MemPostings, matchers: &[Matcher]) -> Vec<u32> {
        select(postings, matchers).iter().collect()
    }

    #[test]
    fn prometheus_matcher_semantics() {
        let mut postings = MemPostings::default();
        postings.add(0, &Labels::from_pairs([("__name__", "up"), ("job", "api")]));
        postings.add(1, &Labels::from_pairs([("__name__", "up"), ("job", "db")]));
        postings.add(2, &Labels::from_pairs([("__name__", "up")]));
        let name = Matcher::equal("__name__", "up");
        assert_eq!(ids(&postings, std::slice::from_ref(&name)), vec![0, 1, 2]);
        assert_eq!(
            ids(&postings, &[name.clone(), Matcher::equal("job", "")]),
            vec![2]
        );
        let not_api = Matcher {
            name: "job".into(),
            op: MatchOp::NotEqual("api".into()),
        };
        assert_eq!(ids(&postings, &[name.clone(), not_api]), vec![1, 2]);
        let re = Matcher::regex("job", "a.*|d", false).unwrap();
        assert_eq!(ids(&postings, &[re]), vec![0]);
        let not_re = Matcher::regex("job", ".+", true).unwrap();
        assert_eq!(ids(&postings, &[name, not_re]), vec![2]);
        assert!(ids(&postings, &[Matcher::equal("job", "nope")]).is_empty());
    }
}
