//! SQL over every signal, through DataFusion, reading the stores where the
//! data is (no copies): `samples`, `series`, `metadata` and `metrics.<name>`
//! over the metrics store, `spans` over the trace store, `logs` over the
//! log partitions, and the views of the shipped catalogue (`migrations/`).
//!
//! Read-only: a statement that is not a query (DDL, DML, `SET`, `COPY`)
//! is refused before it is planned. Each query runs on a runtime of its
//! own threads (a heavy join never holds up ingest or the HTTP listeners)
//! under `sql.timeout`, with at most `sql.max_rows` rows and a memory pool
//! of `sql.max_memory` for its operators; over any limit it is stopped
//! with an error that names the limit.

pub mod catalog;
pub mod cli;
pub mod filters;
pub mod logs;
pub mod metrics;
pub mod scan;
pub mod spans;
pub mod udf;
pub mod values;

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures_util::StreamExt;

use crate::config::Config;
use crate::storage::logs::LogStore;
use crate::storage::metrics::MetricsStore;
use crate::storage::traces::TraceStore;

/// The time zone of every timestamp column.
pub fn utc() -> Arc<str> {
    Arc::from("UTC")
}

/// The Arrow type of the string-to-string map columns (labels, attributes).
pub fn map_type() -> DataType {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .finish()
        .data_type()
        .clone()
}

/// The columns a scan returns (all when there is no projection) and their
/// schema.
pub fn projected(schema: &SchemaRef, projection: Option<&Vec<usize>>) -> (Vec<usize>, SchemaRef) {
    let columns: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let projected = project_schema(schema, &columns);
    (columns, projected)
}

/// The schema of some columns of `schema`, in the order given.
pub fn project_schema(schema: &SchemaRef, columns: &[usize]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|&c| schema.field(c).clone())
            .collect::<Vec<_>>(),
    ))
}

/// Why a statement did not run, and what a client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// Not SQL, or SQL DataFusion does not parse.
    Syntax,
    /// A table, column or function that does not exist, or a type error.
    Plan,
    /// A statement other than a query.
    ReadOnly,
    /// `sql.max_rows`, `sql.max_memory` or another resource limit.
    Limit,
    /// `sql.timeout`.
    Timeout,
    /// The server is shutting down or too busy.
    Unavailable,
    /// Reading a store failed, or a bug.
    Internal,
}

#[derive(Debug, Clone)]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
}

impl SqlError {
    fn new(kind: SqlErrorKind, message: impl Into<String>) -> SqlError {
        SqlError {
            kind,
            message: message.into(),
        }
    }

    /// The HTTP status for this error (Prometheus' choices where they exist).
    pub fn http_status(&self) -> u16 {
        match self.kind {
            SqlErrorKind::Syntax | SqlErrorKind::Plan | SqlErrorKind::ReadOnly => 400,
            SqlErrorKind::Limit => 422,
            SqlErrorKind::Timeout | SqlErrorKind::Unavailable => 503,
            SqlErrorKind::Internal => 500,
        }
    }

    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self.kind {
            SqlErrorKind::Syntax => "42601",
            SqlErrorKind::Plan if self.message.contains("not found") => {
                if self.message.contains("table") {
                    "42P01"
                } else {
                    "42703"
                }
            }
            SqlErrorKind::Plan => "42000",
            SqlErrorKind::ReadOnly => "25006",
            SqlErrorKind::Limit if self.message.contains("memory") => "53200",
            SqlErrorKind::Limit => "54000",
            SqlErrorKind::Timeout => "57014",
            SqlErrorKind::Unavailable => "57P03",
            SqlErrorKind::Internal => "XX000",
        }
    }

    /// A short name for the self-metrics and the JSON `errorType`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SqlErrorKind::Syntax => "syntax",
            SqlErrorKind::Plan => "plan",
            SqlErrorKind::ReadOnly => "read_only",
            SqlErrorKind::Limit => "limit",
            SqlErrorKind::Timeout => "timeout",
            SqlErrorKind::Unavailable => "unavailable",
            SqlErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<DataFusionError> for SqlError {
    fn from(err: DataFusionError) -> SqlError {
        let kind = match err.find_root() {
            DataFusionError::SQL(..) => SqlErrorKind::Syntax,
            DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => SqlErrorKind::Plan,
            DataFusionError::ResourcesExhausted(_) => SqlErrorKind::Limit,
            DataFusionError::Execution(_) => SqlErrorKind::Plan,
            _ => SqlErrorKind::Internal,
        };
        let mut message = err.find_root().to_string();
        if kind == SqlErrorKind::Limit && !message.contains("query.max_samples") {
            message = format!("the query needs more memory than sql.max_memory allows: {message}");
        }
        SqlError { kind, message }
    }
}

