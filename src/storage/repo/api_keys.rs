//! The `endpoint_api_keys` table: API keys of endpoints (hashes only).

#[allow(unused_imports)]
use super::*;

/// Stores an API key of `endpoint` as its hex SHA-256 `key_hash` (64 hex digits, kept in lower
/// case) and its first characters `prefix` (at most 16) for display and revocation. A hash already stored is
/// [`Conflict`](StorageError::Conflict). `limit` is the key's rate limit, if any.
pub fn add_api_key(
    conn: &mut DbConnection,
    endpoint: &str,
    key_hash: &str,
    prefix: &str,
    limit: Option<RateLimit>,
) -> Result<ApiKeyInfo, StorageError> {
    if key_hash.len() != 64 || !key_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StorageError::Invalid("an API key hash must be 64 hex digits (SHA-256)".to_owned()));
    }
    if prefix.chars().count() > 16 || prefix.chars().any(char::is_control) {
        return Err(StorageError::Invalid("an API key prefix must be at most 16 printable characters".to_owned()));
    }
    let found = find_endpoint(conn, endpoint)?;
    diesel::insert_into(keys::table)
        .values((
            keys::endpoint_id.eq(found.id),
            keys::key_hash.eq(key_hash.to_ascii_lowercase()),
            keys::prefix.eq(prefix),
            keys::created_at.eq(now_ms()),
            keys::rate_limit_rps.eq(limit.map(|limit| limit.rps())),
            keys::rate_limit_burst.eq(limit.map(|limit| i64::from(limit.burst()))),
        ))
        .returning(API_KEY_COLUMNS)
        .get_result::<ApiKeyInfo>(conn)
        .map_err(|e| conflict_as(e, || "this API key is already stored".to_owned()))
}

/// The key hashes of `endpoint`, to check a presented key against.
pub fn api_key_hashes(conn: &mut DbConnection, endpoint: &str) -> Result<Vec<String>, StorageError> {
    Ok(api_keys(conn, endpoint)?.into_iter().map(|key| key.hash).collect())
}

/// The keys of `endpoint` with their row ids, oldest first, to check a presented key against
/// and bind a session to the key that opened it.
pub fn api_keys(conn: &mut DbConnection, endpoint: &str) -> Result<Vec<KeyHash>, StorageError> {
    let found = find_endpoint(conn, endpoint)?;
    Ok(keys::table
        .filter(keys::endpoint_id.eq(found.id))
        .select((keys::id, keys::key_hash, keys::prefix, keys::rate_limit_rps, keys::rate_limit_burst))
        .order(keys::id.asc())
        .load(conn)?)
}

/// A page of the keys of `endpoint`, oldest first: prefix, creation and last use, never the
/// key or its hash.
pub fn list_api_keys(conn: &mut DbConnection, endpoint: &str, page: Page) -> Result<Listed<ApiKeyInfo>, StorageError> {
    let page = page.check()?;
    let found = find_endpoint(conn, endpoint)?;
    let total = keys::table.filter(keys::endpoint_id.eq(found.id)).count().get_result::<i64>(conn)?;
    let items = keys::table
        .filter(keys::endpoint_id.eq(found.id))
        .select(ApiKeyInfo::as_select())
        .order(keys::id.asc())
        .limit(page.limit)
        .offset(page.offset)
        .load(conn)?;
    Ok(Listed { items, total })
}

/// Deletes the key of `endpoint` whose prefix starts with `prefix` and returns it. No such key
/// is [`NotFound`](StorageError::NotFound); more than one is
/// [`Conflict`](StorageError::Conflict) and nothing is deleted.
pub fn revoke_api_key(conn: &mut DbConnection, endpoint: &str, prefix: &str) -> Result<ApiKeyInfo, StorageError> {
    check_prefix(prefix)?;
    write_transaction(conn, |conn| {
        let key = key_by_prefix(conn, endpoint, prefix)?;
        diesel::delete(keys::table.filter(keys::id.eq(key.id))).execute(conn)?;
        Ok(key)
    })
}

/// Sets (or with `None` removes) the rate limit of the key of `endpoint` whose prefix starts
/// with `prefix`; no such key or more than one as [`revoke_api_key`] says.
pub fn set_api_key_rate_limit(
    conn: &mut DbConnection,
    endpoint: &str,
    prefix: &str,
    limit: Option<RateLimit>,
) -> Result<ApiKeyInfo, StorageError> {
    check_prefix(prefix)?;
    write_transaction(conn, |conn| {
        let key = key_by_prefix(conn, endpoint, prefix)?;
        Ok(diesel::update(keys::table.filter(keys::id.eq(key.id)))
            .set((
                keys::rate_limit_rps.eq(limit.map(|limit| limit.rps())),
                keys::rate_limit_burst.eq(limit.map(|limit| i64::from(limit.burst()))),
            ))
            .returning(API_KEY_COLUMNS)
            .get_result::<ApiKeyInfo>(conn)?)
    })
}

fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty()
        || prefix.len() > MAX_KEY_PREFIX
        || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(StorageError::Invalid(format!(
            "a key prefix must be 1 to {MAX_KEY_PREFIX} letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}

/// The one key of `endpoint` whose prefix starts with `prefix`.
fn key_by_prefix(conn: &mut DbConnection, endpoint: &str, prefix: &str) -> Result<ApiKeyInfo, StorageError> {
    let found = find_endpoint(conn, endpoint)?;
    // Prefixes are short: compare in Rust rather than with LIKE and its escapes.
    let mut matching: Vec<ApiKeyInfo> = keys::table
        .filter(keys::endpoint_id.eq(found.id))
        .select(ApiKeyInfo::as_select())
        .order(keys::id.asc())
        .load::<ApiKeyInfo>(conn)?
        .into_iter()
        .filter(|key| key.prefix.starts_with(prefix))
        .collect();
    match matching.len() {
        0 => Err(StorageError::NotFound(format!(
            "endpoint {} has no API key with the prefix {}",
            quoted(endpoint),
            quoted(prefix)
        ))),
        1 => Ok(matching.remove(0)),
        several => Err(StorageError::Conflict(format!(
            "the prefix {} matches {several} API keys of endpoint {}; give more of it",
            quoted(prefix),
            quoted(endpoint)
        ))),
    }
}

/// Records that the key `id` opened a request at `at_ms` (Unix milliseconds). A key revoked
/// meanwhile is no error.
pub fn touch_api_key(conn: &mut DbConnection, id: i64, at_ms: i64) -> Result<(), StorageError> {
    diesel::update(keys::table.filter(keys::id.eq(id))).set(keys::last_used_at.eq(at_ms)).execute(conn)?;
    Ok(())
}
