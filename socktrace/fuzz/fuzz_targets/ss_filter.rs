//! Any text as `socktrace ss`'s filter words: a query, which then matches
//! two sockets, or an error whose pointer line can be drawn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socktrace::{
    model::tcp_state::TcpState,
    ss::filter::{self, StateSet},
};

/// Two services, so that names are parsed too.
fn services(name: &str) -> Option<u16> {
    match name {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fuzz_target!(|text: &str| {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    match filter::parse(&words, StateSet::CONNECTED_DEFAULT, &services) {
        Ok(query) => {
            let v4 = (
                "10.0.0.1:40000".parse().unwrap(),
                "192.0.2.7:443".parse().unwrap(),
            );
            let v6 = (
                "[::ffff:10.0.0.1]:22".parse().unwrap(),
                "[2001:db8::1]:80".parse().unwrap(),
            );
            for (local, remote) in [v4, v6] {
                let _ = query.matches(TcpState::Established, local, remote);
            }
        }
        Err(error) => {
            let _ = error.pointer();
        }
    }
});
