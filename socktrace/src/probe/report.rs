//! What one probe found, and what a run of them adds up to, as ping sums
//! up its replies. Pure.
use std::net::SocketAddr;

use super::{narration::Verdict, tls::TlsReport};

/// Exit status when the TLS handshake failed.
pub const TLS_FAILED: u8 = 7;
/// Exit status when the certificate is not trusted for the name probed.
pub const TLS_UNTRUSTED: u8 = 8;

/// One connection, from its first SYN to its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// 1 for the first probe.
    pub attempt: u32,
    pub address: SocketAddr,
    pub local: Option<SocketAddr>,
    pub verdict: Verdict,
    /// First SYN to SYN-ACK, for a connection that got through.
    pub handshake_ns: Option<u64>,
    pub syn_retransmits: u32,
    pub errno: Option<u32>,
    /// For a refusal by this host: what listens on the port.
    pub hint: Option<String>,
    /// With `--tls`, for a connection that got through: the handshake, or
    /// why it failed.
    pub tls: Option<Result<TlsReport, String>>,
}

impl ProbeResult {
    /// The exit status this probe alone would give (see `--help`).
    pub fn exit_status(&self) -> u8 {
        match &self.tls {
            Some(Err(_)) => TLS_FAILED,
            Some(Ok(report)) if report.trust.is_err() => TLS_UNTRUSTED,
            _ => self.verdict.exit_status(),
        }
    }
}

/// A run of probes summed up.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub probes: usize,
    /// Probes per verdict, in the order verdicts first came.
    pub verdicts: Vec<(Verdict, usize)>,
    /// Handshake times of the probes that got through, in ms.
    pub min_ms: Option<f64>,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The status of the first probe that did not get through, 0 if all did.
    pub exit_status: u8,
}

impl Summary {
    pub fn of(results: &[ProbeResult]) -> Summary {
        let mut verdicts: Vec<(Verdict, usize)> = Vec::new();
        for result in results {
            match verdicts.iter_mut().find(|(v, _)| *v == result.verdict) {
                Some((_, count)) => *count += 1,
                None => verdicts.push((result.verdict, 1)),
            }
        }
        let mut times: Vec<u64> = results.iter().filter_map(|r| r.handshake_ns).collect();
        times.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let median_ms = match times.len() {
            0 => None,
            n if n % 2 == 1 => Some(ms(times[n / 2])),
            n => Some((ms(times[n / 2 - 1]) + ms(times[n / 2])) / 2.0),
        };
        Summary {
            probes: results.len(),
            verdicts,
            min_ms: times.first().copied().map(ms),
            median_ms,
            max_ms: times.last().copied().map(ms),
            exit_status: results
                .iter()
                .map(ProbeResult::exit_status)
                .find(|&status| status != 0)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(verdict: Verdict, handshake_ms: Option<u64>) -> ProbeResult {
        ProbeResult {
            attempt: 1,
            address: "10.0.0.5:80".parse().unwrap(),
            local: None,
            verdict,
            handshake_ns: handshake_ms.map(|ms| ms * 1_000_000),
            syn_retransmits: 0,
            errno: None,
            hint: None,
            tls: None,
        }
    }

    #[test]
    fn the_summary_counts_verdicts_and_takes_the_median_of_the_handshakes() {
        let results = [
            result(Verdict::Reachable, Some(4)),
            result(Verdict::Timeout, None),
            result(Verdict::Reachable, Some(1)),
            result(Verdict::Refused, None),
            result(Verdict::Reachable, Some(2)),
            result(Verdict::Reachable, Some(10)),
        ];
        let summary = Summary::of(&results);
        assert_eq!(summary.probes, 6);
        assert_eq!(
            summary.verdicts,
            [
                (Verdict::Reachable, 4),
                (Verdict::Timeout, 1),
                (Verdict::Refused, 1)
            ]
        );
        assert_eq!(
            (summary.min_ms, summary.median_ms, summary.max_ms),
            (Some(1.0), Some(3.0), Some(10.0))
        );
        assert_eq!(summary.exit_status, Verdict::Timeout.exit_status());
    }

    #[test]
    fn all_through_exits_zero_and_tls_troubles_have_their_own_status() {
        let summary = Summary::of(&[result(Verdict::Reachable, Some(3))]);
        assert_eq!((summary.exit_status, summary.median_ms), (0, Some(3.0)));
        let mut failed = result(Verdict::Reachable, Some(3));
        failed.tls = Some(Err("no TLS handshake within 10 s".to_owned()));
        assert_eq!(failed.exit_status(), TLS_FAILED);
        let none = Summary::of(&[result(Verdict::Refused, None)]);
        assert_eq!((none.min_ms, none.median_ms), (None, None));
    }
}
