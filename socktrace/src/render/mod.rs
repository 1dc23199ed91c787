//! How views print: human columns and JSON records, view filters, and stdout
//! behind a bounded queue.
pub mod handshake_output;
pub mod output;
pub mod socket_filter;
pub mod stdout_queue;
pub mod time_wait_output;
