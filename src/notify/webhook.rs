//! Webhook deliveries: one attempt is a POST of the event's body to the
//! webhook's URL, signed the Standard Webhooks way with its secret
//! (`signing::headers`: `webhook-id` is the event's id, the same on every
//! attempt; `webhook-timestamp` the attempt's time), through the outbound
//! guard's client (its addresses judged again on connect, no proxy, no
//! redirects), within `--notify-timeout-ms`, reading at most
//! `--notify-max-response-bytes` of the answer. A 2xx delivers it.

use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use super::{Channel, Delivery, Sent};
use crate::{config::Settings, outbound, store::Store};

pub struct WebhookChannel {
    store: Store,
    guard: outbound::Guard,
    client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
}

impl WebhookChannel {
    pub fn new(store: Store, settings: &Settings) -> WebhookChannel {
        let guard = settings.outbound.guard();
        let timeout = settings.notify.timeout();
        WebhookChannel {
            store,
            guard,
            client: guard.client(timeout),
            timeout,
            max_response_bytes: settings.notify.notify_max_response_bytes,
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> Sent {
        let hook = match self.store.webhook_by_id(delivery.target_id).await {
            Ok(Some(hook)) => hook,
            Ok(None) => return Sent::Gone,
            Err(e) => return Sent::Failed { status_code: None, error: format!("the database: {e}") },
        };
        if let Err(refused) = self.guard.check_url(&hook.url) {
            return Sent::Failed { status_code: None, error: refused.to_string() };
        }
        let id = delivery.event_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let body = delivery.payload.clone().into_bytes();
        let mut request =
            self.client.post(&hook.url).timeout(self.timeout).header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in crate::signing::headers(std::slice::from_ref(&hook.secret), &id, timestamp, &body) {
            request = request.header(name, value);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read (to the cap) so the connection can be used again;
                // what it says does not matter.
                let _ = outbound::read_capped(response, self.max_response_bytes).await;
                match (200..300).contains(&status) {
                    true => Sent::Delivered { status_code: status },
                    false => {
                        Sent::Failed { status_code: Some(status), error: format!("the receiver answered {status}") }
                    }
                }
            }
            Err(e) => {
                let error = match outbound::refusal_of(&e) {
                    Some(refused) => refused,
                    None if e.is_timeout() => format!("no answer within {} ms", self.timeout.as_millis()),
                    None if e.is_connect() => "could not connect to the receiver".to_owned(),
                    None => format!("the request failed: {e}"),
                };
                Sent::Failed { status_code: None, error }
            }
        }
    }
}

impl Channel for WebhookChannel {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> LocalBoxFuture<'a, Sent> {
        Box::pin(self.attempt(delivery))
    }
}
