//! The API description: every route of the router is in `/openapi.json`
//! (and nothing else is), every operation names its error answers in the
//! contract's shape, and `/docs` needs nothing from outside the service.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{database_url, Server};

#[actix_web::test]
async fn every_route_of_the_router_is_described_and_the_docs_page_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&database_url(dir.path()).await, &[]).await;
    let r = server.client.get(format!("{}/openapi.json", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let spec: Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));

    let routed: BTreeSet<(String, String)> =
        convo::http::routes().into_iter().map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned())).collect();
    let described: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().filter(|k| k.as_str() != "parameters").map(|m| (m.clone(), path.clone()))
        })
        .collect();
    let missing: Vec<_> = routed.difference(&described).collect();
    assert!(missing.is_empty(), "routes missing from /openapi.json: {missing:?}");
    let extra: Vec<_> = described.difference(&routed).collect();
    assert!(extra.is_empty(), "described but not routed: {extra:?}");

    // Every operation: a unique id, and error answers in the contract's shape.
    let mut ids = BTreeSet::new();
    for (method, path) in &described {
        let op = &spec["paths"][path][method];
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "duplicate operationId at {method} {path}");
        let default = &op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(default, "#/components/schemas/Error", "{method} {path}");
        let public = ["/metrics", "/healthz", "/readyz", "/openapi.json", "/docs"].contains(&path.as_str());
        assert_eq!(op["security"].is_array(), !public, "{method} {path} security");
    }
    let codes = &spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in ["bad_request", "unauthorized", "not_found", "thread_busy", "payload_too_large", "rate_limited"] {
        assert!(codes.as_array().unwrap().iter().any(|c| c == code), "{code} in the error schema");
    }

    let docs = server.client.get(format!("{}/docs", server.base)).send().await.unwrap();
    assert!(docs.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = docs.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(!html.contains("://"), "the docs page loads nothing from another host");
}
