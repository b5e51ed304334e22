//! The PostgreSQL wire protocol (`server.postgres`): SQL over every signal
//! for `psql`, `psycopg`, Grafana's PostgreSQL data source and any other
//! PostgreSQL client. Simple and extended query protocols (prepared
//! statements with `$1` parameters), text and binary result formats.
//!
//! Read-only. Transaction statements (`BEGIN`, `COMMIT`, `ROLLBACK`) and
//! session settings (`SET`, `RESET`, `DISCARD`) are acknowledged and do
//! nothing, as drivers send them on their own. With `[auth]` configured a
//! client logs in with a user's password (or a token as the password of
//! any user name) and needs the `read` role; without it, on loopback only
//! (as every listener), no password is asked.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::Array;
use arrow_schema::{DataType, Schema};
use async_trait::async_trait;
use datafusion::common::{ParamValues, ScalarValue};
use futures_util::sink::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::{ClientInfo, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use super::auth::{Authenticator, Role};
use crate::query::sql::values::{json_value, timestamp_ns};
use crate::query::sql::{SqlEngine, SqlError, SqlErrorKind, SqlResult};
use crate::selfmon::SelfMetrics;

/// Serve the PostgreSQL protocol on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<SqlEngine>,
    auth: Arc<Authenticator>,
    metrics: Arc<SelfMetrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    let handlers = Arc::new(Handlers {
        backend: Arc::new(Backend {
            engine,
            metrics,
            parser: Arc::new(NoopQueryParser::new()),
        }),
        startup: Arc::new(Startup::new(auth)),
    });
    tokio::pin!(stop);
    loop {
        let socket = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(err) => {
                    tracing::warn!(error = %err, "PostgreSQL listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(err) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(error = %err, "PostgreSQL connection ended");
            }
        });
    }
}

struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

fn parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!("16.0 (Oxeye {})", env!("CARGO_PKG_VERSION"));
    parameters.time_zone = "UTC".to_owned();
    parameters.default_transaction_read_only = true;
    parameters
}

/// Password checks through `[auth]`, or none when it is empty.
enum Startup {
    Trust(Trust),
    Password(
        Box<CleartextPasswordAuthStartupHandler<PasswordCheck, DefaultServerParameterProvider>>,
    ),
}

impl Startup {
    fn new(auth: Arc<Authenticator>) -> Startup {
        if auth.enabled() {
            Startup::Password(Box::new(CleartextPasswordAuthStartupHandler::new(
                PasswordCheck { auth },
                parameters(),
            )))
        } else {
            Startup::Trust(Trust)
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(t) => t.on_startup(client, message).await,
            Startup::Password(p) => p.on_startup(client, message).await,
        }
    }
}

struct Trust;

impl NoopStartupHandler for Trust {}

struct PasswordCheck {
    auth: Arc<Authenticator>,
}

impl Debug for PasswordCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordCheck")
    }
}

#[async_trait]
impl AuthSource for PasswordCheck {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<()>> {
        let user = login.user().unwrap_or_default();
        let password = std::str::from_utf8(presented).unwrap_or_default();
        if self.auth.check_password(user, password, Role::Read).await {
            Ok(None)
        } else {
            Err(PgWireError::InvalidPassword(user.to_owned()))
        }
    }
}

struct Backend {
    engine: Arc<SqlEngine>,
    metrics: Arc<SelfMetrics>,
    parser: Arc<NoopQueryParser>,
}

fn user_error(err: &SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        err.sqlstate().to_owned(),
        err.message.clone(),
    )))
}

/// Statements drivers send that have no meaning for a read-only store:
/// acknowledged with their tag.
fn session_statement(sql: &str) -> Option<Response> {
    let upper = sql.trim().trim_end_matches(';').trim().to_ascii_uppercase();
    let first = upper.split_whitespace().next().unwrap_or("");
    Some(match first {
        "BEGIN" | "START" => Response::TransactionStart(Tag::new("BEGIN")),
        "COMMIT" | "END" => Response::TransactionEnd(Tag::new("COMMIT")),
        "ROLLBACK" | "ABORT" => Response::TransactionEnd(Tag::new("ROLLBACK")),
        "SET" => Response::Execution(Tag::new("SET")),
        "RESET" => Response::Execution(Tag::new("RESET")),
        "DISCARD" => Response::Execution(Tag::new("DISCARD ALL")),
        "DEALLOCATE" => Response::Execution(Tag::new("DEALLOCATE")),
        _ => return None,
    })
}

