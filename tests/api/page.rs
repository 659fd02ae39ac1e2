//! The web page as the service serves it: every file of the page's table
//! answers with its type, a Content-Security-Policy that allows only this
//! origin and `nosniff`; the page needs no key to load (it asks for one);
//! nothing in it names another host. What it does in a browser is tested
//! in `tests/browser/`.

use convo::http::{
    page::{ASSETS, CONTENT_SECURITY_POLICY},
    routes, Kind,
};

use crate::{access::ADMIN, support::Server};

#[actix_web::test]
async fn every_page_file_is_served_same_origin_only_under_the_policy() {
    let server = Server::temp(&["--heartbeat-ms", "1234"]).await;
    let c = &server.client;
    let routed: Vec<&str> = routes().iter().filter(|r| r.kind == Kind::Asset).map(|r| r.path).collect();
    assert_eq!(routed, ASSETS.iter().map(|a| a.path).collect::<Vec<_>>(), "each file is a route");
    // The stable paths other pages load, then every file, the client's
    // modules included: each one is checked as the page itself is.
    for stable in ["/", "/app.js", "/style.css", "/client/convo.js", "/client/convo-worker.js"] {
        assert!(routed.contains(&stable), "{stable} is served");
    }
    for path in routed {
        let r = c.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let expected_type = match path.rsplit('.').next() {
            Some("js" | "mjs") => "text/javascript",
            Some("css") => "text/css",
            _ => "text/html",
        };
        assert!(header("content-type").starts_with(expected_type), "{path}: {}", header("content-type"));
        assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let body = r.text().await.unwrap();
        // Vendored libraries (pinned, their sums in src/web/vendor/README.md)
        // carry URLs in comments, and the sanitiser parses HTML by design:
        // the policy above is their wall. The page's own files insert no
        // HTML and name no other host.
        if path.starts_with("/vendor/") {
            continue;
        }
        assert!(!body.contains("://"), "{path} names no other host");
        assert!(!body.contains("innerHTML") && !body.contains("insertAdjacentHTML"), "{path} inserts no HTML");
    }
    // The policy allows this origin and nothing else: no inline code.
    for directive in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline") && !CONTENT_SECURITY_POLICY.contains('*'));

    let index = c.get(format!("{}/", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(index.contains(r#"<meta name="convo-heartbeat-ms" content="1234">"#), "the watchdog's period");
    assert!(index.contains(r#"<meta name="convo-secured" content="false">"#));
    assert!(index.contains(r#"<meta name="convo-push" content="false">"#), "push is off without --vapid-subject");
    assert!(!index.contains("<script>") && !index.contains("style="), "no inline script or style");
    assert!(index.contains(r#"<script type="module" src="/app.js">"#));
}

#[actix_web::test]
async fn a_secured_service_serves_the_page_to_anyone_and_tells_it_to_ask_for_a_key() {
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let r = server.client.get(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"<meta name="convo-secured" content="true">"#));
    let r = server.client.get(format!("{}/client/convo.js", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // …while the API behind it still needs the key.
    let r = server.client.post(format!("{}/v1/projects", server.base)).json(&serde_json::json!({"name": "x"}));
    assert_eq!(r.send().await.unwrap().status(), 401);
}

#[actix_web::test]
async fn the_page_may_open_websockets_on_its_own_origin_and_other_sites_may_not() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error};
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let url = format!("{}{thread}/ws", server.base.replace("http://", "ws://"));
    let upgrade = |origin: String| {
        let mut req = url.clone().into_client_request().unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    let (_, resp) = upgrade(server.base.clone()).await.expect("the service's own origin upgrades");
    assert_eq!(resp.status(), 101);
    let port = server.base.rsplit(':').next().unwrap();
    for foreign in [format!("http://evil.example:{port}"), format!("https://{}", &server.base[7..])] {
        match upgrade(foreign.clone()).await {
            Err(Error::Http(resp)) => assert_eq!(resp.status(), 403, "{foreign}"),
            other => panic!("{foreign} was let in: {:?}", other.map(|(_, r)| r.status())),
        }
    }
}
