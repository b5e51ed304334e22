//! Label sets: a series' identity is its sorted set of `name=value` pairs.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A borrowed label, e.g. a view into a decoded request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// An owned, sorted label set without duplicate names or empty values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Build from pairs: sorts by name, drops empty values. Callers validate
    /// names and duplicates before (see [`crate::ingest::validate`]).
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Labels {
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Labels(pairs)
    }

    pub fn from_refs(refs: &[LabelRef<'_>]) -> Labels {
        Labels::from_pairs(refs.iter().map(|l| (l.name, l.value)))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = LabelRef<'_>> {
        self.0.iter().map(|(name, value)| LabelRef { name, value })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn hash(&self) -> u64 {
        label_hash(self.iter())
    }

    /// The canonical key bytes (`name \xff value \xff …`): equal label sets
    /// have equal keys, and [`Labels::hash`] is the xxh3 of the key.
    pub fn key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        append_key(self.iter(), &mut out);
        out
    }

    /// Compact binary form used by the WAL and the series index:
    /// per label `varint(len) name varint(len) value`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::storage::codec::put_uvarint(out, self.0.len() as u64);
        for (name, value) in &self.0 {
            crate::storage::codec::put_str(out, name);
            crate::storage::codec::put_str(out, value);
        }
    }

    pub fn decode(reader: &mut crate::storage::codec::Reader<'_>) -> Option<Labels> {
        let count = reader.uvarint()? as usize;
        let mut pairs = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            let name = reader.str()?.to_owned();
            let value = reader.str()?.to_owned();
            pairs.push((name, value));
        }
        Some(Labels(pairs))
    }

    /// This set without the named labels (e.g. for `on`/`ignoring`).
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| !names.contains(&n.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl fmt::Display for Labels {
    /// Prometheus' text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (name, value) in self.0.iter().filter(|(n, _)| n != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// Append the canonical key of a sorted label sequence to `out`.
pub fn append_key<'a>(labels: impl Iterator<Item = LabelRef<'a>>, out: &mut Vec<u8>) {
    for label in labels {
        out.extend_from_slice(label.name.as_bytes());
        out.push(0xff);
        out.extend_from_slice(label.value.as_bytes());
        out.push(0xff);
    }
}

/// Hash of a sorted label sequence; equal sets hash equal whatever owns them.
pub fn label_hash<'a>(labels: impl Iterator<Item = LabelRef<'a>>) -> u64 {
    let mut hasher = Xxh3::new();
    for label in labels {
        hasher.update(label.name.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(label.value.as_bytes());
        hasher.update(&[0xff]);
    }
    hasher.digest()
}

/// Prometheus' label name syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_hash_matches_refs() {
        let labels = Labels::from_pairs([("job", "a"), ("__name__", "up"), ("empty", "")]);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.to_string(), "up{job=\"a\"}");
        let refs = [
            LabelRef {
                name: "__name__",
                value: "up",
            },
            LabelRef {
                name: "job",
                value: "a",
            },
        ];
        assert_eq!(labels.hash(), label_hash(refs.iter().copied()));
        let mut key = Vec::new();
        append_key(refs.iter().copied(), &mut key);
        assert_eq!(labels.key(), key);
        assert_eq!(xxhash_rust::xxh3::xxh3_64(&key), labels.hash());
    }

    #[test]
    fn label_name_syntax() {
        assert!(is_valid_label_name("__name__"));
        assert!(is_valid_label_name("a1_b"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }
}
