//! Elasticsearch query DSL bodies, parsed as the search endpoints do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::query::logs::dsl;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = dsl::parse(&value);
    }
});
