//! How one value reads in a human cell: endpoints as `ss` prints them,
//! numbers with fixed decimals, and the one placeholder for a missing value.
use std::net::SocketAddr;

/// What a cell shows for a value that is not known.
pub const MISSING: &str = "-";

/// `show(value)`, or [`MISSING`].
pub fn or_missing<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| MISSING.to_owned(), show)
}

/// `value` with `places` decimals.
pub fn decimals(value: f64, places: usize) -> String {
    format!("{value:.places$}")
}

/// Nanoseconds as milliseconds.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// An endpoint as ss prints it: `10.0.0.1:22`, `[::1]:22`, `*` for a port
/// not set (`10.0.0.1:*`); the IPv6 wildcard as `*` (`*:22`) when the
/// socket is `dual_stack` (also takes IPv4), `[::]:22` otherwise.
pub fn endpoint(addr: SocketAddr, dual_stack: bool) -> String {
    let port = match addr.port() {
        0 => "*".to_owned(),
        port => port.to_string(),
    };
    match addr {
        SocketAddr::V4(v4) => format!("{}:{port}", v4.ip()),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() && dual_stack => format!("*:{port}"),
        SocketAddr::V6(v6) => format!("[{}]:{port}", v6.ip()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_as_ss_prints_them() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(endpoint(at("10.0.0.1:80"), false), "10.0.0.1:80");
        assert_eq!(endpoint(at("10.0.0.1:0"), false), "10.0.0.1:*");
        assert_eq!(endpoint(at("[::1]:443"), true), "[::1]:443");
        assert_eq!(endpoint(at("[::]:22"), true), "*:22");
        assert_eq!(endpoint(at("[::]:22"), false), "[::]:22");
        assert_eq!(endpoint(at("[::]:0"), false), "[::]:*");
    }

    #[test]
    fn a_missing_value_is_a_dash() {
        assert_eq!(or_missing(None::<u64>, |v| v.to_string()), "-");
        assert_eq!(or_missing(Some(1.25), |v| decimals(v, 1)), "1.2");
    }
}