/// A query's answer.
#[derive(Debug)]
pub struct SqlResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

/// Limits of one engine (from `[sql]`).
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub max_rows: usize,
    pub timeout: std::time::Duration,
    pub max_memory: usize,
}

/// The SQL engine: the catalogue and the limits; a fresh session per query.
pub struct SqlEngine {
    template: datafusion::execution::SessionState,
    limits: SqlLimits,
    slots: Arc<tokio::sync::Semaphore>,
    runtime: QueryRuntime,
    pub catalog: catalog::Catalog,
}

/// The threads queries run on; shut down without blocking when dropped
/// (it may be dropped on an async thread).
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Read-only: queries and `EXPLAIN`, nothing else.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl SqlEngine {
    pub async fn new(
        config: &Config,
        metrics: Arc<MetricsStore>,
        logs: Arc<LogStore>,
        traces: Arc<TraceStore>,
    ) -> anyhow::Result<SqlEngine> {
        let sql = &config.sql;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let partitions = if sql.target_partitions == 0 {
            cores
        } else {
            sql.target_partitions
        };
        let session = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_information_schema(true)
            .with_batch_size(scan::BATCH_ROWS)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let context = SessionContext::new_with_config(session);
        let max_samples = config.query.max_samples;
        context.register_table(
            "samples",
            Arc::new(metrics::MetricTable::samples(metrics.clone(), max_samples)),
        )?;
        context.register_table(
            "series",
            Arc::new(metrics::MetricTable::series(metrics.clone())),
        )?;
        context.register_table("metadata", Arc::new(LiveTable::metadata(metrics.clone())))?;
        context.register_table("spans", Arc::new(spans::SpansTable::new(traces)))?;
        context.register_table("logs", Arc::new(logs::LogsTable::new(logs)))?;
        context
            .catalog("datafusion")
            .ok_or_else(|| anyhow::anyhow!("no default catalog"))?
            .register_schema(
                "metrics",
                Arc::new(MetricSchema {
                    store: metrics,
                    max_samples,
                }),
            )?;
        for f in udf::functions() {
            context.register_udf(f);
        }
        let catalog = catalog::Catalog::migrate(&config.storage.data_dir.join("sql"))
            .map_err(anyhow::Error::msg)?;
        for (name, query) in &catalog.views {
            context
                .sql(&format!("CREATE VIEW {name} AS {query}"))
                .await
                .map_err(|e| anyhow::anyhow!("the SQL view {name} does not plan: {e}"))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("oxeye-sql")
            .enable_all()
            .build()?;
        Ok(SqlEngine {
            template: context.state(),
            limits: SqlLimits {
                max_rows: sql.max_rows,
                timeout: sql.timeout,
                max_memory: sql.max_memory.as_usize(),
            },
            slots: Arc::new(tokio::sync::Semaphore::new(sql.max_concurrent)),
            runtime: QueryRuntime(Some(runtime)),
            catalog,
        })
    }

    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    /// A session for one query, with its own memory pool.
    fn session(&self) -> Result<SessionContext, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.max_memory, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(SqlError::from)?;
        let state = SessionStateBuilder::new_from_existing(self.template.clone())
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Split `sql` into statements (for the PostgreSQL simple protocol).
    pub fn split(&self, sql: &str) -> Result<Vec<Statement>, SqlError> {
        let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
            .map_err(|e| SqlError::new(SqlErrorKind::Syntax, e.to_string()))?;
        Ok(statements.into_iter().collect())
    }

    /// Plan one statement (read-only), in a fresh session.
    pub async fn plan(
        &self,
        statement: Statement,
    ) -> Result<(SessionContext, LogicalPlan), SqlError> {
        let ctx = self.session()?;
        let plan = ctx.state().statement_to_plan(statement).await?;
        read_only().verify_plan(&plan).map_err(|e| {
            SqlError::new(
                SqlErrorKind::ReadOnly,
                format!(
                    "Oxeye's SQL is read-only: only queries (SELECT, WITH, EXPLAIN, SHOW) run ({})",
                    e.find_root()
                ),
            )
        })?;
        Ok((ctx, plan))
    }

    /// Parse and plan a text holding exactly one statement.
    pub async fn plan_text(&self, sql: &str) -> Result<(SessionContext, LogicalPlan), SqlError> {
        let mut statements = self.split(sql)?;
        match statements.len() {
            1 => self.plan(statements.remove(0)).await,
            0 => Err(SqlError::new(SqlErrorKind::Syntax, "no statement given")),
            n => Err(SqlError::new(
                SqlErrorKind::Syntax,
                format!("one statement at a time: {n} were given"),
            )),
        }
    }

    /// Run a planned query to completion under the limits.
    pub async fn run(&self, ctx: SessionContext, plan: LogicalPlan) -> Result<SqlResult, SqlError> {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return Err(SqlError::new(SqlErrorKind::Unavailable, "shutting down"));
        };
        let max_rows = self.limits.max_rows;
        let task = async move {
            let frame = ctx.execute_logical_plan(plan).await?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let mut stream = frame.execute_stream().await?;
            let mut batches = Vec::new();
            let mut rows = 0usize;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                if rows > max_rows {
                    return Err(SqlError::new(
                        SqlErrorKind::Limit,
                        format!(
                            "the result has more than sql.max_rows ({max_rows}) rows: add a LIMIT or aggregate"
                        ),
                    ));
                }
                batches.push(batch);
            }
            Ok::<_, SqlError>(SqlResult {
                schema,
                batches,
                rows,
            })
        };
        let runtime = self.runtime.0.as_ref().expect("runtime");
        let handle = runtime.spawn(task);
        let abort = handle.abort_handle();
        match tokio::time::timeout(self.limits.timeout, handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => Err(SqlError::new(
                SqlErrorKind::Internal,
                "the query failed (internal error)",
            )),
            Ok(Err(_)) => Err(SqlError::new(
                SqlErrorKind::Unavailable,
                "the query was cancelled",
            )),
            Err(_) => {
                abort.abort();
                Err(SqlError::new(
                    SqlErrorKind::Timeout,
                    format!(
                        "the query ran longer than sql.timeout ({}) and was stopped",
                        humantime::format_duration(self.limits.timeout)
                    ),
                ))
            }
        }
    }

    /// Parse, plan and run one statement.
    pub async fn query(&self, sql: &str) -> Result<SqlResult, SqlError> {
        let started = Instant::now();
        let (ctx, plan) = self.plan_text(sql).await?;
        let result = self.run(ctx, plan).await;
        tracing::debug!(elapsed = ?started.elapsed(), ok = result.is_ok(), "sql query");
        result
    }
}

