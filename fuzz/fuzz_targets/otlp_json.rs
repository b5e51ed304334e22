//! OTLP/JSON bodies of the three signals, decoded and translated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxeye::ingest::otlp::{logs, metrics, traces};
use oxeye::ingest::LabelCheck;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(data) {
        let check = LabelCheck {
            max_series_per_request: 10_000,
            max_labels_per_series: 64,
            max_label_name_length: 256,
            max_label_value_length: 4096,
        };
        let deltas = metrics::DeltaState::default();
        let _ = metrics::translate(&request, &check, &deltas, 1_700_000_000_000);
    }
    if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(data) {
        let _ = logs::translate(&request, "otel-logs", 1_700_000_000_000_000_000);
    }
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        let _ = traces::translate(request);
    }
});
