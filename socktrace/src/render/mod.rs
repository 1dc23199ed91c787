//! How views print: one column aligner, one JSON envelope, one way to show
//! a value in a cell; each view's human and JSON output; view filters; and
//! stdout behind a bounded queue.
pub mod cells;
pub mod columns;
pub mod handshake_output;
pub mod json;
pub mod output;
pub mod probe_output;
pub mod socket_filter;
pub mod stdout_queue;
pub mod time_wait_output;
