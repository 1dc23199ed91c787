//! socktrace: an eBPF TCP connection tracer.
//!
//! Kernel side: `socktrace-ebpf`. Here: decoding its records ([`event`]),
//! the pure socket table ([`table`]), seeding from sock_diag ([`seed`]),
//! handshake accounting ([`handshake`], [`handshake_summary`]), TIME-WAIT
//! and CLOSE-WAIT accounting ([`time_wait`], [`time_wait_summary`],
//! [`close_wait`]), network namespaces ([`netns`], [`namespaces`]), loading
//! ([`loader`]) and the commands ([`trace`], [`handshakes`], [`timewait`]).
//!
//! Errors: a message never repeats its cause, which is its `source`;
//! [`error_line::ErrorLine`] writes an error and its causes on one line.
pub mod agent;
pub mod agent_client;
pub mod agent_protocol;
pub mod agent_server;
pub mod cidr;
pub mod cli;
pub mod clock;
pub mod close_wait;
pub mod container;
pub mod counter_since;
pub mod errno_name;
pub mod error_line;
pub mod event;
pub mod event_loop;
pub mod fast_hash;
pub mod handshake;
pub mod handshake_output;
pub mod handshake_summary;
pub mod handshakes;
pub mod heavy_hitters;
pub mod kernel_btf;
pub mod latency_histogram;
pub mod listed_socket;
pub mod live;
pub mod live_consumer;
pub mod loader;
pub mod log_throttle;
pub mod namespaces;
pub mod netns;
pub mod netstat;
pub mod opening_window;
pub mod output;
pub mod overview;
pub mod owner;
pub mod pipeline;
pub mod privileges;
pub mod proc_owners;
pub mod recording;
pub mod ring_reader;
pub mod seed;
pub mod sock_diag;
pub mod socket_filter;
pub mod ss;
pub mod ss_filter;
pub mod ss_output;
pub mod stdout_queue;
pub mod table;
pub mod tcp_state;
pub mod time_wait;
pub mod time_wait_output;
pub mod time_wait_summary;
pub mod timewait;
pub mod top;
pub mod top_list;
pub mod top_screen;
pub mod top_terminal;
pub mod top_view;
pub mod trace;
pub mod tracepoint_format;
pub mod tuple;
pub mod view_namespaces;
