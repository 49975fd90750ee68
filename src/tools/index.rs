//! The tools registry's in-memory vector index: one L2-normalised vector per `(server, tool)`,
//! stored row-major in one contiguous `Vec<f32>` and searched by cosine similarity (a dot
//! product, since rows and queries are normalised) with a brute-force scan written for the
//! compiler to vectorise. Reads share a lock; writes (upsert, remove, the atomic swap of one
//! server's tools) take it briefly and keep the storage contiguous.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;

use parking_lot::RwLock;
use serde::Serialize;

use super::embedder::l2_normalize;

/// One tool held by the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IndexedTool {
    /// `{server}__{tool}`, the name the gateway lists the tool under.
    pub key: String,
    /// The upstream server (or `builtin`) that provides the tool.
    pub server: String,
    /// The tool's name on that server.
    pub tool: String,
}

impl IndexedTool {
    fn new(server: &str, tool: &str) -> Self {
        Self { key: format!("{server}__{tool}"), server: server.to_owned(), tool: tool.to_owned() }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// `{server}__{tool}`.
    pub key: String,
    /// The server that provides the tool.
    pub server: String,
    /// The tool's name on that server.
    pub tool: String,
    /// Cosine similarity between the query and the tool, from -1 to 1.
    pub score: f32,
}

/// Why a vector was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    /// The vector's length is not the index's dimensions.
    #[error("vector of tool `{tool}` has {got} dimensions, the index holds {expected}")]
    Dimensions {
        /// The tool whose vector was rejected.
        tool: String,
        /// The index's dimensions.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The vector holds NaN or an infinity.
    #[error("vector of tool `{tool}` holds a non-finite number")]
    NotFinite {
        /// The tool whose vector was rejected.
        tool: String,
    },
}

/// In-memory vector index of tools, searched by cosine similarity; `Send + Sync`, shared by
/// reference (or in an `Arc`) between request handlers.
pub struct ToolIndex {
    dimensions: usize,
    inner: RwLock<Inner>,
}

impl fmt::Debug for ToolIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolIndex").field("dimensions", &self.dimensions).field("len", &self.len()).finish()
    }
}

/// The rows and their bookkeeping; every method keeps `data`, `rows`, `row_server` and
/// `servers` in agreement: row `r` is `data[r * d..(r + 1) * d]`, `rows[r]` and `row_server[r]`,
/// and `servers[rows[r].server].tools[rows[r].tool] == r`.
#[derive(Default)]
struct Inner {
    data: Vec<f32>,
    rows: Vec<IndexedTool>,
    /// Slot of each row's server, so a search filtered by server tests a `bool` per row.
    row_server: Vec<u32>,
    servers: HashMap<String, ServerRows>,
    /// Slots of servers that left the index, reused so slots stay below the number of servers.
    free_slots: Vec<u32>,
    next_slot: u32,
}

struct ServerRows {
    slot: u32,
    tools: HashMap<String, usize>,
}

