//! The `tool_executions` table: the audit log of tool calls, its listing and its pruning.

#[allow(unused_imports)]
use super::*;

pub(super) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    &text[..end]
}

/// The row of `new`, checked: its duration must be finite and not negative, and its error
/// message is cut at [`MAX_ERROR_MESSAGE`] bytes.
pub(super) fn execution_row(new: &NewExecution, created_at: i64) -> Result<ExecutionRow<'_>, StorageError> {
    if !new.duration_ms.is_finite() || new.duration_ms < 0.0 {
        return Err(StorageError::Invalid(format!(
            "an execution's duration_ms must be finite and not negative, not {}",
            new.duration_ms
        )));
    }
    Ok(ExecutionRow {
        endpoint: new.endpoint.as_deref(),
        tool_name: &new.tool_name,
        success: new.success,
        duration_ms: new.duration_ms,
        error_message: new.error_message.as_deref().map(|message| cut(message, MAX_ERROR_MESSAGE)),
        trace_id: new.trace_id.as_deref(),
        created_at,
    })
}

/// Records one tool execution; returns its id.
pub fn insert_execution(conn: &mut DbConnection, new: &NewExecution) -> Result<i64, StorageError> {
    let row = execution_row(new, now_ms())?;
    Ok(diesel::insert_into(executions::table).values(&row).returning(executions::id).get_result(conn)?)
}

/// Rows per `INSERT` at most: SQLite allows at most 32766 bound values (7 per row).
pub const MAX_ROWS_PER_INSERT: usize = 1000;

/// Records many tool executions: up to [`MAX_ROWS_PER_INSERT`] rows in one multi-row `INSERT`
/// (one statement, so atomic on its own: one query span, one round trip); more rows in
/// statements of that size inside one write transaction.
pub fn insert_executions(conn: &mut DbConnection, new: &[NewExecution]) -> Result<usize, StorageError> {
    let created_at = now_ms();
    let rows = new.iter().map(|new| execution_row(new, created_at)).collect::<Result<Vec<_>, _>>()?;
    if rows.len() <= MAX_ROWS_PER_INSERT {
        return insert_rows(conn, &rows);
    }
    write_transaction(conn, |conn| {
        rows.chunks(MAX_ROWS_PER_INSERT).try_fold(0, |written, chunk| Ok(written + insert_rows(conn, chunk)?))
    })
}

/// One multi-row `INSERT` of `rows`.
fn insert_rows(conn: &mut DbConnection, rows: &[ExecutionRow<'_>]) -> Result<usize, StorageError> {
    match rows {
        [] => return Ok(0),
        // One row: the single-row statement, whose prepared statement diesel keeps (a multi-row
        // one is prepared again each time, its SQL depending on the row count).
        [row] => return Ok(diesel::insert_into(executions::table).values(row).execute(conn)?),
        _ => {}
    }
    // Multi-row VALUES is backend-specific in diesel: run it on the concrete connection (its
    // instrumentation is the same).
    let insert = diesel::insert_into(executions::table).values(rows);
    Ok(match conn {
        DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
        DbConnection::Postgres(pg) => insert.execute(pg)?,
    })
}

/// Deletes at most `limit` of the oldest executions created before `cutoff_ms` (Unix
/// milliseconds); returns how many. Call again while it returns `limit`.
pub fn delete_executions_before(conn: &mut DbConnection, cutoff_ms: i64, limit: i64) -> Result<usize, StorageError> {
    let ids: Vec<i64> = executions::table
        .filter(executions::created_at.lt(cutoff_ms))
        .select(executions::id)
        .order(executions::id.asc())
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(executions::table.filter(executions::id.eq_any(&ids))).execute(conn)?)
}

/// Deletes at most `limit` of the oldest executions beyond the newest `keep` (by id, which
/// grows with insertion); returns how many. Call again while it returns `limit`.
pub fn delete_executions_beyond(conn: &mut DbConnection, keep: i64, limit: i64) -> Result<usize, StorageError> {
    let newest_dropped: Option<i64> = executions::table
        .select(executions::id)
        .order(executions::id.desc())
        .offset(keep)
        .limit(1)
        .first(conn)
        .optional()?;
    let Some(newest_dropped) = newest_dropped else { return Ok(0) };
    let ids: Vec<i64> = executions::table
        .filter(executions::id.le(newest_dropped))
        .select(executions::id)
        .order(executions::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(executions::table.filter(executions::id.eq_any(&ids))).execute(conn)?)
}

pub(super) type ExecutionQuery<'a> = diesel::dsl::IntoBoxed<'a, executions::table, MultiBackend>;

pub(super) fn execution_query(filter: &ExecutionFilter) -> ExecutionQuery<'_> {
    let mut query = executions::table.into_boxed::<MultiBackend>();
    if let Some(tool) = &filter.tool {
        query = query.filter(executions::tool_name.eq(tool));
    }
    if let Some(endpoint) = &filter.endpoint {
        query = query.filter(executions::endpoint.eq(endpoint));
    }
    if let Some(success) = filter.success {
        query = query.filter(executions::success.eq(success));
    }
    query
}

/// A page of executions matching `filter`, newest first.
pub fn list_executions(
    conn: &mut DbConnection,
    filter: &ExecutionFilter,
    page: Page,
) -> Result<Listed<Execution>, StorageError> {
    let page = page.check()?;
    let total = execution_query(filter).count().get_result::<i64>(conn)?;
    let items = execution_query(filter)
        .select(Execution::as_select())
        .order((executions::created_at.desc(), executions::id.desc()))
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}
