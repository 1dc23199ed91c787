//! Any bytes as a recording, replayed the way the ingest benchmark replays
//! one: its records decoded and the transitions applied to a socket table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socktrace::{kernel::event::Event, kernel::recording, state::table::SocketTable};

fuzz_target!(|bytes: &[u8]| {
    let Ok(records) = recording::records(bytes) else {
        return;
    };
    let mut table = SocketTable::new();
    for record in records {
        if let Ok(Event::State(event)) = Event::try_from(record) {
            table.apply(&event);
        }
    }
});