impl Inner {
    fn insert(&mut self, dimensions: usize, server: &str, tool: &str, vector: &[f32]) {
        let slot = match self.servers.get(server) {
            Some(rows) => rows.slot,
            None => {
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.next_slot += 1;
                    self.next_slot - 1
                });
                self.servers.insert(server.to_owned(), ServerRows { slot, tools: HashMap::new() });
                slot
            }
        };
        let existing = self.servers.get(server).and_then(|rows| rows.tools.get(tool)).copied();
        if let Some(row) = existing {
            if let Some(stored) = self.data.get_mut(row * dimensions..(row + 1) * dimensions) {
                stored.copy_from_slice(vector);
                return;
            }
        }
        let row = self.rows.len();
        self.data.extend_from_slice(vector);
        self.rows.push(IndexedTool::new(server, tool));
        self.row_server.push(slot);
        if let Some(rows) = self.servers.get_mut(server) {
            rows.tools.insert(tool.to_owned(), row);
        }
    }

    fn remove(&mut self, dimensions: usize, server: &str, tool: &str) -> bool {
        let Some(rows) = self.servers.get_mut(server) else { return false };
        let Some(row) = rows.tools.remove(tool) else { return false };
        if rows.tools.is_empty() {
            self.free_slots.push(rows.slot);
            self.servers.remove(server);
        }
        self.swap_remove_row(dimensions, row);
        true
    }

    fn remove_server(&mut self, dimensions: usize, server: &str) -> usize {
        let Some(rows) = self.servers.remove(server) else { return 0 };
        self.free_slots.push(rows.slot);
        let mut doomed: Vec<usize> = rows.tools.into_values().collect();
        // Highest first: the last row, moved into each hole, is then never one still to remove.
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        for &row in &doomed {
            self.swap_remove_row(dimensions, row);
        }
        doomed.len()
    }

    /// Moves the last row into `row` and shortens the storage; the caller has already dropped
    /// `row` from `servers`.
    fn swap_remove_row(&mut self, dimensions: usize, row: usize) {
        let Some(last) = self.rows.len().checked_sub(1) else { return };
        if row > last {
            return;
        }
        if row != last {
            self.data.copy_within(last * dimensions..(last + 1) * dimensions, row * dimensions);
        }
        self.data.truncate(last * dimensions);
        self.rows.swap_remove(row);
        self.row_server.swap_remove(row);
        if let Some(moved) = self.rows.get(row) {
            if let Some(index) = self.servers.get_mut(&moved.server).and_then(|rows| rows.tools.get_mut(&moved.tool)) {
                *index = row;
            }
        }
    }
}

impl ToolIndex {
    /// An empty index of vectors of `dimensions` floats.
    pub fn new(dimensions: usize) -> Self {
        Self { dimensions, inner: RwLock::new(Inner::default()) }
    }

    /// Length of the vectors the index holds.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Number of tools in the index.
    pub fn len(&self) -> usize {
        self.inner.read().rows.len()
    }

    /// Whether the index holds no tool.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `server` has a tool named `tool` in the index.
    pub fn contains(&self, server: &str, tool: &str) -> bool {
        self.inner.read().servers.get(server).is_some_and(|rows| rows.tools.contains_key(tool))
    }

    /// The stored (normalised) vector of `(server, tool)`.
    pub fn vector(&self, server: &str, tool: &str) -> Option<Vec<f32>> {
        let inner = self.inner.read();
        let row = *inner.servers.get(server)?.tools.get(tool)?;
        inner.data.get(row * self.dimensions..(row + 1) * self.dimensions).map(<[f32]>::to_vec)
    }

