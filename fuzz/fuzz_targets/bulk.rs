//! Elasticsearch `_bulk` NDJSON bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::ingest::es_bulk;

fuzz_target!(|data: &[u8]| {
    let _ = es_bulk::parse(data, Some("default"), 1000);
});
