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

    /// Build a regex matcher; the pattern is anchored at both ends. Compiled
    /// regexes are reused per thread (rules evaluate the same selectors
    /// every interval, and compiling costs more than matching a few hundred
    /// label values).
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::NotEqual(value.into()),
        }
    }

    pub fn regex(
        name: impl Into<String>,
        pattern: &str,
        negate: bool,
    ) -> Result<Matcher, regex::Error> {
        let regex = cached_regex(pattern)?;
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
    // Equality matchers by their postings, shortest first, intersected in
    // place: `{__name__="x", namespace="big", pod="p"}` costs the pod's
    // list, not a copy of the namespace's.
    let mut equal: Vec<&RoaringBitmap> = Vec::new();
    for matcher in &narrowing {
        if let MatchOp::Equal(value) = &matcher.op {
            match postings.get(&matcher.name, value) {
                Some(list) => equal.push(list),
                None => return RoaringBitmap::new(),
            }
        }
    }
    equal.sort_by_key(|list| list.len());
    if let Some((first, rest)) = equal.split_first() {
        let mut acc = (*first).clone();
        for list in rest {
            acc &= *list;
            if acc.is_empty() {
                return acc;
            }
        }
        result = Some(acc);
    }
    for matcher in narrowing {
        let ids = match &matcher.op {
            MatchOp::Equal(_) => continue,
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

thread_local! {
    static REGEX_CACHE: std::cell::RefCell<std::collections::HashMap<String, Regex>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

#[cfg(test)]
fn cached_regex_count() -> usize {
    REGEX_CACHE.with(|c| c.borrow().len())
}

/// Anchored regexes by pattern, per thread (a `Regex` shared by threads
/// hands each match a cache from a shared pool, which measured slower than
/// compiling); bounded, emptied when full.
fn cached_regex(pattern: &str) -> Result<Regex, regex::Error> {
    const MAX_CACHED: usize = 1024;
    const MAX_PATTERN: usize = 1024;
    let anchored = || Regex::new(&format!("^(?s:{pattern})$"));
    if pattern.len() > MAX_PATTERN {
        return anchored();
    }
    if let Some(regex) = REGEX_CACHE.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(regex);
    }
    let regex = anchored()?;
    REGEX_CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), regex.clone());
    });
    Ok(regex)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cached_regexes_match_like_fresh_ones_and_stay_bounded() {
        for round in 0..2 {
            let m = Matcher::regex("i", "i7.*", false).unwrap();
            assert!(m.matches("i70") && !m.matches("xi7"), "round {round}");
            let n = Matcher::regex("i", "i7.*", true).unwrap();
            assert!(!n.matches("i70") && n.matches("i8"));
        }
        for i in 0..1500 {
            Matcher::regex("i", &format!("p{i}"), false).unwrap();
        }
        let size = super::cached_regex_count();
        assert!(size <= 1024, "{size}");
        assert!(Matcher::regex("i", "(", false).is_err());
    }

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