/// `metrics.<name>`: one table per metric name.
struct MetricSchema {
    store: Arc<MetricsStore>,
    max_samples: usize,
}

impl std::fmt::Debug for MetricSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricSchema")
    }
}

#[async_trait]
impl SchemaProvider for MetricSchema {
    fn table_names(&self) -> Vec<String> {
        self.store
            .label_values(crate::model::METRIC_NAME, &[], i64::MIN, i64::MAX)
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        Ok(
            metrics::MetricTable::wide(self.store.clone(), name, self.max_samples)
                .map(|t| Arc::new(t) as Arc<dyn TableProvider>),
        )
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|n| n == name)
    }
}

/// A small table computed when it is scanned (`metadata`).
struct LiveTable {
    schema: SchemaRef,
    build: Arc<dyn Fn() -> datafusion::error::Result<RecordBatch> + Send + Sync>,
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveTable")
    }
}

impl LiveTable {
    fn metadata(store: Arc<MetricsStore>) -> LiveTable {
        let schema = metrics::metadata_batch(&store)
            .map(|b| b.schema())
            .unwrap_or_else(|_| Arc::new(Schema::empty()));
        LiveTable {
            schema,
            build: Arc::new(move || metrics::metadata_batch(&store)),
        }
    }
}

struct OneBatch(RecordBatch);

impl scan::Producer for OneBatch {
    fn produce(
        &self,
        _partition: usize,
        emit: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<(), String> {
        emit(self.0.clone());
        Ok(())
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.build)()?;
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let batch = batch.project(&columns)?;
        Ok(Arc::new(scan::ScanExec::new(
            "metadata",
            String::new(),
            batch.schema(),
            1,
            Arc::new(OneBatch(batch)),
        )))
    }
}
