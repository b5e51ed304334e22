//! Lucene query strings (`query_string`, `?q=`, Oxeye's log search).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::query::logs::lucene;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lucene::parse(text, &[], false);
        let _ = lucene::parse(text, &["message".to_owned()], true);
    }
});
