//! `socktrace agent --metrics ADDR:PORT`: the live state as Prometheus
//! metrics over HTTP, a snapshot taken in the event loop per scrape.
pub mod exposition;
pub mod labels;
pub mod server;
pub mod snapshot;
