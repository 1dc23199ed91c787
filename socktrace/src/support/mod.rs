//! Small helpers every layer uses: clocks, error lines, throttled logging,
//! the fast hasher, errno names.
pub mod clock;
pub mod errno_name;
pub mod error_line;
pub mod fast_hash;
pub mod log_throttle;
