//! The HTTP face of the service: routes of `API.md`, and the error
//! handlers that make even actix's own refusals (bad JSON, wrong content
//! type, unknown route, malformed id) answer in the contract's shape.
//! Handlers are thin: they validate, ask the store or an actor, and map
//! the answer. None of them frames SSE or WebSocket bytes (only
//! `domain::frame` does); `events.rs` and `ws.rs` hand response bodies
//! their pipes.

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod detached;
pub mod events;
pub mod keys;
pub mod logging;
pub mod mcp_servers;
pub mod messages;
pub mod muxed_socket;
pub mod openapi;
pub mod page;
pub mod project_socket;
pub mod projects;
pub mod push;
pub mod secrets;
pub mod threads;
pub mod tools;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use actix::Addr;
use actix_web::{
    dev::ServiceResponse,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    guard,
    http::header,
    http::Method,
    middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers},
    web, HttpRequest, HttpResponse, Resource, Route,
};

use self::body::BodyKind;
use crate::{
    actors::{registry::Registry, Deps},
    error::{ApiError, Code},
    store::Store,
};

/// What handlers share.
pub struct AppState {
    pub store: Store,
    pub registry: Addr<Registry>,
    pub deps: Arc<Deps>,
    pub auth: auth::Auth,
    /// `/openapi.json`, built at start with this server's limits.
    pub api_doc: String,
    /// Cluster mode: this node's link to the others.
    pub bus: Option<Arc<crate::broadcast::redis::Bus>>,
    /// Web Push, when it is on (`--vapid-subject`).
    pub push: Option<Arc<crate::notify::push::Push>>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes, metrics, the API description.
    Public,
    /// The admin token (or open mode).
    Admin,
    /// A key of the route's project `{pid}`, the admin token, or (on a
    /// thread's `/events` and `/ws`, and its chat's streams) a stream token.
    Project,
}

/// What a route does, as far as access and its documented answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request and its answer.
    Plain,
    /// A live subscription to thread `{tid}` (SSE or WebSocket), or to
    /// the thread of a chat (`/chat/…`, whose handler checks a token once
    /// it knows the thread): a stream token of that thread opens it, and
    /// it counts against the caps on streams (429).
    Stream,
    /// Starts a generation: the message rate and generation caps (429), a
    /// running generation (409 `thread_busy`), no database or no free
    /// generation slot (503).
    Generate,
    /// Cancels the running generation: 409 `not_generating` when none runs.
    Cancel,
    /// Answers a call of an answer that awaits input: a stream token of
    /// thread `{tid}` is accepted (a tab in secured mode answers); 409
    /// `not_awaiting` or `tool_call_resolved`, 503 with no database.
    Answer,
    /// A project route for what may belong to one thread (push
    /// subscriptions): a stream token of that thread is accepted, and the
    /// handler checks that the thread it names (in the body, or in the
    /// stored resource) is the token's.
    ForThread,
    /// A file of the web page (`page::ASSETS`), embedded in the binary and
    /// served under the page's Content-Security-Policy. Always public.
    Asset,
}

impl Kind {
    /// Whether a stream token of the route's thread is accepted.
    pub fn takes_stream_tokens(self) -> bool {
        matches!(self, Kind::Stream | Kind::Answer | Kind::ForThread)
    }
}

/// One route of the service. The router is built from `routes()` alone,
/// and the tests walk the same list: every route is behind its access
/// check and its body guard, and is described in `/openapi.json`.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub body: BodyKind,
    pub kind: Kind,
    /// The handler, with no method guard: `configure` adds the guard from
    /// `method` (so the method is said once), and a GET's handler also
    /// answers HEAD (`ApiRoute::methods`).
    pub route: Route,
}

impl ApiRoute {
    /// The methods this route answers: its own, and HEAD beside a GET
    /// (RFC 9110 §9.3.2: HEAD is GET without the body; monitors and
    /// `curl -I` use it). HEAD is not a row of the table: it has no
    /// operation of its own in `/openapi.json`, where a GET implies it.
    pub fn methods(&self) -> Vec<Method> {
        if self.method == Method::GET {
            vec![Method::GET, Method::HEAD]
        } else {
            vec![self.method.clone()]
        }
    }
}

