//! The metrics endpoint: `GET /metrics` over HTTP/1.1 (hyper), at most
//! [`MAX_SCRAPERS`] connections at once, each given [`REQUEST_DEADLINE`]
//! for its request and [`CONNECTION_DEADLINE`] in all.
use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::{
    agent::connection_slots::ConnectionSlots,
    agent::live_consumer::Answers,
    metrics::exposition::{self, Format},
};

/// Scrapers served at once; more wait in the listen backlog. Prometheus
/// keeps one connection per target.
pub const MAX_SCRAPERS: usize = 8;

/// How long a connection may stay open, idle or not: a scraper that stops
/// reading is dropped.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// How long a request's headers may take: a connection that sends none
/// gives its slot back.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

type Body = Full<Bytes>;

/// Serves scrapes until the loop behind `answers` is gone.
pub async fn serve(listener: TcpListener, answers: Answers) {
    let mut scrapers = ConnectionSlots::new(MAX_SCRAPERS, ("scraper", "scrapers"));
    while let Some(((stream, _), slot)) = scrapers.next(|| listener.accept(), &answers).await {
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, answers.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_DEADLINE)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => log::info!("metrics: a scraper's connection: {error}"),
                Err(_) => log::info!(
                    "metrics: a scraper's connection closed after {}s",
                    CONNECTION_DEADLINE.as_secs()
                ),
            }
            drop(slot);
        });
    }
}

/// `/metrics` for GET (and HEAD); a short text for anything else.
async fn respond(
    request: Request<hyper::body::Incoming>,
    answers: Answers,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "socktrace: the metrics are at /metrics\n",
        ));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "socktrace: GET /metrics\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let format = Format::accepted(
        request
            .headers()
            .get(ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    let snapshot = match answers.metrics().await {
        Ok(snapshot) => snapshot,
        Err(reason) => {
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("socktrace: {reason}\n"),
            ));
        }
    };
    Ok(match exposition::encode(snapshot, format) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "socktrace: encoding the metrics failed\n",
        ),
    })
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
