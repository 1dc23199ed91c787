//! Names of the errno values the kernel reports to TCP sockets.

/// `ETIMEDOUT`, `ECONNREFUSED`...; `errno N` for values without a name here.
pub fn errno_name(errno: u32) -> String {
    let name = match errno as i32 {
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENONET => "ENONET",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EPROTO => "EPROTO",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPIPE => "EPIPE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_handshake_errors_and_numbers_the_rest() {
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(113), "EHOSTUNREACH");
        assert_eq!(errno_name(4000), "errno 4000");
    }
}
