//! The webhook sink: POSTs each alert, alone, as exactly the JSON object the alerts topic
//! carries (contract section 4, the `Serialize` form of [`Alert`]), with
//! `Content-Type: application/json`. A receiver written against the alerts topic reads these
//! unchanged. Delivery is at most once per queued alert after retries (see [`super::queue`]);
//! a receiver should deduplicate on `storm_id` and `kind` if it cares about the rare repeat of
//! a request whose response was lost.

use super::queue::{self, Deliver, Handled, Poster, SinkHandle, SinkWorker};
use super::{SinkError, SinkOptions, WEBHOOK};
use crate::alert::Alert;
use crate::metrics::Metrics;
use reqwest::Url;
use std::sync::Arc;
use tracing::warn;

/// The configuration key the webhook URL comes from (named in errors).
pub const URL_KEY: &str = "sinks.webhook.url";

/// Checks `sinks.webhook.url` (absolute `http`/`https`); the URL is used as given.
pub fn endpoint_url(url: &str) -> Result<Url, SinkError> {
    queue::parse_http_url(URL_KEY, url)
}

/// Starts a webhook sink posting to `url`, its worker on `runtime`.
pub fn spawn(
    url: &str,
    options: &SinkOptions,
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) -> Result<(SinkHandle, SinkWorker), SinkError> {
    spawn_url(endpoint_url(url)?, options, metrics, runtime)
}

/// [`spawn`] with a checked URL.
pub(crate) fn spawn_url(
    url: Url,
    options: &SinkOptions,
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) -> Result<(SinkHandle, SinkWorker), SinkError> {
    let endpoint = url.clone();
    queue::spawn(
        WEBHOOK,
        &endpoint,
        Webhook { url },
        options,
        metrics,
        runtime,
    )
}

/// The webhook's worker state: just where to post.
struct Webhook {
    url: Url,
}

impl Deliver for Webhook {
    async fn deliver(&mut self, alert: Arc<Alert>, poster: &Poster) -> Handled {
        let body = match serde_json::to_vec(&*alert) {
            Ok(body) => body,
            Err(error) => {
                // Serializing plain strings and numbers does not fail; count it if it ever does.
                poster.counters.failed.inc();
                warn!(sink = WEBHOOK, %error, "alert could not be encoded");
                return Handled::Done;
            }
        };
        match poster.post_with_retry(&self.url, &body, &alert).await {
            queue::Delivery::Abandoned => Handled::Abandoned,
            _ => Handled::Done,
        }
    }
}
