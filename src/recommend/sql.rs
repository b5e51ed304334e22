//! SQL statements of database spans → templates, as `pg_stat_statements`
//! shows them: every literal becomes `?`, an `IN (…)` list of literals
//! becomes `IN (?)`, placeholders of any style (`$1`, `:name`, `?`) become
//! `?`. Parsed with `sqlparser` in the dialect of `db.system`
//! (PostgreSQL, MySQL, SQLite, else generic); what it cannot parse goes
//! through a token normaliser that does the same on the text. Parsing also
//! yields the operation, the tables, and for index advice the columns a
//! statement filters, joins and sorts on.
//!
//! Bounded: statements longer than `MAX_STATEMENT` are normalised from
//! their first `MAX_STATEMENT` bytes by the token normaliser (and say so);
//! sqlparser's own recursion limit bounds nesting.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, visit_relations, BinaryOperator, Expr, SetExpr, Statement, TableFactor,
    Value,
};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

/// Longest statement parsed.
pub const MAX_STATEMENT: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub template: String,
    /// Parsed by sqlparser (false: the token normaliser's result).
    pub parsed: bool,
    /// `SELECT`, `INSERT`, … (upper case), or empty.
    pub operation: String,
    pub tables: Vec<String>,
    /// Per table, the columns compared with a value in `WHERE`/`ON`
    /// (equality first), then those in `ORDER BY`: index candidates.
    pub filter_columns: BTreeMap<String, Vec<String>>,
}

fn dialect(system: &str) -> Box<dyn Dialect> {
    match system {
        "postgresql" | "postgres" | "cockroachdb" | "redshift" => Box::new(PostgreSqlDialect {}),
        "mysql" | "mariadb" | "tidb" => Box::new(MySqlDialect {}),
        "sqlite" => Box::new(SQLiteDialect {}),
        _ => Box::new(GenericDialect {}),
    }
}

fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if !matches!(v.value, Value::Null))
}

