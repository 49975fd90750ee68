//! What an endpoint offers, aggregated over its upstream servers: pure functions over plain
//! lists, no I/O, so every rule is unit-tested here.
//!
//! - **Prompts** are named `{server}__{prompt}`, as tools are; server names never contain `__`,
//!   so the first `__` splits a name back.
//! - **Resources and resource templates** keep the URI (template) an upstream gives them when no
//!   other server of the endpoint lists the same one. When two or more do, each is published as
//!   `metamcp://{server}/{original}`: the fixed prefix, the server's name, a slash, then the
//!   upstream's URI unchanged (a template stays a template: its variables expand in the original
//!   part). The rewrite is reversed by stripping the prefix and splitting at the first slash
//!   after it; server names hold no slash.
//! - **`resources/read`** goes to the server whose listed resource has that URI; else, for a
//!   rewritten URI, to the server it names; else to the server one of whose templates matches the
//!   URI (RFC 6570 expressions matched loosely: literals exactly, each expression any run of
//!   characters, `/`, `?` and `#` only for the reserved and path/query operators); else, when
//!   only one server of the endpoint offers resources at all, to that one.
//! - **`completion/complete`** goes by its reference: a prompt to its server (with the upstream's
//!   prompt name), a resource template to the server owning the template (with its original URI).
//! - **Capabilities**: tools always (the built-ins), `listChanged` on every list the gateway
//!   announces changes of; prompts, resources and completions only when a server offers them.
//! - **Pagination**: a list longer than the page size comes in pages; the cursor is opaque to the
//!   client (hex of the list's name and the offset) and checked on the way back.

use std::collections::HashMap;

use rmcp::model::{
    CompleteRequestParams, Prompt, PromptsCapability, Reference, Resource, ResourceTemplate, ResourcesCapability,
    ServerCapabilities, ToolsCapability,
};

use crate::service::TOOL_SEPARATOR;

/// Items per page of a list when `gateway.list_page_size` does not say.
pub const DEFAULT_LIST_PAGE_SIZE: usize = 100;

/// The prefix of a rewritten URI: `metamcp://{server}/{original}`.
pub const REWRITE_PREFIX: &str = "metamcp://";

/// Longest URI matched against templates (longer ones are only looked up exactly).
const MAX_MATCHED_URI: usize = 8 * 1024;

/// What one upstream server of an endpoint offers, as its last discovery found it.
#[derive(Debug, Clone, Copy)]
pub struct ServerLists<'a> {
    /// The server's name.
    pub server: &'a str,
    /// Its prompts.
    pub prompts: &'a [Prompt],
    /// Its resources.
    pub resources: &'a [Resource],
    /// Its resource templates.
    pub templates: &'a [ResourceTemplate],
    /// Its capabilities.
    pub capabilities: &'a ServerCapabilities,
}

/// `{server}__{name}`.
pub fn qualified(server: &str, name: &str) -> String {
    format!("{server}{TOOL_SEPARATOR}{name}")
}

/// The server and the upstream's name of `{server}__{name}`.
pub fn split_qualified(name: &str) -> Option<(&str, &str)> {
    name.split_once(TOOL_SEPARATOR).filter(|(server, rest)| !server.is_empty() && !rest.is_empty())
}

/// Every prompt of `servers`, renamed `{server}__{prompt}`, in server order.
pub fn prompts(servers: &[ServerLists<'_>]) -> Vec<Prompt> {
    servers
        .iter()
        .flat_map(|lists| {
            lists.prompts.iter().map(|prompt| {
                let mut prompt = prompt.clone();
                prompt.name = qualified(lists.server, &prompt.name);
                prompt
            })
        })
        .collect()
}

/// The server of `{server}__{prompt}` among `servers` that has the prompt, and the prompt's own
/// name there.
pub fn route_prompt<'a>(servers: &[ServerLists<'a>], name: &'a str) -> Option<(&'a str, &'a str)> {
    let (server, prompt) = split_qualified(name)?;
    servers
        .iter()
        .find(|lists| lists.server == server && lists.prompts.iter().any(|p| p.name == prompt))
        .map(|lists| (lists.server, prompt))
}