fn route(method: Method, path: &'static str, access: Access, body: BodyKind, kind: Kind, route: Route) -> ApiRoute {
    ApiRoute { method, path, access, body, kind, route }
}

/// Every route, in matching order.
pub fn routes() -> Vec<ApiRoute> {
    use Access::{Admin, Project, Public};
    use BodyKind::{Empty, Json, Upgrade};
    use Kind::{Answer, Asset, Cancel, ForThread, Generate, Plain, Stream};
    vec![
        route(Method::POST, "/v1/projects", Admin, Json, Plain, web::to(projects::create)),
        route(Method::GET, "/v1/projects/{pid}", Project, Empty, Plain, web::to(projects::get)),
        route(Method::POST, "/v1/projects/{pid}/threads", Project, Json, Plain, web::to(threads::create)),
        route(Method::GET, "/v1/projects/{pid}/threads", Project, Empty, Plain, web::to(threads::list)),
        route(Method::GET, "/v1/projects/{pid}/threads/{tid}", Project, Empty, Plain, web::to(threads::get)),
        route(Method::PATCH, "/v1/projects/{pid}/threads/{tid}", Project, Json, Plain, web::to(threads::update)),
        route(Method::DELETE, "/v1/projects/{pid}/threads/{tid}", Project, Empty, Plain, web::to(threads::delete)),
        route(
            Method::GET,
            "/v1/projects/{pid}/threads/{tid}/messages",
            Project,
            Empty,
            Plain,
            web::to(messages::history),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/threads/{tid}/messages",
            Project,
            Json,
            Generate,
            web::to(messages::post),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/threads/{tid}/cancel",
            Project,
            Empty,
            Cancel,
            web::to(messages::cancel),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/threads/{tid}/tool-results",
            Project,
            Json,
            Answer,
            web::to(tools::results),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/threads/{tid}/approvals",
            Project,
            Json,
            Answer,
            web::to(tools::approvals),
        ),
        route(Method::POST, "/v1/projects/{pid}/tool-secret", Project, Empty, Plain, web::to(secrets::rotate)),
        route(Method::POST, "/v1/projects/{pid}/mcp-servers", Project, Json, Plain, web::to(mcp_servers::add)),
        route(Method::GET, "/v1/projects/{pid}/mcp-servers", Project, Empty, Plain, web::to(mcp_servers::list)),
        route(
            Method::DELETE,
            "/v1/projects/{pid}/mcp-servers/{name}",
            Project,
            Empty,
            Plain,
            web::to(mcp_servers::remove),
        ),
        route(Method::POST, "/v1/projects/{pid}/webhooks", Project, Json, Plain, web::to(webhooks::add)),
        route(Method::GET, "/v1/projects/{pid}/webhooks", Project, Empty, Plain, web::to(webhooks::list)),
        route(Method::DELETE, "/v1/projects/{pid}/webhooks/{id}", Project, Empty, Plain, web::to(webhooks::remove)),
        route(
            Method::GET,
            "/v1/projects/{pid}/webhooks/{id}/deliveries",
            Project,
            Empty,
            Plain,
            web::to(webhooks::deliveries),
        ),
        route(
            Method::GET,
            "/v1/projects/{pid}/webhooks/{id}/deliveries/{did}",
            Project,
            Empty,
            Plain,
            web::to(webhooks::delivery),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/webhooks/{id}/deliveries/{did}/retry",
            Project,
            Empty,
            Plain,
            web::to(webhooks::retry),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/threads/{tid}/stream-token",
            Project,
            Empty,
            Plain,
            web::to(keys::stream_token),
        ),
        route(
            Method::GET,
            "/v1/projects/{pid}/threads/{tid}/events",
            Project,
            Empty,
            Stream,
            web::to(events::subscribe),
        ),
        route(Method::GET, "/v1/projects/{pid}/threads/{tid}/ws", Project, Upgrade, Stream, web::to(ws::subscribe)),
        route(Method::POST, "/v1/projects/{pid}/chat", Project, Json, Generate, web::to(chat::post::post)),
        route(Method::GET, "/v1/projects/{pid}/chat/ws", Project, Upgrade, Stream, web::to(chat::ws::socket)),
        route(Method::GET, "/v1/projects/{pid}/ws", Project, Upgrade, Stream, web::to(project_socket::socket)),
        route(
            Method::GET,
            "/v1/projects/{pid}/chat/{id}/stream",
            Project,
            Empty,
            Stream,
            web::to(chat::resume::stream),
        ),
        route(
            Method::POST,
            "/v1/projects/{pid}/chat/{id}/cancel",
            Project,
            Empty,
            Cancel,
            web::to(chat::resume::cancel),
        ),
        route(
            Method::POST,
            "/projects/{pid}/threads/{tid}/query/stream",
            Project,
            Json,
            Generate,
            web::to(events::seed_stream),
        ),
        route(Method::GET, "/v1/push/public-key", Public, Empty, Plain, web::to(push::public_key)),
        route(
            Method::POST,
            "/v1/projects/{pid}/push-subscriptions",
            Project,
            Json,
            ForThread,
            web::to(push::subscribe),
        ),
        route(
            Method::DELETE,
            "/v1/projects/{pid}/push-subscriptions/{id}",
            Project,
            Empty,
            ForThread,
            web::to(push::unsubscribe),
        ),
        route(Method::GET, "/admin/stats", Admin, Empty, Plain, web::to(admin::stats)),
        route(Method::GET, "/admin/threads", Admin, Empty, Plain, web::to(admin::threads)),
        route(Method::GET, "/admin/threads/{tid}", Admin, Empty, Plain, web::to(admin::thread)),
        route(Method::GET, "/admin/cluster", Admin, Empty, Plain, web::to(admin::cluster)),
        route(Method::DELETE, "/admin/threads/{tid}", Admin, Empty, Plain, web::to(admin::stop_thread)),
        route(Method::POST, "/admin/projects/{pid}/keys", Admin, Empty, Plain, web::to(keys::create)),
        route(Method::DELETE, "/admin/projects/{pid}/keys/{key_id}", Admin, Empty, Plain, web::to(keys::revoke)),
        route(Method::GET, "/metrics", Public, Empty, Plain, web::to(admin::metrics)),
        route(Method::GET, "/healthz", Public, Empty, Plain, web::to(admin::healthz)),
        route(Method::GET, "/readyz", Public, Empty, Plain, web::to(admin::readyz)),
        route(Method::GET, "/openapi.json", Public, Empty, Plain, web::to(openapi::spec)),
        route(Method::GET, "/docs", Public, Empty, Plain, web::to(openapi::docs)),
    ]
    .into_iter()
    .chain(page::ASSETS.iter().map(|a| route(Method::GET, a.path, Public, Empty, Asset, web::to(page::serve))))
    .collect()
}

