//! The web page and the browser client, served by the service itself:
//! plain HTML, CSS and JavaScript modules from `src/web/`, embedded in the
//! binary (no build step, nothing fetched from another host).
//!
//! Every file is one route of the route table (`Kind::Asset`, public), and
//! every answer carries a Content-Security-Policy that allows only this
//! origin: no inline script or style, no other host, no framing. The page
//! inserts text as text, never as HTML; the policy is the second wall.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::AppState;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub description: &'static str,
    body: &'static str,
}

/// The page's files. `/client/convo.js` is a stable path: other pages of
/// this origin import it (see README, Browser client). It is the entry of
/// the client's modules, each served next to it under `/client/`, which it
/// and the shared worker import by relative path: every module of the
/// directory must be listed here.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        description: "The web page: threads, live answers, the operators' view \
            (`/#/projects/{pid}/threads/{tid}` is a thread's page)",
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's script (a JavaScript module)",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "/dom.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's DOM helpers (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/dom.js"),
    },
    Asset {
        path: "/tool-cards.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's tool call cards with Approve and Deny (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/tool-cards.js"),
    },
    Asset {
        path: "/message-actions.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's Copy, Retry, Regenerate and Edit on messages \
            (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/message-actions.js"),
    },
    Asset {
        path: "/titles.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's thread titles: rename in place, thread lists kept current across tabs \
            (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/titles.js"),
    },
    Asset {
        path: "/markdown-view.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's Markdown view of an answer, rendered as it streams \
            (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/markdown-view.js"),
    },
    Asset {
        path: "/notify.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's Notify me toggle: Web Push for one thread \
            (a JavaScript module imported by `/app.js`)",
        body: include_str!("../web/notify.js"),
    },
    Asset {
        path: "/sw.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The page's service worker (scope `/`): shows Web Push notifications, \
            and opens their thread when clicked",
        body: include_str!("../web/sw.js"),
    },
    Asset {
        path: "/vendor/markdown-it/markdown-it.esm.min.mjs",
        content_type: "text/javascript; charset=utf-8",
        description: "markdown-it 15.0.3, vendored (MIT; see src/web/vendor/README.md)",
        body: include_str!("../web/vendor/markdown-it/markdown-it.esm.min.mjs"),
    },
    Asset {
        path: "/vendor/dompurify/purify.es.mjs",
        content_type: "text/javascript; charset=utf-8",
        description: "DOMPurify 3.5.0, vendored (Apache-2.0 or MPL-2.0; see src/web/vendor/README.md)",
        body: include_str!("../web/vendor/dompurify/purify.es.mjs"),
    },
    Asset {
        path: "/vendor/highlight.js/highlight.es.min.js",
        content_type: "text/javascript; charset=utf-8",
        description: "highlight.js 11.12.0, common languages, vendored (BSD-3-Clause; see src/web/vendor/README.md)",
        body: include_str!("../web/vendor/highlight.js/highlight.es.min.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        description: "The page's style sheet",
        body: include_str!("../web/style.css"),
    },
    Asset {
        path: "/client/convo.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client (a JavaScript module): typed events, resume by cursor, \
            stream tokens, one shared WebSocket per project for all threads and tabs",
        body: include_str!("../web/client/convo.js"),
    },
    Asset {
        path: "/client/api.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's REST API (`Api`, `ApiError`), imported by `/client/convo.js`",
        body: include_str!("../web/client/api.js"),
    },
    Asset {
        path: "/client/project-socket.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's project socket (`ProjectSocket`, `Channel`): every watched thread of \
            a project on one WebSocket, imported by `/client/convo.js`",
        body: include_str!("../web/client/project-socket.js"),
    },
    Asset {
        path: "/client/transcript.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's `Transcript`: messages rebuilt from deltas by UTF-8 byte offset",
        body: include_str!("../web/client/transcript.js"),
    },
    Asset {
        path: "/client/sse.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's reader of Server-Sent Events from a fetch body",
        body: include_str!("../web/client/sse.js"),
    },
    Asset {
        path: "/client/stream.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's `Stream`: one subscription with resume, stream tokens and a stall watchdog",
        body: include_str!("../web/client/stream.js"),
    },
    Asset {
        path: "/client/hub.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's `Hub`: one stream and transcript per thread for every tab",
        body: include_str!("../web/client/hub.js"),
    },
    Asset {
        path: "/client/rpc.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's call/reply channel between tabs and the shared worker",
        body: include_str!("../web/client/rpc.js"),
    },
    Asset {
        path: "/client/client.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's tab side: `connect()` and `Client`",
        body: include_str!("../web/client/client.js"),
    },
    Asset {
        path: "/client/convo-worker.js",
        content_type: "text/javascript; charset=utf-8",
        description: "The browser client's shared worker, which holds one connection per thread for every tab",
        body: include_str!("../web/client/convo-worker.js"),
    },
];

/// Only this origin: scripts, styles, workers, connections (`'self'`
/// covers `ws:`/`wss:` of the same host). `data:` images for the icon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// What `index.html` is told of this server: the heartbeat period, which
/// the client's stall watchdog needs (twice it without a byte: reconnect),
/// whether callers need a key (an admin token is configured), and whether
/// Web Push is on (so the page asks for the VAPID key only then).
fn render_index(body: &str, state: &AppState) -> String {
    let heartbeat = state.deps.settings.streaming.heartbeat().as_millis();
    body.replace("{{heartbeat_ms}}", &heartbeat.to_string())
        .replace("{{secured}}", if state.auth.is_open() { "false" } else { "true" })
        .replace("{{push}}", if state.push.is_some() { "true" } else { "false" })
}

/// The asset served at `path`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET` of any asset: the route's own path names the file.
pub async fn serve(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(asset) = req.match_pattern().as_deref().and_then(asset) else {
        return HttpResponse::NotFound().finish();
    };
    let body = if asset.path == "/" { render_index(asset.body, &state) } else { asset.body.to_owned() };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Always revalidated: the files change with the binary.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
