//! socktrace: an eBPF TCP connection tracer.
pub mod event;
pub mod owner;
pub mod table;
pub mod tcp_state;
pub mod tuple;
pub mod proc_owners;
pub mod sock_diag;