/// Registers every route of `routes()`. Each route is behind its own body
/// guard, so a route that takes no body is held to the small allowance
/// even where another method of its path takes JSON. Routes of one path
/// share one resource (so a wrong method on a known path answers 405, its
/// body unread) and, outside the body guards, one access check.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(web::JsonConfig::default().limit(max_body).error_handler(json_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error));
    let mut paths: Vec<PathRoutes> = Vec::new();
    for r in routes() {
        let check = Check::of(&r);
        let methods = r.methods();
        // One route (handler and body guard) for all its methods: HEAD is
        // the GET's own handler, so its status and headers are the GET's;
        // actix-http writes no body for a HEAD. (A stream handler answers
        // a HEAD itself, before it opens anything: actix-http would still
        // drain a streaming body to its end.)
        let guard = methods[1..]
            .iter()
            .fold(guard::Any(guard::Method(r.method.clone())), |any, m| any.or(guard::Method(m.clone())));
        let route = r.route.guard(guard);
        let route = match r.body {
            BodyKind::Json => route.wrap(from_fn(body::json)),
            BodyKind::Empty => route.wrap(from_fn(body::empty)),
            BodyKind::Upgrade => route,
        };
        match paths.iter_mut().find(|p| p.path == r.path) {
            Some(p) => {
                assert_eq!(p.check, check, "routes of {} must share their access", r.path);
                p.methods.extend(methods);
                p.resource = std::mem::replace(&mut p.resource, web::resource(r.path)).route(route);
            }
            None => {
                paths.push(PathRoutes { path: r.path, check, methods, resource: web::resource(r.path).route(route) })
            }
        }
    }
    for PathRoutes { check, methods, resource, .. } in paths {
        let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        let resource = resource.default_service(web::to(move || method_not_allowed(allow.clone())));
        match check {
            Check::Public => cfg.service(resource),
            Check::Admin => cfg.service(resource.wrap(from_fn(auth::admin_only))),
            Check::Project => cfg.service(resource.wrap(from_fn(auth::project_access))),
            Check::Stream => cfg.service(resource.wrap(from_fn(auth::stream_access))),
            Check::ChatStream => cfg.service(resource.wrap(from_fn(auth::chat_stream_access))),
        };
    }
    cfg.default_service(web::to(not_found));
}

