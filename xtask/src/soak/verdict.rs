//! The soak's verdict, pure: after the warm-up, whether the agent's memory,
//! descriptors, threads or CPU per transition grew from the middle third
//! of the samples to the last, whether it lost events, whether a query
//! failed and whether the load ran at the rate asked.
use super::sample::Sample;
use crate::bench::report::median;

/// Warm-up: at least the 60 s a TIME-WAIT socket lives, the 30 s a
/// CLOSE-WAIT connection is held and a few socket listings besides, so
/// that those populations are at their steady size; a fifth of longer runs.
const LEAST_WARMUP_S: f64 = 90.0;
const WARMUP_SHARE: f64 = 0.2;

/// RSS growth allowed from the middle third's mean to the last's: the
/// larger of these. A sample can catch an answer being built (an
/// `ss -tanpo` listing of 30,000 sockets holds a few MiB until it is sent)
/// and the heap keeps small freed blocks for reuse. A leak of 13 bytes per
/// connection at 2,000 a second adds 4 MiB between a 10-minute run's
/// thirds (160 s apart).
const RSS_TOLERANCE_KIB: f64 = 4096.0;
const RSS_TOLERANCE_SHARE: f64 = 0.05;
/// Descriptors and threads allowed on average: a sample can catch a
/// client's connection or a namespace listing's thread in flight, a leak
/// of one per query (every few seconds) adds tens per third.
const FD_TOLERANCE: f64 = 2.0;
const THREAD_TOLERANCE: f64 = 2.0;
/// CPU per transition may vary this much between thirds (other work on
/// the machine slows the agent through its caches and adds records it
/// passes over); a per-transition cost that grows with time is a
/// structure that grows.
const CPU_GROWTH_TOLERANCE: f64 = 1.5;
/// Below this share of the rate asked, the load did not run as asked.
const LEAST_RATE_SHARE: f64 = 0.5;
/// Samples each third needs for a mean.
const LEAST_SAMPLES_PER_THIRD: usize = 2;

/// The warm-up of a run of `run_s` seconds.
pub fn warmup_s(run_s: f64) -> f64 {
    (run_s * WARMUP_SHARE).max(LEAST_WARMUP_S)
}

/// A quantity compared between the middle and last thirds after warm-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    pub what: &'static str,
    pub unit: &'static str,
    /// Means of the middle and the last third.
    pub middle: f64,
    pub last: f64,
    /// Growth allowed.
    pub tolerance: f64,
}

impl Growth {
    pub fn growth(&self) -> f64 {
        self.last - self.middle
    }

    pub fn within(&self) -> bool {
        self.growth() <= self.tolerance
    }
}

/// What a run shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// RSS (MiB), descriptors, threads.
    pub growth: Vec<Growth>,
    /// Agent CPU seconds per million transitions of the load: after
    /// warm-up, in the middle third and in the last.
    pub cpu_per_m: Option<f64>,
    pub cpu_per_m_middle: Option<f64>,
    pub cpu_per_m_last: Option<f64>,
    /// After warm-up: the load's connections and transitions per second,
    /// the host's transitions per second (the load's and any other's), and
    /// the kernel's transitions per load connection in the median
    /// interval (the load's own figure where nothing else ran).
    pub connection_rate: f64,
    pub transition_rate: f64,
    pub host_transition_rate: f64,
    pub host_transitions_per_connection: Option<f64>,
    /// The most host-wide transitions per second between two samples.
    pub peak_host_transition_rate: f64,
    /// Events lost over the whole run, and where.
    pub lost: u64,
    pub losses: Vec<Loss>,
    pub query_failures: u64,
    /// Why the run fails, if it does; the first is the headline.
    pub failures: Vec<String>,
}

/// Events lost between two samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    /// The sample that saw them.
    pub at_s: f64,
    pub lost: u64,
    /// Host-wide transitions per second in that interval or the one
    /// before, whichever is higher (the lost count is read up to a second
    /// late).
    pub host_transition_rate: f64,
}