    /// Every tool in the index, ordered by key, then server.
    pub fn tools(&self) -> Vec<IndexedTool> {
        let mut tools = self.inner.read().rows.clone();
        tools.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.server.cmp(&b.server)));
        tools
    }

    /// Stores the vector of `(server, tool)`, replacing the one it had. The vector is
    /// L2-normalised on the way in (a zero vector stays zero and matches nothing above 0).
    pub fn upsert(&self, server: &str, tool: &str, vector: &[f32]) -> Result<(), IndexError> {
        let vector = self.checked(tool, vector)?;
        self.inner.write().insert(self.dimensions, server, tool, &vector);
        Ok(())
    }

    /// Removes `(server, tool)`; whether it was there.
    pub fn remove(&self, server: &str, tool: &str) -> bool {
        self.inner.write().remove(self.dimensions, server, tool)
    }

    /// Removes every tool of `server`; how many there were.
    pub fn remove_server(&self, server: &str) -> usize {
        self.inner.write().remove_server(self.dimensions, server)
    }

    /// Replaces all tools of `server` with `tools` (name, vector) in one step: a concurrent search
    /// sees either the old set or the new one. On error nothing changes. A name given twice
    /// keeps its last vector.
    pub fn replace_server(&self, server: &str, tools: &[(String, Vec<f32>)]) -> Result<(), IndexError> {
        let checked = tools
            .iter()
            .map(|(tool, vector)| Ok((tool.as_str(), self.checked(tool, vector)?)))
            .collect::<Result<Vec<_>, IndexError>>()?;
        let mut inner = self.inner.write();
        inner.remove_server(self.dimensions, server);
        for (tool, vector) in &checked {
            inner.insert(self.dimensions, server, tool, vector);
        }
        Ok(())
    }

    /// The `limit` tools most similar to `query` whose score is at least `threshold`, best
    /// first (ties by key, then server), restricted to `servers` when given. A query of the wrong
    /// length, `limit == 0` or a NaN threshold finds nothing. The query need not be normalised.
    pub fn search(&self, query: &[f32], limit: usize, threshold: f32, servers: Option<&HashSet<String>>) -> Vec<Hit> {
        if limit == 0 || query.len() != self.dimensions || self.dimensions == 0 {
            return Vec::new();
        }
        let mut query = query.to_vec();
        l2_normalize(&mut query);
        let inner = self.inner.read();
        let allowed: Option<Vec<bool>> = servers.map(|names| {
            let mut allowed = vec![false; inner.next_slot as usize];
            for rows in names.iter().filter_map(|name| inner.servers.get(name)) {
                if let Some(flag) = allowed.get_mut(rows.slot as usize) {
                    *flag = true;
                }
            }
            allowed
        });
        if allowed.as_ref().is_some_and(|allowed| !allowed.contains(&true)) {
            return Vec::new();
        }

        let mut best: BinaryHeap<Candidate<'_>> = BinaryHeap::with_capacity(limit.min(inner.rows.len()) + 1);
        let rows = inner.data.chunks_exact(self.dimensions).zip(&inner.row_server).zip(&inner.rows);
        for ((vector, &slot), tool) in rows {
            if let Some(allowed) = &allowed {
                if !allowed.get(slot as usize).copied().unwrap_or(false) {
                    continue;
                }
            }
            let score = dot(&query, vector);
            // A NaN score (from a NaN in the query) compares as `None` and is never kept.
            if !matches!(score.partial_cmp(&threshold), Some(Ordering::Greater | Ordering::Equal)) {
                continue;
            }
            let candidate = Candidate { score, tool };
            if best.len() < limit {
                best.push(candidate);
            } else if let Some(mut worst) = best.peek_mut() {
                if score >= worst.score && candidate < *worst {
                    *worst = candidate;
                }
            }
        }
        let mut best = best.into_vec();
        best.sort_unstable();
        best.into_iter()
            .map(|c| Hit {
                key: c.tool.key.clone(),
                server: c.tool.server.clone(),
                tool: c.tool.tool.clone(),
                score: c.score,
            })
            .collect()
    }

    fn checked(&self, tool: &str, vector: &[f32]) -> Result<Vec<f32>, IndexError> {
        if vector.len() != self.dimensions {
            return Err(IndexError::Dimensions { tool: tool.to_owned(), expected: self.dimensions, got: vector.len() });
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NotFinite { tool: tool.to_owned() });
        }
        let mut vector = vector.to_vec();
        l2_normalize(&mut vector);
        Ok(vector)
    }
}

/// A search result being ranked. `Ord` puts better candidates first (higher score, then lower
/// key, then lower server), so the top of a `BinaryHeap` is the worst one kept.
struct Candidate<'a> {
    score: f32,
    tool: &'a IndexedTool,
}

impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.tool.key.cmp(&other.tool.key))
            .then_with(|| self.tool.server.cmp(&other.tool.server))
    }
}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

/// Lanes of the dot product: 16 independent accumulators, which the compiler keeps in vector
/// registers (four SSE or two AVX registers), so the additions do not wait on one another.
const LANES: usize = 16;

