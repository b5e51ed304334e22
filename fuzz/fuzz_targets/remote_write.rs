//! Prometheus remote_write bodies (snappy already undone) through the
//! zero-copy decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::ingest::{remote_write, LabelCheck};

fuzz_target!(|data: &[u8]| {
    let check = LabelCheck {
        max_series_per_request: 10_000,
        max_labels_per_series: 64,
        max_label_name_length: 256,
        max_label_value_length: 4096,
    };
    let _ = remote_write::decode(data, &check);
});
