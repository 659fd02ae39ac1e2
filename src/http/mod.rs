//! The HTTP face of the service: routes of `API.md`, and the error
//! handlers that make even actix's own refusals (bad JSON, wrong content
//! type, unknown route, malformed id) answer in the contract's shape.
//! Handlers are thin: they validate, ask the store or an actor, and map
//! the answer. Only `events.rs` and `ws.rs` know SSE and WebSocket framing.

pub mod admin;
pub mod auth;
pub mod events;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod messages;
pub mod projects;
pub mod threads;
pub mod ws;

use std::sync::Arc;

use actix::Addr;
use actix_web::{
    dev::ServiceResponse,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::header,
    http::Method,
    middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers},
    web, HttpRequest, HttpResponse, Resource, Route,
};

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
    pub post_limiter: limits::PostLimiter,
}

/// Every route under `/v1/projects/{pid}`, as (method, path, handler). The
/// router is built from this list and the access tests walk it, so no
/// route can escape the project check.
pub fn project_routes() -> Vec<(Method, &'static str, Route)> {
    vec![
        (Method::GET, "", web::get().to(projects::get)),
        (Method::POST, "/threads", web::post().to(threads::create)),
        (Method::GET, "/threads", web::get().to(threads::list)),
        (Method::GET, "/threads/{tid}", web::get().to(threads::get)),
        (Method::DELETE, "/threads/{tid}", web::delete().to(threads::delete)),
        (Method::GET, "/threads/{tid}/messages", web::get().to(messages::history)),
        (Method::POST, "/threads/{tid}/messages", web::post().to(messages::post)),
        (Method::POST, "/threads/{tid}/cancel", web::post().to(messages::cancel)),
        (Method::POST, "/threads/{tid}/stream-token", web::post().to(keys::stream_token)),
        (Method::GET, "/threads/{tid}/events", web::get().to(events::subscribe)),
        (Method::GET, "/threads/{tid}/ws", web::get().to(ws::subscribe)),
    ]
}

/// Groups routes of one path into one resource, so a wrong method on a
/// known path answers 405.
fn resources(routes: Vec<(Method, &'static str, Route)>) -> Vec<Resource> {
    let mut out: Vec<(&'static str, Resource)> = Vec::new();
    for (_, path, route) in routes {
        match out.iter().position(|(p, _)| *p == path) {
            Some(i) => {
                let (p, resource) = out.remove(i);
                out.insert(i, (p, resource.route(route)));
            }
            None => out.push((path, web::resource(path).route(route))),
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(web::JsonConfig::default().limit(max_body).error_handler(json_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(web::resource("/v1/projects").wrap(from_fn(auth::admin_only)).post(projects::create))
        .service(
            resources(project_routes())
                .into_iter()
                .fold(web::scope("/v1/projects/{pid}").wrap(from_fn(auth::project_access)), |scope, r| {
                    scope.service(r)
                }),
        )
        .service(
            web::scope("/projects/{pid}")
                .wrap(from_fn(auth::project_access))
                .service(web::resource("/threads/{tid}/query/stream").post(events::seed_stream)),
        )
        .service(
            web::scope("/admin")
                .wrap(from_fn(auth::admin_only))
                .service(web::resource("/stats").get(admin::stats))
                .service(web::resource("/threads").get(admin::threads))
                .service(web::resource("/threads/{tid}").get(admin::thread).delete(admin::stop_thread))
                .service(web::resource("/projects/{pid}/keys").post(keys::create))
                .service(web::resource("/projects/{pid}/keys/{key_id}").delete(keys::revoke)),
        )
        .service(web::resource("/metrics").get(admin::metrics))
        .service(web::resource("/healthz").get(admin::healthz))
        .service(web::resource("/readyz").get(admin::readyz))
        .default_service(web::to(not_found));
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
        let code = Code::for_status(status);
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        let (req, _) = res.into_parts();
        let body = ApiError::new(code, message).body();
        let response = HttpResponse::build(status).insert_header((header::CONTENT_TYPE, "application/json")).body(body);
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
    })
}

/// CORS for the allowed origins. `*` allows any origin but never with
/// credentials; an empty list allows no cross-origin browser calls.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
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