/// `metamcp://{server}/{uri}`.
pub fn rewrite_uri(server: &str, uri: &str) -> String {
    format!("{REWRITE_PREFIX}{server}/{uri}")
}

/// The server and the original URI of a rewritten one.
pub fn unrewrite_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(REWRITE_PREFIX)?;
    rest.split_once('/').filter(|(server, _)| !server.is_empty())
}

/// Where a URI (or template) goes: the server and what that server calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The server.
    pub server: String,
    /// The URI as the server knows it.
    pub uri: String,
}

/// A published template and where it came from.
#[derive(Debug, Clone)]
struct TemplateEntry {
    server: String,
    published: String,
    original: String,
}

/// The resources and templates of an endpoint as published, and the way back to each server.
#[derive(Debug, Clone, Default)]
pub struct ResourceCatalog {
    /// The resources, with their published URIs.
    pub resources: Vec<Resource>,
    /// The templates, with their published URI templates.
    pub templates: Vec<ResourceTemplate>,
    by_uri: HashMap<String, Route>,
    template_entries: Vec<TemplateEntry>,
    /// Servers that offer resources or templates.
    offering: Vec<String>,
}

fn counts<'a>(items: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

impl ResourceCatalog {
    /// The catalog of `servers`: URIs a single server lists are kept, the others rewritten.
    pub fn build(servers: &[ServerLists<'_>]) -> Self {
        // A server listing the same URI twice does not make it collide with itself.
        let uri_counts =
            counts(servers.iter().flat_map(|lists| unique(lists.resources.iter().map(|r| r.uri.as_str()))));
        let template_counts =
            counts(servers.iter().flat_map(|lists| unique(lists.templates.iter().map(|t| t.uri_template.as_str()))));
        let mut catalog = Self::default();
        for lists in servers {
            if !lists.resources.is_empty() || !lists.templates.is_empty() {
                catalog.offering.push(lists.server.to_owned());
            }
            for resource in lists.resources {
                let published = if uri_counts.get(resource.uri.as_str()).copied().unwrap_or(0) > 1 {
                    rewrite_uri(lists.server, &resource.uri)
                } else {
                    resource.uri.clone()
                };
                catalog
                    .by_uri
                    .entry(published.clone())
                    .or_insert_with(|| Route { server: lists.server.to_owned(), uri: resource.uri.clone() });
                let mut resource = resource.clone();
                resource.uri = published;
                catalog.resources.push(resource);
            }
            for template in lists.templates {
                let published = if template_counts.get(template.uri_template.as_str()).copied().unwrap_or(0) > 1 {
                    rewrite_uri(lists.server, &template.uri_template)
                } else {
                    template.uri_template.clone()
                };
                catalog.template_entries.push(TemplateEntry {
                    server: lists.server.to_owned(),
                    published: published.clone(),
                    original: template.uri_template.clone(),
                });
                let mut template = template.clone();
                template.uri_template = published;
                catalog.templates.push(template);
            }
        }
        catalog
    }

    /// Where `resources/read` of `uri` goes; `None` when no server of the endpoint can be named.
    pub fn route_read(&self, uri: &str) -> Option<Route> {
        if let Some(route) = self.by_uri.get(uri) {
            return Some(route.clone());
        }
        if let Some(route) = self.route_rewritten(uri) {
            return Some(route);
        }
        if uri.len() <= MAX_MATCHED_URI {
            if let Some(entry) = self.template_entries.iter().find(|entry| template_matches(&entry.published, uri)) {
                return Some(Route { server: entry.server.clone(), uri: uri.to_owned() });
            }
        }
        match self.offering.as_slice() {
            [only] => Some(Route { server: only.clone(), uri: uri.to_owned() }),
            _ => None,
        }
    }

    /// Where a completion for the resource reference `uri` goes: the server owning that
    /// template (or resource), with its original URI.
    pub fn route_reference(&self, uri: &str) -> Option<Route> {
        if let Some(entry) = self.template_entries.iter().find(|entry| entry.published == uri) {
            return Some(Route { server: entry.server.clone(), uri: entry.original.clone() });
        }
        if let Some(route) = self.by_uri.get(uri) {
            return Some(route.clone());
        }
        self.route_rewritten(uri)
    }

    /// A rewritten URI of a server that offers resources here.
    fn route_rewritten(&self, uri: &str) -> Option<Route> {
        let (server, original) = unrewrite_uri(uri)?;
        self.offering
            .iter()
            .find(|offering| offering.as_str() == server)
            .map(|server| Route { server: server.clone(), uri: original.to_owned() })
    }
}

/// `items` without repeats, first occurrence kept.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    let mut seen = std::collections::HashSet::new();
    items.filter(move |item| seen.insert(*item))
}