impl Verdict {
    /// The one-line reason, or `None` when the run passes.
    pub fn reason(&self) -> Option<String> {
        match self.failures.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            [first, rest @ ..] => Some(format!("{first} (and {} more)", rest.len())),
        }
    }
}

/// Judges `samples` (in time order) of a run of `run_s` seconds under a
/// load asked to make `asked_rate` connections per second.
pub fn judge(samples: &[Sample], run_s: f64, asked_rate: f64) -> Verdict {
    let mut verdict = Verdict {
        lost: samples.iter().map(|s| s.lost).max().unwrap_or(0),
        query_failures: samples.last().map_or(0, |s| s.query_failures),
        peak_host_transition_rate: samples
            .windows(2)
            .filter_map(|pair| rate(&pair[0], &pair[1], |s| s.host_transitions))
            .fold(0.0, f64::max),
        ..Verdict::default()
    };
    verdict.losses = losses(samples);
    if verdict.lost > 0 {
        // The agent's ring carries every namespace's records: another
        // load on the host can fill it.
        let rates = || verdict.losses.iter().map(|l| l.host_transition_rate);
        verdict.failures.push(format!(
            "the agent lost {} events in {} intervals (host-wide transitions there {:.0}-{:.0}/s)",
            verdict.lost,
            verdict.losses.len(),
            rates().fold(f64::INFINITY, f64::min),
            rates().fold(0.0, f64::max),
        ));
    }
    if verdict.query_failures > 0 {
        verdict.failures.push(format!(
            "{} queries to the agent failed",
            verdict.query_failures
        ));
    }
    let warmup = warmup_s(run_s);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.elapsed_s >= warmup).collect();
    let third = after.len() / 3;
    if third < LEAST_SAMPLES_PER_THIRD {
        verdict.failures.push(format!(
            "{} samples after the {warmup:.0} s warm-up: too few to tell growth",
            after.len()
        ));
        return verdict;
    }
    let middle = &after[third..2 * third];
    let last = &after[after.len() - third..];

    let grown = |what, unit, value: fn(&Sample) -> f64, tolerance: fn(f64) -> f64| {
        let middle = mean(middle, value);
        Growth {
            what,
            unit,
            middle,
            last: mean(last, value),
            tolerance: tolerance(middle),
        }
    };
    verdict.growth = vec![
        grown(
            "RSS",
            "MiB",
            |s| s.rss_kib as f64 / 1024.0,
            |middle| (RSS_TOLERANCE_KIB / 1024.0).max(middle * RSS_TOLERANCE_SHARE),
        ),
        grown("open descriptors", "", |s| s.fds as f64, |_| FD_TOLERANCE),
        grown("threads", "", |s| s.threads as f64, |_| THREAD_TOLERANCE),
    ];
    for growth in &verdict.growth {
        if !growth.within() {
            verdict.failures.push(format!(
                "{} grew by {:.1}{} from the middle third to the last (tolerance {:.1})",
                growth.what,
                growth.growth(),
                growth.unit,
                growth.tolerance
            ));
        }
    }

    verdict.cpu_per_m = cpu_per_m(&after);
    verdict.cpu_per_m_middle = cpu_per_m(middle);
    verdict.cpu_per_m_last = cpu_per_m(last);
    match (verdict.cpu_per_m_middle, verdict.cpu_per_m_last) {
        (Some(middle), Some(last)) if last > middle * CPU_GROWTH_TOLERANCE => {
            verdict.failures.push(format!(
                "CPU per million transitions grew from {middle:.2} s to {last:.2} s"
            ));
        }
        (Some(_), Some(_)) => {}
        _ => verdict
            .failures
            .push("the load made no connections after the warm-up".into()),
    }

    let (first, end) = (after[0], after[after.len() - 1]);
    verdict.connection_rate = rate(first, end, |s| s.connections).unwrap_or(0.0);
    verdict.transition_rate = rate(first, end, Sample::load_transitions).unwrap_or(0.0);
    verdict.host_transition_rate = rate(first, end, |s| s.host_transitions).unwrap_or(0.0);
    verdict.host_transitions_per_connection = median(
        after
            .windows(2)
            .filter_map(|pair| {
                let connections = pair[1].connections.checked_sub(pair[0].connections)?;
                let transitions = pair[1]
                    .host_transitions
                    .checked_sub(pair[0].host_transitions)?;
                (connections > 0).then(|| transitions as f64 / connections as f64)
            })
            .collect(),
    );
    if verdict.connection_rate < asked_rate * LEAST_RATE_SHARE {
        verdict.failures.push(format!(
            "the load made {:.0} connections/s of the {asked_rate:.0} asked",
            verdict.connection_rate
        ));
    }
    verdict
}

