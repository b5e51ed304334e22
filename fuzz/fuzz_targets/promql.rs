//! PromQL through the depth guard and the parser, on the grown stack the
//! server uses; whatever parses is printed and serialised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxeye::query::promql;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        promql::with_stack(|| {
            if let Ok(expr) = promql::parse(text) {
                let _ = expr.prettify();
                let _ = serde_json::to_string(&expr);
            }
        });
    }
});