/// One piece of a URI template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Literal(&'a str),
    /// An expression; `true` when its expansion may hold `/`, `?` or `#`.
    Expression(bool),
}

fn pieces(template: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}')?;
                let operator = rest[1..end].chars().next();
                out.push(Piece::Expression(matches!(operator, Some('+' | '#' | '/' | '?' | '&' | ';' | '.'))));
                rest = &rest[end + 1..];
            }
            Some(start) => {
                out.push(Piece::Literal(&rest[..start]));
                rest = &rest[start..];
            }
            None => {
                out.push(Piece::Literal(rest));
                rest = "";
            }
        }
    }
    Some(out)
}

/// Whether `uri` could be an expansion of `template` (RFC 6570, matched loosely; see the module
/// doc). Linear in the URI's length times the template's pieces.
pub fn template_matches(template: &str, uri: &str) -> bool {
    let Some(pieces) = pieces(template) else { return false };
    if !pieces.iter().any(|piece| matches!(piece, Piece::Expression(_))) {
        return template == uri;
    }
    let bytes = uri.as_bytes();
    // reachable[i]: the pieces so far can produce exactly uri[..i].
    let mut reachable = vec![false; bytes.len() + 1];
    reachable[0] = true;
    for piece in &pieces {
        let mut next = vec![false; bytes.len() + 1];
        match piece {
            Piece::Literal(literal) => {
                for start in (0..=bytes.len()).filter(|&i| reachable[i]) {
                    if uri[start..].starts_with(literal) {
                        next[start + literal.len()] = true;
                    }
                }
            }
            Piece::Expression(reserved) => {
                let mut open = false;
                for i in 0..=bytes.len() {
                    open |= reachable[i];
                    next[i] = open;
                    if i < bytes.len() && !reserved && matches!(bytes[i], b'/' | b'?' | b'#') {
                        open = false;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[bytes.len()]
}

/// Where a `completion/complete` goes, and its params as that server knows them.
pub fn route_completion(
    servers: &[ServerLists<'_>],
    catalog: &ResourceCatalog,
    mut params: CompleteRequestParams,
) -> Result<(String, CompleteRequestParams), String> {
    match &mut params.r#ref {
        Reference::Prompt(prompt) => {
            let Some((server, original)) = route_prompt(servers, &prompt.name) else {
                return Err(format!("Unknown prompt: {}", prompt.name));
            };
            let (server, original) = (server.to_owned(), original.to_owned());
            prompt.name = original;
            Ok((server, params))
        }
        Reference::Resource(resource) => {
            let Some(route) = catalog.route_reference(&resource.uri) else {
                return Err(format!("Unknown resource template: {}", resource.uri));
            };
            resource.uri = route.uri;
            Ok((route.server, params))
        }
        // A reference kind a later revision adds.
        #[allow(unreachable_patterns)]
        _ => Err("Unknown completion reference type".to_owned()),
    }
}

/// What `initialize` advertises for an endpoint whose servers declare `servers`: tools always
/// (the built-ins), prompts, resources and completions when one of them offers them. Every list
/// advertised says `listChanged`: the gateway announces changes of its server set.
pub fn capabilities<'a>(servers: impl IntoIterator<Item = &'a ServerCapabilities>) -> ServerCapabilities {
    let mut merged = ServerCapabilities::default();
    let mut tools = ToolsCapability::default();
    tools.list_changed = Some(true);
    merged.tools = Some(tools);
    for capabilities in servers {
        if capabilities.prompts.is_some() && merged.prompts.is_none() {
            let mut prompts = PromptsCapability::default();
            prompts.list_changed = Some(true);
            merged.prompts = Some(prompts);
        }
        if capabilities.resources.is_some() && merged.resources.is_none() {
            let mut resources = ResourcesCapability::default();
            resources.list_changed = Some(true);
            merged.resources = Some(resources);
        }
        if capabilities.completions.is_some() && merged.completions.is_none() {
            merged.completions = Some(serde_json::Map::new());
        }
    }
    merged
}

/// The lists an endpoint pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListName {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl ListName {
    fn tag(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "templates",
        }
    }
}

/// The cursor of the page of `list` starting at `offset`.
pub fn encode_cursor(list: ListName, offset: usize) -> String {
    format!("{}:{offset}", list.tag()).bytes().map(|b| format!("{b:02x}")).collect()
}

/// The offset a cursor of `list` points at; `None` for anything else.
pub fn decode_cursor(list: ListName, cursor: &str) -> Option<usize> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..cursor.len()).step_by(2).map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok()).collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (tag, offset) = text.split_once(':')?;
    if tag != list.tag() {
        return None;
    }
    offset.parse().ok()
}

