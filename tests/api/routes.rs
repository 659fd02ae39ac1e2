//! The route table as a client meets it: every route is held to its own
//! body limit, also where another method of its path takes a larger body.

use serde_json::json;

use crate::support::{database_url, error_code, Server};

#[actix_web::test]
async fn a_get_is_held_to_its_small_body_limit_where_the_post_of_its_path_takes_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &[]).await;
    let c = &server.client;
    let thread = server.thread().await;
    let project = thread.rsplit_once("/threads/").unwrap().0;
    let threads = format!("{}{project}/threads", server.base);
    let messages = format!("{}{thread}/messages", server.base);

    // 2 KiB on a GET, whose path's POST takes JSON: past the small allowance.
    for url in [&threads, &messages] {
        let r = c.get(url).header("content-type", "application/json").body("x".repeat(2048)).send().await.unwrap();
        assert_eq!(error_code(r).await, (413, "payload_too_large".into()), "GET {url}");
    }

    // The POST of the same paths still takes a JSON body of that size.
    let padded = |field: &str| {
        let body = json!({ field: "s".repeat(2048 - format!(r#"{{"{field}":""}}"#).len()) });
        assert_eq!(body.to_string().len(), 2048);
        body
    };
    let r = c.post(&threads).json(&padded("system")).send().await.unwrap();
    assert_eq!(r.status(), 201, "POST {threads}");
    let r = c.post(&messages).json(&padded("content")).send().await.unwrap();
    assert_eq!(r.status(), 202, "POST {messages}");

    // The GETs answer without a body; a wrong method is told so, body or not.
    assert_eq!(c.get(&threads).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&messages).send().await.unwrap().status(), 200);
    let r = c.delete(&threads).body("x".repeat(2048)).send().await.unwrap();
    assert_eq!(error_code(r).await, (405, "method_not_allowed".into()));
}
