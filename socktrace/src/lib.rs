//! socktrace: an eBPF TCP connection tracer.
//!
//! Kernel side: `socktrace-ebpf`. Here: decoding its records ([`event`]),
//! the pure socket table ([`table`]), seeding from sock_diag ([`seed`]),
//! loading ([`loader`]) and the commands ([`trace`]).
pub mod cli;
pub mod clock;
pub mod event;
pub mod loader;
pub mod output;
pub mod owner;
pub mod privileges;
pub mod proc_owners;
pub mod ring_reader;
pub mod seed;
pub mod sock_diag;
pub mod table;
pub mod tcp_state;
pub mod trace;
pub mod tracepoint_format;
pub mod tuple;