/// A cursor that is not one of ours (or not of this list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid cursor for {list}: it is not one this endpoint gave out for this list")]
pub struct InvalidCursor {
    list: &'static str,
}

/// The page of `items` at `cursor` (the first without one), and the next page's cursor when
/// there is one. A list of at most `page_size` items is one page with no cursor.
pub fn paginate<T>(
    list: ListName,
    mut items: Vec<T>,
    cursor: Option<&str>,
    page_size: usize,
) -> Result<(Vec<T>, Option<String>), InvalidCursor> {
    let page_size = page_size.max(1);
    let start = match cursor {
        None => 0,
        Some(cursor) => decode_cursor(list, cursor).ok_or(InvalidCursor { list: list.tag() })?,
    };
    if start > items.len() {
        return Err(InvalidCursor { list: list.tag() });
    }
    let end = start.saturating_add(page_size).min(items.len());
    let next = (end < items.len()).then(|| encode_cursor(list, end));
    items.truncate(end);
    let page = items.split_off(start);
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ArgumentInfo, PromptReference, ResourceTemplateReference};

    use super::*;

    struct Fixture {
        name: &'static str,
        prompts: Vec<Prompt>,
        resources: Vec<Resource>,
        templates: Vec<ResourceTemplate>,
        capabilities: ServerCapabilities,
    }

    fn template(uri: &str, name: &str) -> ResourceTemplate {
        serde_json::from_value(serde_json::json!({"uriTemplate": uri, "name": name})).unwrap()
    }

    fn fixture(name: &'static str, prompts: &[&str], resources: &[&str], templates: &[&str]) -> Fixture {
        let mut capabilities = ServerCapabilities::default();
        if !prompts.is_empty() {
            capabilities.prompts = Some(PromptsCapability::default());
        }
        if !resources.is_empty() || !templates.is_empty() {
            capabilities.resources = Some(ResourcesCapability::default());
        }
        Fixture {
            name,
            prompts: prompts.iter().map(|p| Prompt::new(*p, Some(format!("{p} of {name}")), None)).collect(),
            resources: resources.iter().map(|uri| Resource::new(*uri, format!("{uri} of {name}"))).collect(),
            templates: templates.iter().map(|uri| template(uri, name)).collect(),
            capabilities,
        }
    }

    fn lists(fixtures: &[Fixture]) -> Vec<ServerLists<'_>> {
        fixtures
            .iter()
            .map(|f| ServerLists {
                server: f.name,
                prompts: &f.prompts,
                resources: &f.resources,
                templates: &f.templates,
                capabilities: &f.capabilities,
            })
            .collect()
    }

    fn route(server: &str, uri: &str) -> Option<Route> {
        Some(Route { server: server.to_owned(), uri: uri.to_owned() })
    }

    #[test]
    fn prompts_are_named_server_then_prompt_and_route_back() {
        let fixtures =
            [fixture("weather", &["forecast", "alerts"], &[], &[]), fixture("notes", &["forecast"], &[], &[])];
        let servers = lists(&fixtures);
        let names: Vec<String> = prompts(&servers).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["weather__forecast", "weather__alerts", "notes__forecast"]);
        assert_eq!(prompts(&servers)[2].description.as_deref(), Some("forecast of notes"), "the rest is kept");
        assert_eq!(route_prompt(&servers, "notes__forecast"), Some(("notes", "forecast")));
        // A prompt name holding the separator itself splits at the first one.
        let odd = [fixture("s", &["a__b"], &[], &[])];
        assert_eq!(route_prompt(&lists(&odd), "s__a__b"), Some(("s", "a__b")));
        for unknown in ["notes__alerts", "nobody__forecast", "forecast", "__forecast", "weather__"] {
            assert_eq!(route_prompt(&servers, unknown), None, "{unknown}");
        }
    }

    #[test]
    fn unique_uris_are_kept_and_colliding_ones_rewritten_reversibly() {
        let fixtures = [
            fixture("a", &[], &["file:///shared.txt", "file:///a.txt", "file:///a.txt"], &["db://{table}"]),
            fixture("b", &[], &["file:///shared.txt", "mem://b"], &["db://{table}", "logs://{day}"]),
        ];
        let catalog = ResourceCatalog::build(&lists(&fixtures));
        let uris: Vec<&str> = catalog.resources.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "metamcp://a/file:///shared.txt",
                "file:///a.txt",
                "file:///a.txt",
                "metamcp://b/file:///shared.txt",
                "mem://b"
            ]
        );
        let templates: Vec<&str> = catalog.templates.iter().map(|t| t.uri_template.as_str()).collect();
        assert_eq!(templates, ["metamcp://a/db://{table}", "metamcp://b/db://{table}", "logs://{day}"]);

        assert_eq!(catalog.route_read("metamcp://b/file:///shared.txt"), route("b", "file:///shared.txt"));
        assert_eq!(catalog.route_read("file:///a.txt"), route("a", "file:///a.txt"));
        assert_eq!(catalog.route_read("mem://b"), route("b", "mem://b"));
        // Expansions of templates: a rewritten one names its server; a kept one is matched.
        assert_eq!(catalog.route_read("metamcp://a/db://users"), route("a", "db://users"));
        assert_eq!(catalog.route_read("logs://2026-01-01"), route("b", "logs://2026-01-01"));
        // Nothing names a server, and two offer resources: no route.
        assert_eq!(catalog.route_read("file:///nobody.txt"), None);
        assert_eq!(catalog.route_read("metamcp://c/x"), None, "c is not a server of the endpoint");
        assert_eq!(unrewrite_uri(&rewrite_uri("srv-1", "a://b/c?d#e")), Some(("srv-1", "a://b/c?d#e")));
    }

    #[test]
    fn a_single_resource_server_gets_what_nothing_else_claims() {
        let fixtures = [fixture("only", &[], &["file:///x"], &[]), fixture("prompts", &["p"], &[], &[])];
        let catalog = ResourceCatalog::build(&lists(&fixtures));
        assert_eq!(catalog.route_read("file:///dynamic"), route("only", "file:///dynamic"));
        assert_eq!(ResourceCatalog::build(&[]).route_read("file:///x"), None);
    }

    #[test]
    fn templates_match_their_expansions_loosely() {
        for (template, uri, expected) in [
            ("file:///{path}", "file:///notes.txt", true),
            ("file:///{path}", "file:///dir/notes.txt", false),
            ("file:///{+path}", "file:///dir/notes.txt", true),
            ("users://{id}/profile", "users://42/profile", true),
            ("users://{id}/profile", "users://42/settings", false),
            ("search://q{?term,limit}", "search://q?term=x&limit=2", true),
            ("a{x}b{y}c", "a1b2c", true),
            ("a{x}b{y}c", "abc", true),
            ("a{x}b{y}c", "a1b2", false),
            ("plain://uri", "plain://uri", true),
            ("plain://uri", "plain://uri2", false),
            ("broken://{x", "broken://{x", false),
        ] {
            assert_eq!(template_matches(template, uri), expected, "{template} ~ {uri}");
        }
        let long = format!("a://{}", "x".repeat(100_000));
        assert!(template_matches("a://{+rest}", &long), "linear, not exponential");
    }

    #[test]
    fn completions_route_by_their_reference() {
        let fixtures = [
            fixture("a", &["greet"], &["file:///shared"], &["db://{table}"]),
            fixture("b", &["greet"], &["file:///shared"], &["db://{table}", "logs://{day}"]),
        ];
        let servers = lists(&fixtures);
        let catalog = ResourceCatalog::build(&servers);
        let argument: ArgumentInfo = serde_json::from_value(serde_json::json!({"name": "n", "value": "v"})).unwrap();
        let params = |r| CompleteRequestParams::new(r, argument.clone());

        let (server, routed) =
            route_completion(&servers, &catalog, params(Reference::Prompt(PromptReference::new("b__greet")))).unwrap();
        assert_eq!((server.as_str(), routed.r#ref.as_prompt_name()), ("b", Some("greet")));
        let resource = |uri: &str| Reference::Resource(ResourceTemplateReference::new(uri));
        let (server, routed) =
            route_completion(&servers, &catalog, params(resource("metamcp://a/db://{table}"))).unwrap();
        assert_eq!((server.as_str(), routed.r#ref.as_resource_uri()), ("a", Some("db://{table}")));
        let (server, routed) = route_completion(&servers, &catalog, params(resource("logs://{day}"))).unwrap();
        assert_eq!((server.as_str(), routed.r#ref.as_resource_uri()), ("b", Some("logs://{day}")));
        assert!(
            route_completion(&servers, &catalog, params(Reference::Prompt(PromptReference::new("c__greet")))).is_err()
        );
        assert!(route_completion(&servers, &catalog, params(resource("nope://{x}"))).is_err());
    }

    #[test]
    fn capabilities_are_exactly_what_the_servers_offer_plus_tools() {
        let bare = capabilities([]);
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"tools": {"listChanged": true}}),
            "tools only, for the built-ins"
        );
        let fixtures = [fixture("p", &["x"], &[], &[]), fixture("r", &[], &["file:///y"], &[])];
        let mut with_completions = fixtures[1].capabilities.clone();
        with_completions.completions = Some(serde_json::Map::new());
        with_completions.logging = Some(serde_json::Map::new());
        let merged = capabilities([&fixtures[0].capabilities, &with_completions]);
        assert_eq!(
            serde_json::to_value(&merged).unwrap(),
            serde_json::json!({
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"listChanged": true},
                "completions": {}
            }),
            "logging is not forwarded, so not advertised"
        );
    }

    #[test]
    fn lists_are_paged_with_opaque_cursors() {
        let items: Vec<u32> = (0..250).collect();
        let (page, next) = paginate(ListName::Tools, items.clone(), None, 100).unwrap();
        assert_eq!((page.len(), page[0]), (100, 0));
        let next = next.unwrap();
        assert!(next.bytes().all(|b| b.is_ascii_hexdigit()), "{next}");
        let (page, next) = paginate(ListName::Tools, items.clone(), Some(&next), 100).unwrap();
        assert_eq!((page.len(), page[0]), (100, 100));
        let (page, last) = paginate(ListName::Tools, items.clone(), next.as_deref(), 100).unwrap();
        assert_eq!((page.len(), page[0], last), (50, 200, None));

        let (whole, none) = paginate(ListName::Prompts, vec![1, 2, 3], None, 100).unwrap();
        assert_eq!((whole, none), (vec![1, 2, 3], None), "a short list has no cursor");
        let (exact, none) = paginate(ListName::Prompts, vec![1, 2], None, 2).unwrap();
        assert_eq!((exact.len(), none), (2, None));

        let of_tools = encode_cursor(ListName::Tools, 100);
        assert!(paginate(ListName::Prompts, items.clone(), Some(&of_tools), 100).is_err(), "another list's cursor");
        for bad in ["", "zz", "abc", "7", &encode_cursor(ListName::Tools, 999)] {
            assert!(paginate(ListName::Tools, items.clone(), Some(bad), 100).is_err(), "{bad:?}");
        }
        assert_eq!(decode_cursor(ListName::Resources, &encode_cursor(ListName::Resources, 7)), Some(7));
        assert_eq!(paginate(ListName::Tools, Vec::<u8>::new(), None, 100).unwrap(), (vec![], None));
    }
}
