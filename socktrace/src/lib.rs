//! socktrace: an eBPF TCP connection tracer. The flow, from the kernel to
//! the views, all in the words of [`model`]: [`kernel`] loads the programs and decodes their records,
//! [`host`] lists sockets and namespaces, [`state`] takes both through the
//! one pipeline, [`event_loop`] drives it, and the commands ([`trace`],
//! [`handshakes`], [`timewait`], [`ss`], [`top`], [`agent`] and its
//! [`metrics`], and [`probe`]) render what it
//! holds through [`render`]; [`cli`] parses their arguments.
//!
//! Errors: a message never repeats its cause, which is its `source`;
//! [`support::error_line::ErrorLine`] writes an error and its causes on one line.
pub mod agent;
pub mod cli;
pub mod event_loop;
pub mod feed;
pub mod handshakes;
pub mod host;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod recording;
pub mod render;
pub mod replay;
pub mod seed;
pub mod ss;
pub mod state;
pub mod support;
pub mod timewait;
pub mod top;
pub mod trace;
