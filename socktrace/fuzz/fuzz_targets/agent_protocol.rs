//! Any bytes on the agent's socket: a request as the agent reads it, and a
//! response as a client reads it; each parsed or refused, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use socktrace::agent::protocol::{MAX_REQUEST_BYTES, Request, Response, read_message};
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

fuzz_target!(|bytes: &[u8]| {
    // The inputs are far below either side's limit (the client's is 1 GiB).
    RUNTIME.block_on(async {
        let _ = read_message::<Request>(bytes, MAX_REQUEST_BYTES).await;
        let _ = read_message::<Response>(bytes, MAX_REQUEST_BYTES).await;
    });
});
