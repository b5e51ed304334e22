//! The one physical operator behind every Oxeye table: a scan that a
//! blocking producer fills with record batches, partition by partition, and
//! that names in `EXPLAIN` what the store was asked for (the pushed-down
//! time range, matchers, trace ids, tantivy query).
//!
//! A producer runs on the blocking pool and hands batches over a bounded
//! channel: a slow consumer holds it back, and a consumer that stops (a
//! `LIMIT`, a timeout, a client that left) ends it at its next batch.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

/// Rows per produced batch.
pub const BATCH_ROWS: usize = 8192;

/// What a producer's error starts with when a configured limit stopped it
/// (reported as a limit, not a failure).
pub const LIMIT: &str = "limit: ";

/// Fills one partition of a scan. `emit` returns false once nobody reads
/// any more: stop then.
pub trait Producer: Send + Sync + 'static {
    fn produce(
        &self,
        partition: usize,
        emit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> std::result::Result<(), String>;
}

pub struct ScanExec {
    table: &'static str,
    /// What the store is asked for, shown by `EXPLAIN`.
    detail: String,
    schema: SchemaRef,
    partitions: usize,
    producer: Arc<dyn Producer>,
    properties: Arc<PlanProperties>,
}

impl ScanExec {
    pub fn new(
        table: &'static str,
        detail: String,
        schema: SchemaRef,
        partitions: usize,
        producer: Arc<dyn Producer>,
    ) -> ScanExec {
        let partitions = partitions.max(1);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        ScanExec {
            table,
            detail,
            schema,
            partitions,
            producer,
            properties,
        }
    }
}

impl fmt::Debug for ScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OxeyeScan({})", self.table)
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "OxeyeScan: table={}, partitions={}, projection=[{}]",
            self.table,
            self.partitions,
            columns.join(", ")
        )?;
        if !self.detail.is_empty() {
            write!(f, ", pushed_down=[{}]", self.detail)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &'static str {
        "OxeyeScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a scan has no children".to_owned(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let producer = self.producer.clone();
        let table = self.table;
        tokio::task::spawn_blocking(move || {
            let mut emit = |batch: RecordBatch| tx.blocking_send(Ok(batch)).is_ok();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                producer.produce(partition, &mut emit)
            }));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(_) => Some(format!("reading table {table} failed (internal error)")),
            };
            if let Some(message) = failure {
                let err = match message.strip_prefix(LIMIT) {
                    Some(limit) => DataFusionError::ResourcesExhausted(limit.to_owned()),
                    None => DataFusionError::Execution(message),
                };
                let _ = tx.blocking_send(Err(err));
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
