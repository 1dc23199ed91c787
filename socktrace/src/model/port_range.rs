//! The ephemeral port range of a network namespace.
/// `net.ipv4.ip_local_port_range`: the ports connect(2) picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// Parses the sysctl's text, such as `"32768\t60999\n"`.
    pub fn parse(text: &str) -> Option<PortRange> {
        let mut numbers = text.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(low)), Some(Ok(high)), None) =
            (numbers.next(), numbers.next(), numbers.next())
        else {
            return None;
        };
        (low <= high).then_some(PortRange { low, high })
    }

    pub fn size(self) -> u32 {
        u32::from(self.high - self.low) + 1
    }

    pub fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sysctls_text_parses_and_nonsense_does_not() {
        let range = PortRange::parse("32768\t60999\n").unwrap();
        assert_eq!(
            (range.size(), range.contains(32768), range.contains(61000)),
            (28232, true, false)
        );
        assert_eq!(PortRange::parse("2 1"), None);
        assert_eq!(PortRange::parse("1 2 3"), None);
        assert_eq!(PortRange::parse(""), None);
    }
}
