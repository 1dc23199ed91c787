//! The pure state: the one pipeline (socket table, handshake and TIME-WAIT
//! trackers) and the summaries and live state built on it. No aya, tokio or clock.
pub mod close_wait_watch;
pub mod counter_since;
pub mod handshake_summary;
pub mod handshake_tracker;
pub mod heavy_hitters;
pub mod latency_histogram;
pub mod listed_socket;
pub mod live;
pub mod live_counts;
pub mod opening_window;
pub mod overview;
pub mod pipeline;
pub mod table;
pub mod time_wait_summary;
pub mod time_wait_tracker;
pub mod top_list;
