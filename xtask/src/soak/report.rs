//! What the soak prints and writes: a row per sample as it goes,
//! `target/soak/samples.csv`, `target/soak/summary.md` and the README's
//! table.
use super::{sample::Sample, verdict::Verdict};

/// README markers around the generated table.
pub const README_BEGIN: &str = "<!-- soak:begin (cargo xtask soak --update-readme) -->";
pub const README_END: &str = "<!-- soak:end -->";

/// How the run was made.
pub struct Run {
    pub minutes: u64,
    pub rate: u32,
    pub warmup_s: f64,
    /// The machine's one-minute load average at the start and the end.
    pub load_average: (f64, f64),
    /// The first failed query, if any.
    pub first_query_failure: Option<String>,
}

/// The column header of [`row`].
pub fn header() -> String {
    format!(
        "{:>6} {:>8} {:>7} {:>4} {:>4} {:>5} {:>7} {:>8} {:>7} {:>6} {:>7} {:>7} {:>6} {:>5}",
        "t_s",
        "rss_MiB",
        "cpu_s",
        "fds",
        "thr",
        "lost",
        "conn/s",
        "host_tr/s",
        "tw",
        "cw",
        "timeout",
        "listed",
        "ss_ms",
        "q_err"
    )
}

/// One sample, with rates since `previous`.
pub fn row(sample: &Sample, previous: Option<&Sample>) -> String {
    let rate = |value: fn(&Sample) -> u64| {
        previous.map_or(0.0, |p| {
            let seconds = sample.elapsed_s - p.elapsed_s;
            if seconds > 0.0 {
                value(sample).saturating_sub(value(p)) as f64 / seconds
            } else {
                0.0
            }
        })
    };
    format!(
        "{:>6.0} {:>8.1} {:>7.2} {:>4} {:>4} {:>5} {:>7.0} {:>8.0} {:>7} {:>6} {:>7} {:>7} {:>6.0} {:>5}",
        sample.elapsed_s,
        sample.rss_kib as f64 / 1024.0,
        sample.cpu_s,
        sample.fds,
        sample.threads,
        sample.lost,
        rate(|s| s.connections),
        rate(|s| s.host_transitions),
        sample.time_wait,
        sample.close_wait,
        sample.handshake_timeouts,
        sample.listed,
        sample.listing_ms,
        sample.query_failures
    )
}

const CSV_HEADER: &str = "elapsed_s,rss_kib,cpu_s,fds,threads,lost,host_transitions,connections,\
                          connection_failures,handshake_timeouts,time_wait,close_wait,listed,\
                          listing_ms,queries,query_failures";

pub fn csv(samples: &[Sample]) -> String {
    let mut text = format!("{CSV_HEADER}\n");
    for s in samples {
        text.push_str(&format!(
            "{:.1},{},{:.2},{},{},{},{},{},{},{},{},{},{},{:.0},{},{}\n",
            s.elapsed_s,
            s.rss_kib,
            s.cpu_s,
            s.fds,
            s.threads,
            s.lost,
            s.host_transitions,
            s.connections,
            s.connection_failures,
            s.handshake_timeouts,
            s.time_wait,
            s.close_wait,
            s.listed,
            s.listing_ms,
            s.queries,
            s.query_failures
        ));
    }
    text
}

