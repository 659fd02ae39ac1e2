//! The API description: every route of the router is in `/openapi.json`
//! (and nothing else is), every operation names its error answers in the
//! contract's shape and the credentials its route's access needs (which
//! the server then asks for), and `/docs` needs nothing from outside the
//! service.

use std::collections::{BTreeMap, BTreeSet};

use convo::http::{routes, Access, Kind};
use serde_json::{json, Map, Value};

use crate::support::Server;

/// The name under which `components.securitySchemes` holds the scheme
/// that `is` picks out.
fn scheme_name(spec: &Value, is: impl Fn(&Value) -> bool) -> String {
    let schemes = spec["components"]["securitySchemes"].as_object().expect("security schemes");
    let names: Vec<&String> = schemes.iter().filter(|(_, s)| is(s)).map(|(name, _)| name).collect();
    assert_eq!(names.len(), 1, "one such scheme in {schemes:?}");
    names[0].clone()
}

/// The bearer scheme: a project key or the admin token.
fn bearer_scheme(spec: &Value) -> String {
    scheme_name(spec, |s| s["type"] == "http" && s["scheme"] == "bearer")
}

/// The stream-token scheme: `?token=`.
fn token_scheme(spec: &Value) -> String {
    scheme_name(spec, |s| s["type"] == "apiKey" && s["in"] == "query" && s["name"] == "token")
}

/// The schemes an operation accepts (any one of its requirements), or
/// `None` when it declares no security.
fn schemes_of(op: &Value) -> Option<BTreeSet<String>> {
    let requirements = op["security"].as_array()?;
    Some(requirements.iter().flat_map(|r| r.as_object().map(Map::keys).into_iter().flatten().cloned()).collect())
}

#[actix_web::test]
async fn every_route_of_the_router_is_described_and_the_docs_page_is_self_contained() {
    let server = Server::temp(&[]).await;
    let r = server.client.get(format!("{}/openapi.json", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let spec: Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));

    let table: BTreeMap<(String, String), (Access, Kind)> = routes()
        .into_iter()
        .map(|r| ((r.method.as_str().to_lowercase(), r.path.to_owned()), (r.access, r.kind)))
        .collect();
    let routed: BTreeSet<(String, String)> = table.keys().cloned().collect();
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

    // Every operation: a unique id, error answers in the contract's shape,
    // and the credentials its route's access needs: none, or a key or the
    // admin token, and on a thread's streams also a stream token.
    let (bearer, token) = (bearer_scheme(&spec), token_scheme(&spec));
    let mut ids = BTreeSet::new();
    for (method, path) in &described {
        let op = &spec["paths"][path][method];
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "duplicate operationId at {method} {path}");
        let default = &op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(default, "#/components/schemas/Error", "{method} {path}");
        let (access, kind) = table[&(method.clone(), path.clone())];
        let expected = match access {
            Access::Public => None,
            Access::Admin | Access::Project => {
                let mut names = BTreeSet::from([bearer.clone()]);
                if kind.takes_stream_tokens() {
                    names.insert(token.clone());
                }
                Some(names)
            }
        };
        assert_eq!(schemes_of(op), expected, "{method} {path} ({access:?}, {kind:?}) security");
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

/// What the description says each operation needs is what the server asks
/// for: without credentials, exactly the operations that declare security
/// answer 401; a stream token opens exactly those that list its scheme.
#[actix_web::test]
async fn each_operation_asks_for_the_credentials_its_description_names() {
    use crate::access::ADMIN;
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let c = &server.client;
    let spec: Value = c.get(format!("{}/openapi.json", server.base)).send().await.unwrap().json().await.unwrap();
    let token_scheme = token_scheme(&spec);
    let admin_post = |path: String, body: Value| {
        let request = c.post(format!("{}{path}", server.base)).bearer_auth(ADMIN).json(&body);
        async move {
            let r = request.send().await.unwrap();
            assert!(r.status().is_success(), "POST {path}: {}", r.status());
            r.json::<Value>().await.unwrap()
        }
    };
    let pid = admin_post("/v1/projects".into(), json!({"name": "p"})).await["id"].as_str().unwrap().to_owned();
    let tid = admin_post(format!("/v1/projects/{pid}/threads"), json!({})).await["id"].as_str().unwrap().to_owned();
    let minted = admin_post(format!("/v1/projects/{pid}/threads/{tid}/stream-token"), json!({})).await;
    let token = minted["token"].as_str().unwrap().to_owned();
    let key_id = uuid::Uuid::now_v7().to_string();

    let mut opened_by_token = Vec::new();
    for route in routes() {
        let op = &spec["paths"][route.path][route.method.as_str().to_lowercase()];
        let schemes = schemes_of(op);
        let path = route.path.replace("{pid}", &pid).replace("{tid}", &tid).replace("{key_id}", &key_id);
        let url = format!("{}{path}", server.base);
        let send = |query: String| {
            c.request(route.method.as_str().parse().unwrap(), format!("{url}{query}")).json(&json!({})).send()
        };
        let anonymous = send(String::new()).await.unwrap().status();
        assert_eq!(anonymous == 401, schemes.is_some(), "{} {path} without credentials: {anonymous}", route.method);
        let with_token = send(format!("?token={token}")).await.unwrap().status();
        let listed = schemes.as_ref().is_none_or(|s| s.contains(&token_scheme));
        assert_eq!(with_token != 401, listed, "{} {path} with a stream token: {with_token}", route.method);
        if schemes.is_some() && listed {
            opened_by_token.push(route.path);
        }
    }
    assert!(!opened_by_token.is_empty(), "a stream token opens some stream");
}
