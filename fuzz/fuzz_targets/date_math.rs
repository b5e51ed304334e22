//! Elasticsearch date math and date formats (`now-15m/m`, `||+1d`, epochs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::query::logs::datemath;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for format in [None, Some("epoch_millis"), Some("yyyy-MM-dd HH:mm:ss")] {
            let value = serde_json::Value::String(text.to_owned());
            let _ = datemath::resolve(&value, format, 1_700_000_000_000, true);
        }
    }
});