/// The template of `statement` for database `system`.
pub fn normalise(statement: &str, system: &str) -> Normalised {
    let statement = statement.trim();
    if statement.len() > MAX_STATEMENT {
        let mut cut = MAX_STATEMENT;
        while !statement.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut n = tokens(&statement[..cut]);
        n.template.push_str(" …");
        return n;
    }
    let dialect = dialect(system);
    let Ok(mut statements) = Parser::parse_sql(dialect.as_ref(), statement) else {
        return tokens(statement);
    };
    if statements.is_empty() {
        return tokens(statement);
    }
    let _ = visit_expressions_mut(&mut statements, |e| {
        match e {
            Expr::Value(v) if !matches!(v.value, Value::Null) => {
                v.value = Value::Placeholder("?".into());
            }
            Expr::InList { list, .. } if !list.is_empty() && list.iter().all(is_literal) => {
                list.truncate(1);
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    let mut tables = BTreeSet::new();
    let _ = visit_relations(&statements, |name| {
        tables.insert(name.to_string());
        ControlFlow::<()>::Continue(())
    });
    let mut filter_columns = BTreeMap::new();
    for s in &statements {
        columns_of(s, &mut filter_columns);
    }
    let operation = statements
        .first()
        .map(|s| {
            s.to_string()
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        })
        .unwrap_or_default();
    let template = statements
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Normalised {
        template,
        parsed: true,
        operation,
        tables: tables.into_iter().collect(),
        filter_columns,
    }
}

/// The token normaliser: string and number literals to `?`, runs of `?`
/// in a list to one, whitespace collapsed.
pub fn tokens(text: &str) -> Normalised {
    let mut out = String::with_capacity(text.len());
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut last_space = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '\'' {
            // A string literal ('' is an escaped quote).
            i += 1;
            while i < bytes.len() {
                if bytes[i] == '\'' {
                    if bytes.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push('?');
            last_space = false;
            continue;
        }
        let prev_ident = out
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$' || p == ':');
        if (c.is_ascii_digit() || (c == '.' && bytes.get(i + 1).is_some_and(char::is_ascii_digit)))
            && !prev_ident
        {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            out.push('?');
            last_space = false;
            continue;
        }
        if (c == '$' || c == ':')
            && bytes.get(i + 1).is_some_and(|n| n.is_alphanumeric())
            && !prev_ident
        {
            i += 1;
            while i < bytes.len() && (bytes[i].is_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            out.push('?');
            last_space = false;
            continue;
        }
        if c.is_whitespace() {
            if !last_space && !out.is_empty() {
                out.push(' ');
            }
            last_space = true;
            i += 1;
            continue;
        }
        out.push(c);
        last_space = false;
        i += 1;
    }
    // (?, ?, ?) → (?)
    while out.contains("?, ?") || out.contains("?,?") {
        out = out.replace("?, ?", "?").replace("?,?", "?");
    }
    let operation = out
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    Normalised {
        template: out.trim().to_string(),
        parsed: false,
        operation,
        tables: Vec::new(),
        filter_columns: BTreeMap::new(),
    }
}

/// The column an expression names, with its qualifier if any.
fn column(e: &Expr) -> Option<(Option<String>, String)> {
    match e {
        Expr::Identifier(id) => Some((None, id.value.clone())),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => Some((
            Some(parts[parts.len() - 2].value.clone()),
            parts[parts.len() - 1].value.clone(),
        )),
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

fn is_value(e: &Expr) -> bool {
    matches!(e, Expr::Value(_)) || matches!(e, Expr::Nested(inner) if is_value(inner))
}

/// Collects (qualifier, column, rank) from a predicate: rank 0 for a
/// column equal to a value, 1 for a join equality, 2 for a range.
fn predicate(e: &Expr, out: &mut Vec<(Option<String>, String, u8)>, depth: usize) {
    if depth > 64 {
        return;
    }
    match e {
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And | BinaryOperator::Or => {
                predicate(left, out, depth + 1);
                predicate(right, out, depth + 1);
            }
            BinaryOperator::Eq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                let eq = matches!(op, BinaryOperator::Eq);
                for (a, b) in [(left, right), (right, left)] {
                    if let Some((q, c)) = column(a) {
                        let rank = match (eq, is_value(b), column(b).is_some()) {
                            (true, true, _) => 0,
                            (true, false, true) => 1,
                            (false, true, _) | (false, _, true) => 2,
                            _ => continue,
                        };
                        out.push((q, c, rank));
                    }
                }
            }
            _ => {}
        },
        Expr::InList { expr, .. } | Expr::InSubquery { expr, .. } | Expr::Between { expr, .. } => {
            if let Some((q, c)) = column(expr) {
                let rank = if matches!(e, Expr::Between { .. }) {
                    2
                } else {
                    0
                };
                out.push((q, c, rank));
            }
        }
        Expr::Nested(inner) => predicate(inner, out, depth + 1),
        _ => {}
    }
}

fn columns_of(s: &Statement, out: &mut BTreeMap<String, Vec<String>>) {
    // Tables and aliases of the statement's FROM / target.
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    let mut tables: Vec<String> = Vec::new();
    let add_factor =
        |f: &TableFactor, aliases: &mut BTreeMap<String, String>, tables: &mut Vec<String>| {
            if let TableFactor::Table { name, alias, .. } = f {
                let table = name.to_string();
                if let Some(a) = alias {
                    aliases.insert(a.name.value.clone(), table.clone());
                }
                aliases.insert(table.clone(), table.clone());
                if let Some(last) = name.0.last() {
                    aliases.insert(last.to_string(), table.clone());
                }
                tables.push(table);
            }
        };
    let mut preds: Vec<(Option<String>, String, u8)> = Vec::new();
    let mut order: Vec<(Option<String>, String)> = Vec::new();
    match s {
        Statement::Query(q) => {
            if let SetExpr::Select(select) = q.body.as_ref() {
                for t in &select.from {
                    add_factor(&t.relation, &mut aliases, &mut tables);
                    for j in &t.joins {
                        add_factor(&j.relation, &mut aliases, &mut tables);
                        if let Some(on) = join_on(&j.join_operator) {
                            predicate(on, &mut preds, 0);
                        }
                    }
                }
                if let Some(w) = &select.selection {
                    predicate(w, &mut preds, 0);
                }
            }
            if let Some(ob) = &q.order_by {
                if let sqlparser::ast::OrderByKind::Expressions(exprs) = &ob.kind {
                    for e in exprs {
                        if let Some(c) = column(&e.expr) {
                            order.push(c);
                        }
                    }
                }
            }
        }
        Statement::Update(u) => {
            add_factor(&u.table.relation, &mut aliases, &mut tables);
            if let Some(w) = &u.selection {
                predicate(w, &mut preds, 0);
            }
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(f)
                | sqlparser::ast::FromTable::WithoutKeyword(f) => f,
            };
            for t in from {
                add_factor(&t.relation, &mut aliases, &mut tables);
            }
            if let Some(w) = &d.selection {
                predicate(w, &mut preds, 0);
            }
        }
        _ => return,
    }
    let table_of = |q: &Option<String>| -> Option<String> {
        match q {
            Some(q) => aliases.get(q).cloned(),
            None if tables.len() == 1 => Some(tables[0].clone()),
            None => None,
        }
    };
    // Equality with values first (they lead a composite index), then join
    // columns, ranges, ORDER BY.
    let mut ordered: Vec<(Option<String>, String)> = Vec::new();
    for rank in 0..3 {
        for (q, c, r) in &preds {
            if *r == rank {
                ordered.push((q.clone(), c.clone()));
            }
        }
    }
    ordered.extend(order);
    for (q, c) in ordered {
        if let Some(t) = table_of(&q) {
            let cols = out.entry(t).or_default();
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
    }
}

fn join_on(op: &sqlparser::ast::JoinOperator) -> Option<&Expr> {
    use sqlparser::ast::{JoinConstraint, JoinOperator as J};
    let constraint = match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c) => c,
        _ => return None,
    };
    match constraint {
        JoinConstraint::On(e) => Some(e),
        _ => None,
    }
}

/// A `CREATE INDEX` statement for a table's columns in the dialect of
/// `system`.
pub fn create_index(system: &str, table: &str, columns: &[String]) -> String {
    let bare = table
        .rsplit('.')
        .next()
        .unwrap_or(table)
        .trim_matches(['"', '`']);
    let name = format!("idx_{}_{}", bare, columns.join("_"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    match system {
        "postgresql" | "postgres" => format!(
            "CREATE INDEX CONCURRENTLY {name} ON {table} ({});",
            columns.join(", ")
        ),
        "mysql" | "mariadb" => format!(
            "CREATE INDEX {name} ON {table} ({}) ALGORITHM=INPLACE LOCK=NONE;",
            columns.join(", ")
        ),
        _ => format!("CREATE INDEX {name} ON {table} ({});", columns.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_lists_become_placeholders() {
        let n = normalise(
            "SELECT * FROM items WHERE user_id = 42 AND state IN ('a', 'b', 'c') AND note = 'it''s'",
            "postgresql",
        );
        assert!(n.parsed);
        assert_eq!(
            n.template,
            "SELECT * FROM items WHERE user_id = ? AND state IN (?) AND note = ?"
        );
        assert_eq!(n.operation, "SELECT");
        assert_eq!(n.tables, vec!["items"]);
        assert_eq!(n.filter_columns["items"], vec!["user_id", "state", "note"]);
        // Different literals, one template; placeholders of any style too.
        for (sql, system) in [
            (
                "select * from items where user_id = 7 and state in ('x') and note = ''",
                "postgresql",
            ),
            (
                "SELECT * FROM items WHERE user_id = $1 AND state IN ($2, $3) AND note = $4",
                "postgresql",
            ),
            (
                "SELECT * FROM items WHERE user_id = ? AND state IN (?, ?) AND note = ?",
                "sqlite",
            ),
            (
                "SELECT * FROM items WHERE user_id = ? AND state IN (?, ?) AND note = ?",
                "mysql",
            ),
        ] {
            let other = normalise(sql, system);
            assert_eq!(
                other.template.to_lowercase(),
                n.template.to_lowercase(),
                "{sql}"
            );
        }
    }

    #[test]
    fn joins_order_by_and_dialects() {
        let n = normalise(
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = 'a@b' AND o.created_at > '2024-01-01' ORDER BY o.created_at LIMIT 10",
            "postgresql",
        );
        assert_eq!(n.filter_columns["customers"], vec!["email", "id"]);
        assert_eq!(
            n.filter_columns["orders"],
            vec!["customer_id", "created_at"]
        );
        let m = normalise("SELECT `name` FROM `users` WHERE `id` = 5", "mysql");
        assert!(m.parsed, "{m:?}");
        assert_eq!(m.filter_columns["`users`"], vec!["id"]);
        let u = normalise(
            "UPDATE accounts SET balance = balance - 10 WHERE id = 3",
            "sqlite",
        );
        assert_eq!(
            u.template,
            "UPDATE accounts SET balance = balance - ? WHERE id = ?"
        );
        assert_eq!(u.filter_columns["accounts"], vec!["id"]);
    }

    #[test]
    fn what_does_not_parse_is_still_normalised() {
        let n = normalise(
            "SELEKT * FROM t WHERE a = 12.5 AND b IN (1, 2, 3) AND c = 'x'",
            "postgresql",
        );
        assert!(!n.parsed);
        assert_eq!(
            n.template,
            "SELEKT * FROM t WHERE a = ? AND b IN (?) AND c = ?"
        );
        // Identifiers with digits stay.
        assert_eq!(
            tokens("select col1 from t2 where x = 3").template,
            "select col1 from t2 where x = ?"
        );
    }

    #[test]
    fn huge_and_deep_statements_are_bounded() {
        let long = format!(
            "SELECT * FROM t WHERE a IN ({})",
            vec!["1"; 100_000].join(", ")
        );
        let n = normalise(&long, "postgresql");
        assert!(!n.parsed);
        assert!(n.template.len() < 100, "{}", n.template);
        let deep = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        let n = normalise(&deep, "postgresql");
        assert!(!n.parsed);
    }

    #[test]
    fn index_statements_per_dialect() {
        let cols = vec!["user_id".to_string(), "created_at".to_string()];
        assert_eq!(
            create_index("postgresql", "public.items", &cols),
            "CREATE INDEX CONCURRENTLY idx_items_user_id_created_at ON public.items (user_id, created_at);"
        );
        assert!(create_index("mysql", "items", &cols).ends_with("ALGORITHM=INPLACE LOCK=NONE;"));
        assert_eq!(
            create_index("sqlite", "items", &cols[..1]),
            "CREATE INDEX idx_items_user_id ON items (user_id);"
        );
    }
}