/// The PostgreSQL type a column is sent as.
fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 => Type::DATE,
        DataType::Binary => Type::BYTEA,
        DataType::Map(..) | DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_) => {
            Type::JSON
        }
        _ => Type::TEXT,
    }
}

fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

/// Every row of a result as protocol rows.
fn encode(result: &SqlResult, fields: Arc<Vec<FieldInfo>>) -> PgWireResult<Response> {
    let mut rows = Vec::with_capacity(result.rows);
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            let mut encoder = DataRowEncoder::new(fields.clone());
            for column in batch.columns() {
                encode_value(&mut encoder, column.as_ref(), row)?;
            }
            rows.push(Ok(encoder.take_row()));
        }
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures_util::stream::iter(rows),
    )))
}

fn encode_value(encoder: &mut DataRowEncoder, array: &dyn Array, row: usize) -> PgWireResult<()> {
    if array.is_null(row) {
        return encoder.encode_field(&None::<String>);
    }
    match array.data_type() {
        DataType::Boolean => encoder.encode_field(&array.as_boolean().value(row)),
        DataType::Int8 => {
            encoder.encode_field(&i16::from(array.as_primitive::<Int8Type>().value(row)))
        }
        DataType::Int16 => encoder.encode_field(&array.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => {
            encoder.encode_field(&i16::from(array.as_primitive::<UInt8Type>().value(row)))
        }
        DataType::Int32 => encoder.encode_field(&array.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => {
            encoder.encode_field(&i32::from(array.as_primitive::<UInt16Type>().value(row)))
        }
        DataType::Int64 => encoder.encode_field(&array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => {
            encoder.encode_field(&i64::from(array.as_primitive::<UInt32Type>().value(row)))
        }
        DataType::UInt64 => encoder.encode_field(
            &i64::try_from(array.as_primitive::<UInt64Type>().value(row)).unwrap_or(i64::MAX),
        ),
        DataType::Float16 | DataType::Float32 => match array.data_type() {
            DataType::Float32 => {
                encoder.encode_field(&array.as_primitive::<Float32Type>().value(row))
            }
            _ => encoder.encode_field(&json_value(array, row).as_f64().map(|v| v as f32)),
        },
        DataType::Float64 => encoder.encode_field(&array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(_, tz) => {
            let ns = timestamp_ns(array, row).unwrap_or(0);
            let t = chrono::DateTime::from_timestamp(
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) as u32,
            )
            .unwrap_or_default();
            if tz.is_some() {
                encoder.encode_field(&t)
            } else {
                encoder.encode_field(&t.naive_utc())
            }
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(i64::from(days))))
                .unwrap_or_default();
            encoder.encode_field(&date)
        }
        DataType::Binary => encoder.encode_field(&array.as_binary::<i32>().value(row)),
        DataType::Map(..) | DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_) => {
            encoder.encode_field(&json_value(array, row))
        }
        _ => match json_value(array, row) {
            serde_json::Value::String(s) => encoder.encode_field(&s),
            other => encoder.encode_field(&other.to_string()),
        },
    }
}

impl Backend {
    async fn run(
        &self,
        sql: &str,
        params: Option<&Portal<String>>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let started = std::time::Instant::now();
        let outcome = self.plan_and_run(sql, params).await;
        self.metrics.observe_sql(
            outcome.as_ref().err().map(SqlError::kind_name),
            started.elapsed(),
        );
        let result = outcome.map_err(|e| user_error(&e))?;
        let fields = Arc::new(fields(&result.schema, format));
        encode(&result, fields)
    }

