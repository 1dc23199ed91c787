//! The kernel boundary: loading and attaching the BPF programs (with the
//! offsets read from the kernel's BTF), the ring buffer, decoding and
//! validating its records.
pub mod event;
pub mod kernel_btf;
pub mod loader;
pub mod lost;
pub mod privileges;
pub mod ring_reader;
pub mod tracepoint_format;
