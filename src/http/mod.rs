//! The HTTP face of the service: routes of `API.md`, and the error
//! handlers that make even actix's own refusals (bad JSON, wrong content
//! type, unknown route, malformed id) answer in the contract's shape.
//! Handlers are thin: they validate, ask the store or an actor, and map
//! the answer. Only `events.rs` and `ws.rs` know SSE and WebSocket framing.

pub mod admin;
pub mod events;
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
    middleware::{ErrorHandlerResponse, ErrorHandlers},
    web, HttpRequest, HttpResponse,
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
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(web::JsonConfig::default().limit(max_body).error_handler(json_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(
            web::scope("/v1/projects")
                .service(web::resource("").post(projects::create))
                .service(web::resource("/{pid}").get(projects::get))
                .service(web::resource("/{pid}/threads").post(threads::create).get(threads::list))
                .service(web::resource("/{pid}/threads/{tid}").get(threads::get).delete(threads::delete))
                .service(web::resource("/{pid}/threads/{tid}/messages").get(messages::history).post(messages::post))
                .service(web::resource("/{pid}/threads/{tid}/cancel").post(messages::cancel))
                .service(web::resource("/{pid}/threads/{tid}/events").get(events::subscribe))
                .service(web::resource("/{pid}/threads/{tid}/ws").get(ws::subscribe)),
        )
        .service(web::resource("/projects/{pid}/threads/{tid}/query/stream").post(events::seed_stream))
        .service(web::resource("/admin/stats").get(admin::stats))
        .service(web::resource("/admin/threads").get(admin::threads))
        .service(web::resource("/admin/threads/{tid}").get(admin::thread).delete(admin::stop_thread))
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

/// Page-size query parameters share one clamp.
pub fn clamp_limit(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request("`limit` must be at least 1")),
        Some(n) if n > max => Err(ApiError::bad_request(format!("`limit` must be at most {max}"))),
        Some(n) => Ok(n),
    }
}