/// The figures of a run as a two-column markdown table.
pub fn table(run: &Run, samples: &[Sample], verdict: &Verdict) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return "no samples\n".into();
    };
    let warm = samples
        .iter()
        .find(|s| s.elapsed_s >= run.warmup_s)
        .unwrap_or(last);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let optional = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.2}"));
    let mut rows = vec![
        (
            "run".to_owned(),
            format!(
                "{} min at {} connections/s asked, {:.0} s warm-up; load average {:.1} at start, {:.1} at end",
                run.minutes, run.rate, run.warmup_s, run.load_average.0, run.load_average.1
            ),
        ),
        (
            "load achieved after warm-up".to_owned(),
            format!(
                "{:.0} connections/s, {:.0} transitions/s; {} handshakes timed out, {} connections failed",
                verdict.connection_rate,
                verdict.transition_rate,
                last.handshake_timeouts,
                last.connection_failures
            ),
        ),
        (
            "host-wide transitions after warm-up (kernel count): mean, peak; per load connection in the median interval"
                .to_owned(),
            format!(
                "{:.0}/s, {:.0}/s; {}",
                verdict.host_transition_rate,
                verdict.peak_host_transition_rate,
                optional(verdict.host_transitions_per_connection)
            ),
        ),
        (
            "TIME-WAIT, CLOSE-WAIT sockets at the end".to_owned(),
            format!("{}, {}", last.time_wait, last.close_wait),
        ),
        (
            "`socktrace ss -tanpo` through the agent: last listing, slowest after warm-up"
                .to_owned(),
            format!(
                "{} sockets in {:.0} ms, {:.0} ms",
                last.listed,
                last.listing_ms,
                samples
                    .iter()
                    .filter(|s| s.elapsed_s >= run.warmup_s)
                    .map(|s| s.listing_ms)
                    .fold(0.0, f64::max)
            ),
        ),
        (
            "agent RSS: start, end of warm-up, end".to_owned(),
            format!(
                "{:.1}, {:.1}, {:.1} MiB",
                mib(first.rss_kib),
                mib(warm.rss_kib),
                mib(last.rss_kib)
            ),
        ),
        (
            "open descriptors, threads: start, end".to_owned(),
            format!(
                "{}, {}; {}, {}",
                first.fds, last.fds, first.threads, last.threads
            ),
        ),
    ];
    for growth in &verdict.growth {
        rows.push((
            format!("{}: middle third → last third (tolerance)", growth.what),
            format!(
                "{:.1} → {:.1}{} (+{:.1})",
                growth.middle,
                growth.last,
                if growth.unit.is_empty() {
                    String::new()
                } else {
                    format!(" {}", growth.unit)
                },
                growth.tolerance
            ),
        ));
    }
    rows.extend([
        (
            "agent CPU s per million transitions: after warm-up (middle, last third)".to_owned(),
            format!(
                "{} ({}, {})",
                optional(verdict.cpu_per_m),
                optional(verdict.cpu_per_m_middle),
                optional(verdict.cpu_per_m_last)
            ),
        ),
        (
            "lost events (when: host-wide transitions then)".to_owned(),
            std::iter::once(verdict.lost.to_string())
                .chain(verdict.losses.iter().map(|loss| {
                    format!(
                        "{} at {:.0} s ({:.0}/s)",
                        loss.lost, loss.at_s, loss.host_transition_rate
                    )
                }))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "queries to the agent (failed)".to_owned(),
            format!("{} ({})", last.queries, verdict.query_failures),
        ),
        (
            "verdict".to_owned(),
            verdict
                .reason()
                .map_or("**pass**".into(), |reason| format!("**fail**: {reason}")),
        ),
    ]);
    let mut text = "| measure | value |\n| --- | --- |\n".to_owned();
    for (measure, value) in rows {
        text.push_str(&format!("| {measure} | {value} |\n"));
    }
    text
}

/// `summary.md`: the table, every failure and the first failed query.
pub fn summary(run: &Run, samples: &[Sample], verdict: &Verdict) -> String {
    let mut text = format!("# Soak\n\n{}", table(run, samples, verdict));
    if !verdict.failures.is_empty() {
        text.push_str("\nFailures:\n");
        for failure in &verdict.failures {
            text.push_str(&format!("- {failure}\n"));
        }
    }
    if let Some(failure) = &run.first_query_failure {
        text.push_str(&format!("\nFirst failed query: {failure}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_rates_since_the_previous_sample() {
        let before = Sample {
            elapsed_s: 5.0,
            connections: 1000,
            host_transitions: 10_000,
            ..Sample::default()
        };
        let now = Sample {
            elapsed_s: 10.0,
            rss_kib: 40960,
            connections: 11_000,
            host_transitions: 110_000,
            ..Sample::default()
        };
        let row = row(&now, Some(&before));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns.len(), header().split_whitespace().count());
        assert_eq!(&columns[..2], ["10", "40.0"]);
        assert_eq!(&columns[6..8], ["2000", "20000"]);
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_sample() {
        let text = csv(&[Sample::default(), Sample::default()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].split(',').count(),
            lines[1].split(',').count(),
            "{text}"
        );
    }
}
