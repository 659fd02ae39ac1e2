//! Plain HTTP/1.1, the default listener.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::dev::Server;

use super::{socket_options, Serving, H1_WRITE_BUFFER};
use crate::shutdown::linger::Lingering;

/// Plain HTTP/1.1 on `listener`, served by actix-http's HTTP/1 service
/// alone. `HttpServer::listen` would serve it through the service that
/// also speaks HTTP/2, whose per-connection future carries the HTTP/2
/// states too: each idle subscriber's connection held that memory for
/// nothing. The settings (those of HTTP/1.1 over TLS too, `crate::serve`):
/// - a client that closes its side is gone (`h1_allow_half_closed(false)`):
///   a browser never half-closes, and a stream kept writing to a closed
///   peer held its places (subscriber and connection caps, presence)
///   until a heartbeat write failed;
/// - actix takes frames from a subscriber's pipe into its own write
///   buffer only up to `H1_WRITE_BUFFER` while the socket is full, so the
///   pipe (which a closing event can jump) is where a slow reader's
///   backlog waits;
/// - idle keep-alive connections close at shutdown (the graceful signal);
/// - every connection is `Lingering`: at a shutdown it closes only once
///   its peer has read everything and closed too (or the grace ends).
pub(crate) fn plain_http1<F, I, S, B>(app: F, listener: TcpListener, serving: &Serving) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_service::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    use actix_service::ServiceFactoryExt as _;
    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let on_connect = Arc::new(socket_options(serving.send_buffer, serving.nodelay));
    let request_timeout = serving.request_timeout;
    let shutdown = serving.shutdown.clone();
    let server = builder
        .workers(serving.workers)
        .disable_signals()
        .shutdown_timeout(serving.grace.as_secs().max(1))
        .listen("convo-http", listener, move || {
            let graceful = graceful.clone();
            let lingering = shutdown.clone();
            let on_connect = on_connect.clone();
            let app = app().into_factory().map_err(|e| e.into().error_response());
            let h1 = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(false)
                .h1_write_buffer_size(H1_WRITE_BUFFER)
                .local_addr(addr)
                .on_connect_ext(move |io: &Lingering<actix_web::rt::net::TcpStream>, ext| {
                    (on_connect)(io.get_ref() as &dyn std::any::Any, ext)
                })
                // (`AppConfig::default` names localhost:8080, not this
                // listener: nothing here reads it; `AppConfig::new` is
                // private to actix-web.)
                .h1(actix_service::map_config(app, |_| actix_web::dev::AppConfig::default()));
            actix_service::fn_service(move |io: actix_web::rt::net::TcpStream| {
                let peer = io.peer_addr().ok();
                std::future::ready(Ok::<_, actix_http::error::DispatchError>((Lingering::new(io, &lingering), peer)))
            })
            .and_then(h1)
        })?
        .run();
    Ok(server)
}
