//! SQL put together from fixed fragments, with every value bound as `$n`: the only
//! text that reaches the database unbound is written in this crate.
//!
//! Not sqlx's `QueryBuilder`: over the `Any` driver it writes each bind as `?` (the
//! `Arguments::format_placeholder` default, sqlx-core 0.9 `src/arguments.rs`, which
//! `AnyArguments` keeps), which SQLite reads and PostgreSQL refuses; `$n` both read.

use sqlx::{Any, AssertSqlSafe, any::AnyArguments, query::Query};

/// A value to bind.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
}

/// A statement being built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(fragment: &'static str) -> Self {
        Self {
            text: fragment.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends a fixed fragment.
    pub(crate) fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    /// Appends the placeholder of a new bound value.
    pub(crate) fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `(<$n>, <$n+1>, …)` for `args`.
    pub(crate) fn tuple(&mut self, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        self.text.push('(');
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.arg(a);
        }
        self.text.push(')');
        self
    }

    fn bind_all<'q>(&self, mut q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        for a in &self.args {
            q = match a.clone() {
                Arg::Int(i) => q.bind(i),
                Arg::Text(s) => q.bind(s),
                Arg::OptInt(i) => q.bind(i),
                Arg::OptText(s) => q.bind(s),
            };
        }
        q
    }

    /// The statement, values bound.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments> {
        self.bind_all(sqlx::query(AssertSqlSafe(self.text.clone())))
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_numbered_placeholders() {
        let mut s = Sql::new("SELECT 1 FROM t WHERE a = ");
        s.arg(Arg::Int(1))
            .push(" AND b = ")
            .arg(Arg::Text("x'; DROP TABLE t; --".into()));
        s.push(" AND (c, d) IN ")
            .tuple([Arg::Int(2), Arg::OptText(None)]);
        assert_eq!(
            s.text(),
            "SELECT 1 FROM t WHERE a = $1 AND b = $2 AND (c, d) IN ($3, $4)"
        );
    }
}