/// The intervals in which the lost count grew.
fn losses(samples: &[Sample]) -> Vec<Loss> {
    let interval_rate = |index: usize| {
        let pair = samples.get(index.checked_sub(1)?..=index)?;
        rate(&pair[0], &pair[1], |s| s.host_transitions)
    };
    (1..samples.len())
        .filter(|&i| samples[i].lost > samples[i - 1].lost)
        .map(|i| Loss {
            at_s: samples[i].elapsed_s,
            lost: samples[i].lost - samples[i - 1].lost,
            host_transition_rate: interval_rate(i)
                .unwrap_or(0.0)
                .max(interval_rate(i - 1).unwrap_or(0.0)),
        })
        .collect()
}

fn mean(samples: &[&Sample], value: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(|s| value(s)).sum::<f64>() / samples.len() as f64
}

/// How fast `count` grew from `from` to `to`, per second.
fn rate(from: &Sample, to: &Sample, count: impl Fn(&Sample) -> u64) -> Option<f64> {
    let seconds = to.elapsed_s - from.elapsed_s;
    (seconds > 0.0).then(|| count(to).saturating_sub(count(from)) as f64 / seconds)
}

/// Agent CPU seconds per million transitions of the load from the first of
/// `samples` to the last. The load's own count, not the host's: other
/// work on the machine adds transitions the agent merely passes over.
fn cpu_per_m(samples: &[&Sample]) -> Option<f64> {
    let (first, last) = (samples.first()?, samples.last()?);
    let transitions = last
        .load_transitions()
        .checked_sub(first.load_transitions())?;
    (transitions > 0).then(|| (last.cpu_s - first.cpu_s) / transitions as f64 * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 2000.0;

    /// A 10-minute run sampled every 5 s, flat but for `rss_kib`: steady
    /// churn at RATE, 10 transitions a connection, 0.5 CPU s per million.
    fn run(rss_kib: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0..=120)
            .map(|i| {
                let t = i as f64 * 5.0;
                let connections = (t * RATE) as u64;
                Sample {
                    elapsed_s: t,
                    rss_kib: rss_kib(t),
                    cpu_s: connections as f64 * 10.0 * 0.5e-6,
                    fds: 40 + (i % 2),
                    threads: 6,
                    host_transitions: connections * 10,
                    connections,
                    ..Sample::default()
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_run_passes() {
        // Noise of a few hundred KiB around 40 MiB.
        let verdict = judge(&run(|t| 40_000 + (t as u64 * 7919) % 500), 600.0, RATE);
        assert_eq!(verdict.reason(), None, "{verdict:?}");
        assert_eq!(verdict.growth.len(), 3);
        assert!((verdict.cpu_per_m.unwrap() - 0.5).abs() < 1e-9);
        assert!((verdict.connection_rate - RATE).abs() < 1.0);
    }

    #[test]
    fn another_loads_transitions_are_not_the_agents_cost() {
        let mut samples = run(|_| 40_000);
        // Another namespace's churn of 100,000 transitions a second for the
        // middle third.
        for sample in samples.iter_mut() {
            let busy_s = (sample.elapsed_s.clamp(280.0, 440.0) - 280.0) as u64;
            sample.host_transitions += busy_s * 100_000;
        }
        let verdict = judge(&samples, 600.0, RATE);
        assert_eq!(verdict.reason(), None, "{verdict:?}");
        assert!((verdict.cpu_per_m_middle.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(verdict.host_transitions_per_connection, Some(10.0));
        assert_eq!(verdict.peak_host_transition_rate, 120_000.0);
    }

    #[test]
    fn steady_memory_growth_fails() {
        // 100 KiB a second: 16 MiB between the thirds' means.
        let verdict = judge(&run(|t| 40_000 + (t * 100.0) as u64), 600.0, RATE);
        let reason = verdict.reason().unwrap();
        assert!(reason.starts_with("RSS grew by 16.1MiB"), "{reason}");
    }

    #[test]
    fn growth_during_the_warm_up_is_ignored() {
        // TIME-WAIT fills for 60 s: 60 MiB more, then flat.
        let verdict = judge(
            &run(|t| 40_000 + (t.min(60.0) * 1000.0) as u64),
            600.0,
            RATE,
        );
        assert_eq!(verdict.reason(), None, "{verdict:?}");
        assert_eq!(warmup_s(600.0), 120.0);
        assert_eq!(warmup_s(180.0), 90.0);
    }

    #[test]
    fn leaked_descriptors_and_threads_fail() {
        let mut samples = run(|_| 40_000);
        for (i, sample) in samples.iter_mut().enumerate() {
            // One descriptor every 5 s, one thread a minute.
            sample.fds += i as u64;
            sample.threads += i as u64 / 12;
        }
        let verdict = judge(&samples, 600.0, RATE);
        assert_eq!(verdict.failures.len(), 2, "{verdict:?}");
        assert!(
            verdict.failures[0].starts_with("open descriptors grew by 33.0"),
            "{verdict:?}"
        );
        assert!(
            verdict.failures[1].starts_with("threads grew by 2.7"),
            "{verdict:?}"
        );
    }

    #[test]
    fn lost_events_failed_queries_and_a_stalled_load_fail() {
        let mut samples = run(|_| 40_000);
        // 12 events lost in the interval ending at 15 s, while another load
        // made 100,000 transitions a second from 5 s to 10 s.
        for sample in samples.iter_mut().skip(2) {
            sample.host_transitions += 500_000;
        }
        for sample in samples.iter_mut().skip(3) {
            sample.lost = 12;
        }
        let end = samples.len() - 1;
        samples[end].query_failures = 1;
        let verdict = judge(&samples, 600.0, RATE * 3.0);
        assert_eq!(
            verdict.losses,
            [Loss {
                at_s: 15.0,
                lost: 12,
                host_transition_rate: 120_000.0
            }]
        );
        assert_eq!(
            verdict.failures,
            [
                "the agent lost 12 events in 1 intervals (host-wide transitions there 120000-120000/s)",
                "1 queries to the agent failed",
                "the load made 2000 connections/s of the 6000 asked",
            ]
        );
        assert!(verdict.reason().unwrap().ends_with("/s) (and 2 more)"));
    }

    #[test]
    fn cpu_per_transition_that_grows_fails() {
        let mut samples = run(|_| 40_000);
        for sample in samples.iter_mut() {
            // Each transition costs more as time goes on.
            let minutes = sample.elapsed_s / 60.0;
            sample.cpu_s = sample.load_transitions() as f64 * 0.5e-6 * minutes * minutes;
        }
        let reason = judge(&samples, 600.0, RATE).reason().unwrap();
        assert!(
            reason.starts_with("CPU per million transitions grew"),
            "{reason}"
        );
    }

    #[test]
    fn a_run_too_short_for_thirds_fails() {
        let samples: Vec<Sample> = run(|_| 40_000).into_iter().take(20).collect();
        let reason = judge(&samples, 100.0, RATE).reason().unwrap();
        assert_eq!(
            reason,
            "2 samples after the 90 s warm-up: too few to tell growth"
        );
    }
}
