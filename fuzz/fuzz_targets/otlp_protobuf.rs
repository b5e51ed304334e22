//! OTLP protobuf requests of the three signals: the per-request budget,
//! then translation, for whatever decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxeye::ingest::otlp::budget::Budget;
use oxeye::ingest::otlp::{logs, metrics, traces};
use oxeye::ingest::LabelCheck;
use prost::Message;

const BUDGET: Budget = Budget {
    max_items: 10_000,
    max_series: 10_000,
    max_bytes: 64 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(request) = ExportMetricsServiceRequest::decode(body) {
                if BUDGET.check_metrics(&request).is_ok() {
                    let check = LabelCheck {
                        max_series_per_request: 10_000,
                        max_labels_per_series: 64,
                        max_label_name_length: 256,
                        max_label_value_length: 4096,
                    };
                    let deltas = metrics::DeltaState::default();
                    let _ = metrics::translate(&request, &check, &deltas, 1_700_000_000_000);
                }
            }
        }
        1 => {
            if let Ok(request) = ExportLogsServiceRequest::decode(body) {
                if BUDGET.check_logs(&request).is_ok() {
                    let _ = logs::translate(&request, "otel-logs", 1_700_000_000_000_000_000);
                }
            }
        }
        _ => {
            if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                if BUDGET.check_traces(&request).is_ok() {
                    let _ = traces::translate(request);
                }
            }
        }
    }
});