    async fn plan_and_run(
        &self,
        sql: &str,
        params: Option<&Portal<String>>,
    ) -> Result<SqlResult, SqlError> {
        let (ctx, mut plan) = self.engine.plan_text(sql).await?;
        if let Some(portal) = params.filter(|p| p.parameter_len() > 0) {
            let values = bind(&plan, portal)?;
            plan = plan
                .with_param_values(ParamValues::List(
                    values.into_iter().map(Into::into).collect(),
                ))
                .map_err(SqlError::from)?;
        }
        self.engine.run(ctx, plan).await
    }

    async fn describe(
        &self,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<(Vec<Type>, Vec<FieldInfo>)> {
        if session_statement(sql).is_some() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (_, plan) = self
            .engine
            .plan_text(sql)
            .await
            .map_err(|e| user_error(&e))?;
        let types = parameter_types(&plan)
            .iter()
            .map(|t| t.as_ref().map_or(Type::UNKNOWN, pg_type))
            .collect();
        Ok((types, fields(plan.schema().as_arrow(), format)))
    }
}

/// The types DataFusion inferred for `$1`, `$2`, … in order.
fn parameter_types(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<Option<DataType>> {
    let Ok(types) = plan.get_parameter_types() else {
        return Vec::new();
    };
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(name, t)| Some((name.trim_start_matches('$').parse().ok()?, t)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    numbered.into_iter().map(|(_, t)| t).collect()
}

/// A portal's parameters as values of the types the plan expects.
fn bind(
    plan: &datafusion::logical_expr::LogicalPlan,
    portal: &Portal<String>,
) -> Result<Vec<ScalarValue>, SqlError> {
    let expected = parameter_types(plan);
    let bad = |i: usize, e: String| SqlError {
        kind: SqlErrorKind::Plan,
        message: format!("parameter ${}: {e}", i + 1),
    };
    (0..portal.parameter_len())
        .map(|i| {
            let declared = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or(Type::UNKNOWN);
            let text: Option<String> = match declared {
                Type::INT2 => portal
                    .parameter::<i16>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::INT4 => portal
                    .parameter::<i32>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::INT8 => portal
                    .parameter::<i64>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::FLOAT4 => portal
                    .parameter::<f32>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::FLOAT8 => portal
                    .parameter::<f64>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::BOOL => portal
                    .parameter::<bool>(i, &declared)
                    .map(|v| v.map(|v| v.to_string())),
                Type::TIMESTAMPTZ => portal
                    .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &declared)
                    .map(|v| v.map(|v| v.to_rfc3339())),
                _ => portal.parameter::<String>(i, &Type::TEXT),
            }
            .map_err(|e| bad(i, e.to_string()))?;
            let target = expected.get(i).cloned().flatten().unwrap_or(DataType::Utf8);
            match text {
                None => ScalarValue::try_from(&target).map_err(|e| bad(i, e.to_string())),
                Some(text) => {
                    ScalarValue::try_from_string(text, &target).map_err(|e| bad(i, e.to_string()))
                }
            }
        })
        .collect()
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if query.trim().trim_matches(';').trim().is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let statements = self.engine.split(query).map_err(|e| user_error(&e))?;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let text = statement.to_string();
            if let Some(response) = session_statement(&text) {
                responses.push(response);
                continue;
            }
            responses.push(self.run(&text, None, &Format::UnifiedText).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = &portal.statement.statement;
        if sql.trim().trim_matches(';').trim().is_empty() {
            return Ok(Response::EmptyQuery);
        }
        if let Some(response) = session_statement(sql) {
            return Ok(response);
        }
        self.run(sql, Some(portal), &portal.result_column_format)
            .await
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (inferred, fields) = self
            .describe(&target.statement, &Format::UnifiedBinary)
            .await?;
        // The client's declared parameter types win over inferred ones.
        let types = inferred
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(t)
            })
            .collect();
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo
            + pgwire::api::ClientPortalStore
            + Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, fields) = self
            .describe(&portal.statement.statement, &portal.result_column_format)
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }
}