/// The routes of one path, gathered into one resource.
struct PathRoutes {
    path: &'static str,
    check: Check,
    methods: Vec<Method>,
    resource: Resource,
}

/// The access check of a path: its routes' `Access`, and for a thread's
/// streams also its stream tokens (for a chat's or the project socket,
/// any thread's, which its handler checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Public,
    Admin,
    Project,
    Stream,
    ChatStream,
}

impl Check {
    fn of(r: &ApiRoute) -> Check {
        match (r.access, r.kind) {
            (Access::Project, Kind::Stream | Kind::Answer) if r.path.contains("{tid}") => Check::Stream,
            (Access::Project, Kind::Stream) => {
                let many = r.path.contains("/chat/") || r.path == "/v1/projects/{pid}/ws";
                assert!(many, "stream route {} must name its thread, its chat, or be the project socket", r.path);
                Check::ChatStream
            }
            (_, Kind::Stream) => panic!("stream route {} must take project access", r.path),
            // (Any thread's token: the handler checks which.)
            (Access::Project, Kind::ForThread) => Check::ChatStream,
            (_, Kind::ForThread) => panic!("route {} must take project access", r.path),
            (Access::Public, Kind::Asset) => Check::Public,
            (_, Kind::Asset) => panic!("page file {} must be public", r.path),
            (Access::Public, _) => Check::Public,
            (Access::Admin, _) => Check::Admin,
            (Access::Project, _) => Check::Project,
        }
    }
}

/// 405 with the `Allow` header RFC 9110 asks for.
async fn method_not_allowed(allow: String) -> HttpResponse {
    let error = ApiError::new(Code::MethodNotAllowed, format!("this path takes {allow}"));
    let mut response = actix_web::ResponseError::error_response(&error);
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(Code::NotFound, format!("no route for {} {}", req.method(), req.path())))
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::ContentType => {
            ApiError::new(Code::UnsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
        }
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::new(Code::PayloadTooLarge, format!("the body is larger than {limit} bytes"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request(format!("invalid JSON body: {e}")),
        other => ApiError::bad_request(format!("unreadable body: {other}")),
    };
    api.into()
}

fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid id in path: {err}")).into()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query string: {err}")).into()
}

/// Rewrites any error answer that is not already JSON (405 from a route
/// with another method, 408 from a slow client, ...) into the contract's
/// shape.
pub fn error_shape<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let code = Code::for_status(status.as_u16());
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        let (req, _) = res.into_parts();
        let body = ApiError::new(code, message).body();
        let response = HttpResponse::build(status).insert_header((header::CONTENT_TYPE, "application/json")).body(body);
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
    })
}

/// CORS for the allowed origins. `*` allows any origin but never with
/// credentials; an empty list allows no cross-origin browser calls. The
/// headers a client reads are exposed (`Retry-After`).
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        // What a page of another origin reads of an answer: when to try
        // again after a 429 or 503, and the AI SDK's stream marker.
        .expose_headers([header::RETRY_AFTER, header::HeaderName::from_static(crate::domain::ui_stream::HEADER.0)])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin();
    }
    origins.iter().fold(cors, |cors, o| cors.allowed_origin(o))
}

/// Page-size query parameters share one clamp.
pub fn clamp_limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request("`limit` must be at least 1")),
        Some(n) if n > max => Err(ApiError::bad_request(format!("`limit` must be at most {max}"))),
        Some(n) => Ok(n),
    }
}
