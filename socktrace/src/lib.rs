//! socktrace: an eBPF TCP connection tracer.
//!
//! Kernel side: `socktrace-ebpf`. Here: decoding its records ([`event`]),
//! the pure socket table ([`table`]), seeding from sock_diag ([`seed`]),
//! handshake accounting ([`handshake`], [`handshake_summary`]), loading
//! ([`loader`]) and the commands ([`trace`], [`handshakes`]).
pub mod cidr;
pub mod cli;
pub mod clock;
pub mod errno_name;
pub mod event;
pub mod event_loop;
pub mod handshake;
pub mod handshake_filter;
pub mod handshake_output;
pub mod handshake_summary;
pub mod handshakes;
pub mod kernel_btf;
pub mod latency_histogram;
pub mod loader;
pub mod netstat;
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