/// Dot product of two equally long slices.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tools::embedder::{Embedder as _, HashingEmbedder};

    fn random_vector(rng: &mut fastrand::Rng, dimensions: usize) -> Vec<f32> {
        (0..dimensions).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    fn normalised(vector: &[f32]) -> Vec<f32> {
        let mut vector = vector.to_vec();
        l2_normalize(&mut vector);
        vector
    }

    /// The obvious implementation: a map, scored one by one, sorted in full.
    #[derive(Default)]
    struct Model(BTreeMap<(String, String), Vec<f32>>);

    impl Model {
        fn search(&self, query: &[f32], limit: usize, threshold: f32, servers: Option<&HashSet<String>>) -> Vec<Hit> {
            let query = normalised(query);
            let mut hits: Vec<Hit> = self
                .0
                .iter()
                .filter(|((server, _), _)| servers.is_none_or(|s| s.contains(server)))
                .map(|((server, tool), vector)| Hit {
                    key: format!("{server}__{tool}"),
                    server: server.clone(),
                    tool: tool.clone(),
                    score: dot(&query, vector),
                })
                .filter(|hit| hit.score >= threshold)
                .collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
            hits.truncate(limit);
            hits
        }
    }

    fn assert_agrees(index: &ToolIndex, model: &Model, rng: &mut fastrand::Rng) {
        assert_eq!(index.len(), model.0.len());
        for ((server, tool), vector) in &model.0 {
            assert_eq!(index.vector(server, tool).as_ref(), Some(vector), "{server}/{tool}");
        }
        let listed: Vec<(String, String)> = index.tools().into_iter().map(|t| (t.server, t.tool)).collect();
        let mut expected: Vec<(String, String)> = model.0.keys().cloned().collect();
        expected.sort_by(|a, b| format!("{}__{}", a.0, a.1).cmp(&format!("{}__{}", b.0, b.1)));
        assert_eq!(listed, expected);
        let query = random_vector(rng, index.dimensions());
        let servers: HashSet<String> = ["s1", "s3"].into_iter().map(String::from).collect();
        for (limit, threshold, filter) in
            [(5, f32::NEG_INFINITY, None), (100, 0.1, None), (3, -0.2, Some(&servers)), (0, -1.0, None)]
        {
            assert_eq!(index.search(&query, limit, threshold, filter), model.search(&query, limit, threshold, filter));
        }
    }

    #[test]
    fn many_random_operations_agree_with_a_naive_model() {
        let dimensions = 19; // not a multiple of the lanes: the tail is exercised too
        let index = ToolIndex::new(dimensions);
        let mut model = Model::default();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let server = |rng: &mut fastrand::Rng| format!("s{}", rng.usize(0..5));
        let tool = |rng: &mut fastrand::Rng| format!("t{}", rng.usize(0..15));
        for step in 0..3000 {
            match rng.usize(0..10) {
                0..=4 => {
                    let (s, t, v) = (server(&mut rng), tool(&mut rng), random_vector(&mut rng, dimensions));
                    index.upsert(&s, &t, &v).unwrap();
                    model.0.insert((s, t), normalised(&v));
                }
                5 | 6 => {
                    let (s, t) = (server(&mut rng), tool(&mut rng));
                    assert_eq!(index.remove(&s, &t), model.0.remove(&(s, t)).is_some());
                }
                7 => {
                    let s = server(&mut rng);
                    let before = model.0.len();
                    model.0.retain(|(server, _), _| *server != s);
                    assert_eq!(index.remove_server(&s), before - model.0.len());
                }
                _ => {
                    let s = server(&mut rng);
                    let tools: Vec<(String, Vec<f32>)> =
                        (0..rng.usize(0..8)).map(|_| (tool(&mut rng), random_vector(&mut rng, dimensions))).collect();
                    index.replace_server(&s, &tools).unwrap();
                    model.0.retain(|(server, _), _| *server != s);
                    for (t, v) in tools {
                        model.0.insert((s.clone(), t), normalised(&v));
                    }
                }
            }
            if step % 10 == 0 {
                assert_agrees(&index, &model, &mut rng);
            }
        }
        assert_agrees(&index, &model, &mut rng);
        // Storage stays exactly as long as the rows it holds.
        assert_eq!(index.inner.read().data.len(), index.len() * dimensions);
        assert!(index.inner.read().next_slot <= 5, "server slots are reused");
    }

    #[test]
    fn rejects_wrong_dimensions_and_non_finite_vectors_without_changes() {
        let index = ToolIndex::new(4);
        index.upsert("s", "kept", &[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(
            index.upsert("s", "t", &[1.0, 0.0]),
            Err(IndexError::Dimensions { tool: "t".to_owned(), expected: 4, got: 2 })
        );
        assert_eq!(
            index.upsert("s", "t", &[f32::NAN, 0.0, 0.0, 0.0]),
            Err(IndexError::NotFinite { tool: "t".to_owned() })
        );
        let bad = vec![("a".to_owned(), vec![1.0; 4]), ("b".to_owned(), vec![1.0; 5])];
        assert!(matches!(index.replace_server("s", &bad), Err(IndexError::Dimensions { got: 5, .. })));
        assert_eq!(index.len(), 1);
        assert!(index.contains("s", "kept") && !index.contains("s", "a"));
    }

    #[test]
    fn threshold_limit_and_server_filter_are_respected() {
        let index = ToolIndex::new(2);
        // Unit vectors at known angles from the query (1, 0): scores are their cosines.
        for (server, tool, degrees) in
            [("a", "t0", 0.0f32), ("a", "t10", 10.0), ("b", "t20", 20.0), ("b", "t60", 60.0), ("c", "t120", 120.0)]
        {
            let radians = degrees.to_radians();
            index.upsert(server, tool, &[radians.cos(), radians.sin()]).unwrap();
        }
        let keys = |hits: Vec<Hit>| hits.into_iter().map(|h| h.key).collect::<Vec<_>>();
        let query = [2.0, 0.0]; // not normalised: the index normalises it
        assert_eq!(keys(index.search(&query, 10, -1.0, None)), ["a__t0", "a__t10", "b__t20", "b__t60", "c__t120"]);
        assert_eq!(keys(index.search(&query, 2, -1.0, None)), ["a__t0", "a__t10"]);
        assert_eq!(keys(index.search(&query, 10, 0.45, None)), ["a__t0", "a__t10", "b__t20", "b__t60"]);
        assert_eq!(keys(index.search(&query, 10, 0.9, None)), ["a__t0", "a__t10", "b__t20"]);
        assert!(index.search(&query, 0, -1.0, None).is_empty());
        assert!(index.search(&query, 10, f32::NAN, None).is_empty());
        assert!(index.search(&[1.0, 0.0, 0.0], 10, -1.0, None).is_empty(), "wrong query length");
        let hits = index.search(&query, 1, -1.0, None);
        assert!((hits[0].score - 1.0).abs() < 1e-6 && hits[0].server == "a" && hits[0].tool == "t0");

        let only = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        assert_eq!(keys(index.search(&query, 10, -1.0, Some(&only(&["b", "c"])))), ["b__t20", "b__t60", "c__t120"]);
        assert_eq!(keys(index.search(&query, 1, -1.0, Some(&only(&["b", "nope"])))), ["b__t20"]);
        assert!(index.search(&query, 10, -1.0, Some(&only(&["nope"]))).is_empty());
        assert!(index.search(&query, 10, -1.0, Some(&HashSet::new())).is_empty());
    }

    #[test]
    fn equal_scores_rank_by_key() {
        let index = ToolIndex::new(3);
        for (server, tool) in [("z", "same"), ("a", "same"), ("m", "same"), ("a", "other")] {
            index.upsert(server, tool, &[0.0, 1.0, 0.0]).unwrap();
        }
        let keys: Vec<String> = index.search(&[0.0, 1.0, 0.0], 3, 0.0, None).into_iter().map(|h| h.key).collect();
        assert_eq!(keys, ["a__other", "a__same", "m__same"]);
    }

    #[test]
    fn replace_server_swaps_one_servers_tools_only() {
        let index = ToolIndex::new(2);
        index.upsert("a", "old", &[1.0, 0.0]).unwrap();
        index.upsert("a", "kept", &[1.0, 0.0]).unwrap();
        index.upsert("b", "other", &[0.0, 1.0]).unwrap();
        let tools = vec![("kept".to_owned(), vec![0.0, 3.0]), ("new".to_owned(), vec![1.0, 1.0])];
        index.replace_server("a", &tools).unwrap();
        assert!(!index.contains("a", "old") && index.contains("a", "new") && index.contains("b", "other"));
        assert_eq!(index.vector("a", "kept"), Some(vec![0.0, 1.0]));
        assert_eq!(index.len(), 3);
        index.replace_server("a", &[]).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index.remove_server("b"), 1);
        assert!(index.is_empty());
        assert!(!index.remove("b", "other"));
    }

    #[test]
    fn concurrent_searches_see_whole_servers() {
        let index = std::sync::Arc::new(ToolIndex::new(2));
        let set = |n: usize| (0..n).map(|i| (format!("t{i}"), vec![1.0, i as f32])).collect::<Vec<_>>();
        index.replace_server("s", &set(3)).unwrap();
        let writer = {
            let index = index.clone();
            std::thread::spawn(move || {
                for round in 0..2000 {
                    index.replace_server("s", &set(if round % 2 == 0 { 7 } else { 3 })).unwrap();
                }
            })
        };
        while !writer.is_finished() {
            let found = index.search(&[1.0, 0.0], 100, -1.0, None).len();
            assert!(found == 3 || found == 7, "a search saw {found} tools, half a swap");
        }
        writer.join().unwrap();
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        let mut rng = fastrand::Rng::with_seed(1);
        for len in [0, 1, 15, 16, 17, 384, 1000] {
            let (a, b) = (random_vector(&mut rng, len), random_vector(&mut rng, len));
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn hashing_embeddings_rank_the_matching_tool_first() {
        let embedder = HashingEmbedder::new(384);
        let tools = [
            ("weather", "get_forecast", "Get the weather forecast for a city"),
            ("math", "add", "Add two numbers"),
            ("mail", "send_email", "Send an email message to a recipient"),
            ("fs", "search_files", "Search files in a directory"),
            ("lang", "translate", "Translate text between languages"),
            ("calendar", "create_event", "Create a calendar event with a date and time"),
            ("db", "run_query", "Run a SQL query against the database"),
            ("images", "resize_image", "Resize an image to a given width and height"),
        ];
        let index = ToolIndex::new(embedder.dimensions());
        for (server, tool, description) in tools {
            index.upsert(server, tool, &embedder.embed_one(&format!("{tool}: {description}"))).unwrap();
        }
        for (query, expected) in [
            ("what is the weather forecast in Paris", "weather__get_forecast"),
            ("sum of two numbers", "math__add"),
            ("send an email", "mail__send_email"),
            ("find files in a folder directory", "fs__search_files"),
            ("translate this text to French", "lang__translate"),
            ("schedule a calendar event", "calendar__create_event"),
            ("SQL database query", "db__run_query"),
            ("resize_image", "images__resize_image"),
        ] {
            let hits = index.search(&embedder.embed_one(query), 3, 0.0, None);
            assert_eq!(hits.first().map(|h| h.key.as_str()), Some(expected), "{query:?}: {hits:?}");
        }
    }
}
