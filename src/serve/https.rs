//! HTTPS (`--tls-cert`, `--tls-key`), on actix-server: each connection
//! gets its socket options, its TLS handshake (rustls, see `crate::tls`),
//! then the protocol its client chose by ALPN:
//! - `h2`: HTTP/2 served by hyper, with this service's limits on what one
//!   connection may hold (`h2`), each request bridged to the app
//!   (`bridge`);
//! - `http/1.1`, or none: actix-http's HTTP/1 service, with the settings
//!   of the plain listener (`plain`); WebSockets come this way.
//!
//! Both hand requests to one instance of the actix-web app per worker.
//! actix-web's own HTTPS (`HttpServer::listen_rustls_0_23`) served HTTP/2
//! with actix-http's, which builds its h2 server itself and sets no limit
//! on streams, send buffers or resets: one connection could hold any
//! amount of memory.

use std::{future::Future, net::SocketAddr, net::TcpListener, rc::Rc, time::Duration};

use actix_http::{body::BoxBody, Request, Response};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{
    boxed::{BoxService, BoxServiceFactory},
    fn_factory, fn_service, IntoServiceFactory, Service, ServiceExt, ServiceFactory, ServiceFactoryExt as _,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::{dev::AppConfig, rt::net::TcpStream};
use futures_util::future::{ready, LocalBoxFuture};

use super::h2::{self, H2Limits};
use super::{set_socket_options, Serving, H1_WRITE_BUFFER};
use crate::shutdown::{linger::Lingering, Shutdown};

/// An accepted connection once its TLS handshake is done; under TLS it is
/// counted, and lingers at a shutdown (`shutdown::linger`).
pub(crate) type Conn = TlsStream<Lingering<TcpStream>>;

/// One worker's instance of the app, shared by its HTTP/1.1 and HTTP/2
/// connections; its errors are already responses.
pub(super) type App = Rc<BoxService<Request, Response<BoxBody>, Response<BoxBody>>>;

/// HTTPS on `listener`: HTTP/2 or HTTP/1.1 by ALPN (see the module doc).
pub(crate) fn https<F, I, S, B>(
    app: F,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    serving: &Serving,
    limits: H2Limits,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let builder = actix_server::Server::build();
    let worker = Worker {
        // (The TLS handshake must end within actix-tls's default, 3 s.)
        acceptor: Acceptor::new(tls),
        shutdown: builder.graceful_shutdown_signal(),
        local: listener.local_addr()?,
        request_timeout: serving.request_timeout,
        send_buffer: serving.send_buffer,
        nodelay: serving.nodelay,
        limits,
        lingering: serving.shutdown.clone(),
    };
    let server = builder
        .workers(serving.workers)
        .disable_signals()
        .shutdown_timeout(serving.grace.as_secs().max(1))
        .listen("convo-https", listener, move || {
            let (app, worker) = (boxed(app()), worker.clone());
            fn_factory(move || worker.clone().start(app.new_service(())))
        })?
        .run();
    Ok(server)
}

/// The app as one boxed factory: its responses with boxed bodies, its
/// errors turned into responses.
fn boxed<I, S, B>(app: I) -> BoxServiceFactory<(), Request, Response<BoxBody>, Response<BoxBody>, ()>
where
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    // (`AppConfig::default` names localhost:8080, not this listener:
    // nothing reads it, as on the plain listener.)
    let app = actix_service::map_config(app.into_factory(), |()| AppConfig::default())
        .map(|response| Into::<Response<B>>::into(response).map_into_boxed_body())
        .map_err(|e| Response::from(e.into().error_response()))
        .map_init_err(|e| tracing::error!(error = ?e, "the app did not start"));
    actix_service::boxed::factory(app)
}

/// What a worker needs to start serving.
#[derive(Clone)]
struct Worker {
    acceptor: Acceptor,
    shutdown: GracefulShutdownSignal,
    local: SocketAddr,
    request_timeout: Duration,
    send_buffer: usize,
    nodelay: bool,
    limits: H2Limits,
    lingering: std::sync::Arc<Shutdown>,
}

impl Worker {
    /// The worker's service, once its app has started: socket options,
    /// TLS handshake, then HTTP/2 or HTTP/1.1.
    async fn start(
        self,
        app: impl Future<Output = Result<BoxService<Request, Response<BoxBody>, Response<BoxBody>>, ()>>,
    ) -> Result<impl Service<TcpStream, Response = (), Error = ()>, ()> {
        let app: App = Rc::new(app.await?);
        let tls = ServiceFactory::<Lingering<TcpStream>>::new_service(&self.acceptor, ()).await?;
        let h1 = Rc::new(self.http1(&app).new_service(()).await?);
        let h2 = Rc::new(h2::Http2::new(self.limits, self.shutdown));
        let (send_buffer, nodelay, lingering) = (self.send_buffer, self.nodelay, self.lingering.clone());
        let options = fn_service(move |tcp: TcpStream| {
            set_socket_options(&tcp, send_buffer, nodelay);
            ready(Ok::<_, ()>(Lingering::new(tcp, &lingering)))
        });
        let handshake = tls.map_err(|e| tracing::debug!(error.message = ?e, "TLS handshake failed"));
        let serve = fn_service(move |io: Conn| -> LocalBoxFuture<'static, Result<(), ()>> {
            let peer = io.get_ref().0.get_ref().peer_addr().ok();
            if io.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2) {
                let (h2, app) = (h2.clone(), app.clone());
                Box::pin(async move {
                    h2.serve(io, app, peer).await;
                    Ok(())
                })
            } else {
                let h1 = h1.clone();
                Box::pin(async move {
                    if let Err(e) = h1.call((io, peer)).await {
                        tracing::debug!(error.message = %e, "HTTP/1.1 connection ended");
                    }
                    Ok(())
                })
            }
        });
        Ok(ServiceExt::and_then(options, handshake).and_then(serve))
    }

    /// HTTP/1.1 over TLS, as the plain listener serves it
    /// (`startup::plain_http1`).
    fn http1(
        &self,
        app: &App,
    ) -> impl ServiceFactory<
        (Conn, Option<SocketAddr>),
        Config = (),
        Response = (),
        Error = actix_http::error::DispatchError,
        InitError = (),
    > {
        let shutdown = self.shutdown.clone();
        let app = app.clone();
        actix_http::HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .client_request_timeout(self.request_timeout)
            .client_disconnect_timeout(Duration::from_secs(1))
            .h1_allow_half_closed(false)
            .h1_write_buffer_size(H1_WRITE_BUFFER)
            .local_addr(self.local)
            .secure()
            .h1(fn_factory(move || ready(Ok::<_, ()>(app.clone()))))
    }
}
