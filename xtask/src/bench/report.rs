//! What the bench measured, reduced to medians over rounds per load,
//! checked against the targets, and written as JSON and as the README's
//! tables.
use std::{fmt, fs, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{
    BenchArgs,
    churn::Window,
    peers::{AGENT, FLOOR, KERNEL_SIDE_ONLY},
    programs::Programs,
    tracer::TracerSpec,
};
use crate::cmd;

/// The configuration name of the window without a tracer.
const UNTRACED: &str = "no tracer";

/// The targets (issue 21): the rate kept with the agent under every load,
/// with socktrace's kernel side alone, and the agent's CPU per million
/// transitions.
const TARGET_AGENT_RATIO: f64 = 0.93;
const TARGET_KERNEL_SIDE_RATIO: f64 = 0.95;
const TARGET_AGENT_CPU_PER_MILLION: f64 = 0.15;
const TARGET_INGEST_PER_SECOND: f64 = 2e6;
const TARGET_BYTES_PER_SOCKET: f64 = 160.0;
/// A metrics scrape with 10,000 sockets tracked, in agent CPU.
const TARGET_SCRAPE_NS: f64 = 1e6;

/// README markers around the generated table.
pub const README_BEGIN: &str = "<!-- bench:begin (cargo xtask bench --update-readme) -->";
pub const README_END: &str = "<!-- bench:end -->";

/// What a tracer cost.
pub struct Outcome {
    /// Its programs' counters over the window with the kernel's
    /// statistics on ...
    pub cost: Programs,
    /// ... and the churn during that window.
    pub cost_window: Window,
    /// Its CPU time during the churn window.
    pub cpu_seconds: f64,
    /// Events it lost from start to stop.
    pub lost: u64,
}

/// Whether the kernel's `name` for a program (its first 15 characters) is
/// `program`'s.
fn names(program: &str, name: &str) -> bool {
    !name.is_empty() && program.starts_with(name)
}

/// One window of one configuration.
pub struct Measurement {
    config: String,
    /// The load's short name, and what it is.
    load: String,
    load_description: String,
    round: usize,
    window: Window,
    state_programs: &'static [&'static str],
    outcome: Option<Outcome>,
}

impl Measurement {
    pub fn untraced(window: Window) -> Self {
        Measurement {
            config: UNTRACED.into(),
            load: String::new(),
            load_description: String::new(),
            round: 0,
            window,
            state_programs: &[],
            outcome: None,
        }
    }

    pub fn traced(spec: &TracerSpec, window: Window, outcome: Outcome) -> Self {
        Measurement {
            config: spec.name.clone(),
            load: String::new(),
            load_description: String::new(),
            round: 0,
            window,
            state_programs: spec.state_programs,
            outcome: Some(outcome),
        }
    }

    /// The measurement as made under `load` (`description`) in `round`.
    pub fn under(self, load: &str, description: &str, round: usize) -> Self {
        Measurement {
            load: load.to_owned(),
            load_description: description.to_owned(),
            round,
            ..self
        }
    }

    /// Transitions in the cost window: the run count of the tracer's first
    /// state program.
    fn cost_transitions(&self) -> Option<u64> {
        let first = self.state_programs.first()?;
        let programs = &self.outcome.as_ref()?.cost;
        programs
            .values()
            .find(|p| names(first, &p.name))
            .map(|p| p.run_count)
    }

    /// Transitions in the churn window, where the kernel does not count
    /// them: connections times the transitions per connection of the cost
    /// window.
    fn transitions(&self) -> Option<u64> {
        let cost_connections = self.outcome.as_ref()?.cost_window.connections;
        let per_connection = per(self.cost_transitions()? as f64, cost_connections)?;
        Some((self.window.connections as f64 * per_connection).round() as u64)
    }

    /// Nanoseconds of every program of the tracer per transition.
    fn kernel_ns_per_transition(&self) -> Option<f64> {
        let total: u64 = self
            .outcome
            .as_ref()?
            .cost
            .values()
            .map(|p| p.run_time_ns)
            .sum();
        per(total as f64, self.cost_transitions()?)
    }

    /// Nanoseconds of the state programs alone per transition.
    fn state_ns_per_transition(&self) -> Option<f64> {
        let programs = &self.outcome.as_ref()?.cost;
        let total: u64 = programs
            .values()
            .filter(|p| self.state_programs.iter().any(|s| names(s, &p.name)))
            .map(|p| p.run_time_ns)
            .sum();
        per(total as f64, self.cost_transitions()?)
    }

    /// Tracer CPU seconds (user + system) per million transitions.
    fn cpu_per_million(&self) -> Option<f64> {
        let cpu = self.outcome.as_ref()?.cpu_seconds;
        per(cpu * 1e6, self.transitions()?)
    }
}

fn per(amount: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| amount / count as f64)
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:.0} connections/s",
            self.config,
            self.window.rate()
        )?;
        if self.window.failures > 0 {
            write!(f, " ({} connects failed)", self.window.failures)?;
        }
        if let Some(outcome) = &self.outcome {
            write!(
                f,
                ", {} transitions, {} ns each in the kernel, {:.2} s CPU, {} lost",
                self.transitions().unwrap_or(0),
                self.kernel_ns_per_transition()
                    .map_or("?".into(), |ns| format!("{ns:.0}")),
                outcome.cpu_seconds,
                outcome.lost
            )?;
        }
        Ok(())
    }
}

/// The userspace benchmarks' results.
pub struct Userspace {
    pub ingest_per_second: f64,
    pub bytes_per_socket: f64,
    /// Mean time of one metrics scrape with 10,000 sockets tracked.
    pub scrape_ns: f64,
}

/// Runs the criterion ingest and metrics scrape benchmarks and the table
/// memory benchmark.
pub fn userspace_benchmarks() -> Result<Userspace> {
    let root = cmd::workspace_root();
    for bench in ["ingest", "metrics_scrape"] {
        cmd::run(Command::new(cmd::cargo_program()).current_dir(&root).args([
            "bench",
            "--package",
            "socktrace",
            "--bench",
            bench,
            "--",
            "--noplot",
        ]))?;
    }
    let ingest_per_second = criterion_throughput(&root.join("target/criterion"))?;
    let scrape_ns = criterion_mean_ns(&root.join("target/criterion").join(SCRAPE_BENCHMARK))?;
    let output = Command::new(cmd::cargo_program())
        .current_dir(&root)
        .env("SOCKTRACE_BENCH_JSON", "1")
        .args(["bench", "--package", "socktrace", "--bench", "table_memory"])
        .output()
        .context("running the table memory benchmark")?;
    if !output.status.success() {
        bail!(
            "the table memory benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .context("the table memory benchmark printed no JSON line")?;
    let memory: Value = serde_json::from_str(line)?;
    Ok(Userspace {
        ingest_per_second,
        scrape_ns,
        bytes_per_socket: memory["bytes_per_socket"]
            .as_f64()
            .context("bytes_per_socket")?,
    })
}

/// The criterion benchmark that measures ingest: decoding and the table.
const INGEST_BENCHMARK: &str = "decode_apply";

/// The criterion benchmark that measures a metrics scrape.
const SCRAPE_BENCHMARK: &str = "scrape_10000_sockets";

/// The mean time per iteration of the criterion benchmark in `directory`.
fn criterion_mean_ns(directory: &Path) -> Result<f64> {
    let path = directory.join("new/estimates.json");
    let estimates: Value = serde_json::from_str(
        &fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    estimates["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no mean in {}", path.display()))
}

/// Elements per second of the ingest benchmark (its element throughput
/// over its mean time per iteration).
fn criterion_throughput(directory: &Path) -> Result<f64> {
    let mut found = None;
    let mut stack = vec![directory.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/benchmark.json")
                && path.components().any(|c| c.as_os_str() == INGEST_BENCHMARK)
            {
                let benchmark: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
                let Some(elements) = benchmark["throughput"]["Elements"].as_f64() else {
                    continue;
                };
                let estimates: Value = serde_json::from_str(&fs::read_to_string(
                    path.with_file_name("estimates.json"),
                )?)?;
                let mean_ns = estimates["mean"]["point_estimate"]
                    .as_f64()
                    .context("criterion mean")?;
                found = Some(elements / (mean_ns / 1e9));
            }
        }
    }
    found.context("no criterion benchmark with an element throughput was found")
}

/// Medians per load and configuration, and the targets.
pub struct Report {
    seconds: u64,
    rounds: usize,
    sections: Vec<Section>,
    unavailable: Vec<(String, String)>,
    userspace: Option<Userspace>,
}

/// The rows of one load.
struct Section {
    load: String,
    description: String,
    rows: Vec<Row>,
}

struct Row {
    config: String,
    rate: f64,
    ratio: Option<f64>,
    kernel_ns: Option<f64>,
    state_ns: Option<f64>,
    lost: Option<u64>,
    cpu_per_million: Option<f64>,
    transitions_per_second: Option<f64>,
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The names of `items` in order of first appearance.
fn in_order<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for item in items {
        if !names.iter().any(|name| name == item) {
            names.push(item.to_owned());
        }
    }
    names
}

impl Section {
    fn new(load: String, measurements: &[&Measurement]) -> Self {
        let description = measurements
            .first()
            .map(|m| m.load_description.clone())
            .unwrap_or_default();
        let mut configs = in_order(measurements.iter().map(|m| m.config.as_str()));
        configs.sort_by_key(|c| c != UNTRACED);
        let untraced_in = |round: usize| {
            measurements
                .iter()
                .find(|m| m.round == round && m.config == UNTRACED)
                .map(|m| m.window.rate())
        };
        let rows = configs
            .into_iter()
            .map(|config| {
                let of: Vec<&&Measurement> =
                    measurements.iter().filter(|m| m.config == config).collect();
                let collect = |f: &dyn Fn(&Measurement) -> Option<f64>| {
                    median(of.iter().filter_map(|m| f(m)).collect())
                };
                Row {
                    rate: collect(&|m| Some(m.window.rate())).unwrap_or(0.0),
                    ratio: (config != UNTRACED)
                        .then(|| collect(&|m| Some(m.window.rate() / untraced_in(m.round)?)))
                        .flatten(),
                    kernel_ns: collect(&Measurement::kernel_ns_per_transition),
                    state_ns: collect(&Measurement::state_ns_per_transition),
                    lost: (config != UNTRACED).then(|| {
                        of.iter()
                            .filter_map(|m| m.outcome.as_ref())
                            .map(|o| o.lost)
                            .sum()
                    }),
                    cpu_per_million: collect(&Measurement::cpu_per_million),
                    transitions_per_second: collect(&|m| {
                        Some(m.transitions()? as f64 / m.window.seconds)
                    }),
                    config,
                }
            })
            .collect();
        Section {
            load,
            description,
            rows,
        }
    }

    fn row(&self, config: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.config == config)
    }

    /// This load's targets, each with the figure measured and whether it is met.
    fn targets(&self) -> Vec<(String, String, bool)> {
        let mut targets = Vec::new();
        let agent = self.row(AGENT);
        let best_peer = self
            .rows
            .iter()
            .filter(|r| {
                r.config != UNTRACED && r.config != FLOOR && !r.config.starts_with("socktrace")
            })
            .filter_map(|p| p.ratio)
            .fold(None, |best: Option<f64>, ratio| {
                Some(best.map_or(ratio, |b| b.max(ratio)))
            });
        let floor = self.row(FLOOR).and_then(|r| r.ratio);
        if let Some(ratio) = agent.and_then(|a| a.ratio) {
            let mut beside = Vec::new();
            if let Some(best) = best_peer {
                beside.push(format!("best peer {:.1}%", best * 100.0));
            }
            if let Some(floor) = floor {
                beside.push(format!(
                    "a bare count() on the tracepoint {:.1}%",
                    floor * 100.0
                ));
            }
            let beside = if beside.is_empty() {
                String::new()
            } else {
                format!(" ({})", beside.join("; "))
            };
            targets.push((
                format!(
                    "{}: the agent keeps >= {:.0}% of the untraced rate",
                    self.load,
                    TARGET_AGENT_RATIO * 100.0
                ),
                format!("{:.1}%{beside}", ratio * 100.0),
                ratio >= TARGET_AGENT_RATIO,
            ));
        }
        if let Some(ratio) = self.row(KERNEL_SIDE_ONLY).and_then(|r| r.ratio) {
            targets.push((
                format!(
                    "{}: the kernel side alone keeps >= {:.0}%",
                    self.load,
                    TARGET_KERNEL_SIDE_RATIO * 100.0
                ),
                format!("{:.1}%", ratio * 100.0),
                ratio >= TARGET_KERNEL_SIDE_RATIO,
            ));
        }
        if let Some(cpu) = agent.and_then(|a| a.cpu_per_million) {
            targets.push((
                format!(
                    "{}: agent CPU <= {TARGET_AGENT_CPU_PER_MILLION} s per M transitions",
                    self.load
                ),
                format!("{cpu:.2} s"),
                cpu <= TARGET_AGENT_CPU_PER_MILLION,
            ));
        }
        if let Some(lost) = agent.and_then(|a| a.lost) {
            targets.push((
                format!("{}: zero lost events with the agent", self.load),
                format!("{lost} lost"),
                lost == 0,
            ));
        }
        targets
    }

    fn markdown(&self, out: &mut String) {
        let optional = |value: Option<f64>, digits: usize| {
            value.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
        };
        out.push_str(&format!(
            "{} ({}):\n\n\
             | configuration | connections/s | vs untraced | transitions/s | kernel ns per transition (all programs) | state programs ns per transition | lost events | tracer CPU s per M transitions |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            self.load, self.description
        ));
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
                row.config,
                row.rate,
                row.ratio
                    .map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                optional(row.transitions_per_second, 0),
                optional(row.kernel_ns, 0),
                optional(row.state_ns, 0),
                row.lost.map_or("-".to_owned(), |l| l.to_string()),
                optional(row.cpu_per_million, 2),
            ));
        }
        out.push('\n');
    }

    fn to_json(&self) -> Value {
        json!({
            "load": self.load,
            "description": self.description,
            "configurations": self.rows.iter().map(|r| json!({
                "name": r.config,
                "connections_per_second": r.rate,
                "ratio_to_untraced": r.ratio,
                "transitions_per_second": r.transitions_per_second,
                "kernel_ns_per_transition": r.kernel_ns,
                "state_programs_ns_per_transition": r.state_ns,
                "lost_events": r.lost,
                "tracer_cpu_seconds_per_million_transitions": r.cpu_per_million,
            })).collect::<Vec<_>>(),
        })
    }
}

impl Report {
    pub fn new(
        args: &BenchArgs,
        measurements: Vec<Measurement>,
        unavailable: Vec<(String, String)>,
        userspace: Option<Userspace>,
    ) -> Self {
        let sections = in_order(measurements.iter().map(|m| m.load.as_str()))
            .into_iter()
            .map(|load| {
                let of: Vec<&Measurement> =
                    measurements.iter().filter(|m| m.load == load).collect();
                Section::new(load, &of)
            })
            .collect();
        Report {
            seconds: args.seconds,
            rounds: args.rounds,
            sections,
            unavailable,
            userspace,
        }
    }

    /// Each target with the figure measured and whether it is met.
    fn targets(&self) -> Vec<(String, String, bool)> {
        let mut targets: Vec<_> = self.sections.iter().flat_map(Section::targets).collect();
        if let Some(userspace) = &self.userspace {
            targets.push((
                "ingest >= 2M events/s on one core".into(),
                format!("{:.2}M events/s", userspace.ingest_per_second / 1e6),
                userspace.ingest_per_second >= TARGET_INGEST_PER_SECOND,
            ));
            targets.push((
                "<= 160 B per tracked socket (1M sockets)".into(),
                format!("{:.0} B", userspace.bytes_per_socket),
                userspace.bytes_per_socket <= TARGET_BYTES_PER_SOCKET,
            ));
            targets.push((
                "a metrics scrape < 1 ms of agent CPU at 10,000 sockets".into(),
                format!("{:.0} µs", userspace.scrape_ns / 1e3),
                userspace.scrape_ns < TARGET_SCRAPE_NS,
            ));
        }
        targets
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} rounds of {} s per configuration and load, medians.\n\n",
            self.rounds, self.seconds
        );
        for section in &self.sections {
            section.markdown(&mut out);
        }
        out.push_str("| target | measured | met |\n| --- | --- | --- |\n");
        for (target, measured, met) in self.targets() {
            out.push_str(&format!(
                "| {target} | {measured} | {} |\n",
                if met { "yes" } else { "**no**" }
            ));
        }
        if !self.unavailable.is_empty() {
            out.push('\n');
            for (name, why) in &self.unavailable {
                out.push_str(&format!("- not run: {name}: {why}\n"));
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "seconds_per_window": self.seconds,
            "rounds": self.rounds,
            "loads": self.sections.iter().map(Section::to_json).collect::<Vec<_>>(),
            "ingest_events_per_second": self.userspace.as_ref().map(|u| u.ingest_per_second),
            "table_bytes_per_socket": self.userspace.as_ref().map(|u| u.bytes_per_socket),
            "metrics_scrape_ns": self.userspace.as_ref().map(|u| u.scrape_ns),
            "targets": self.targets().into_iter().map(|(target, measured, met)| json!({
                "target": target, "measured": measured, "met": met,
            })).collect::<Vec<_>>(),
            "not_run": self.unavailable.iter().map(|(name, why)| json!({
                "name": name, "why": why,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Replaces the text between the README's bench markers with `table`.
pub fn update_readme(
    readme: &Path,
    begin_marker: &str,
    end_marker: &str,
    table: &str,
) -> Result<()> {
    let text = fs::read_to_string(readme)?;
    let (Some(begin), Some(end)) = (text.find(begin_marker), text.find(end_marker)) else {
        bail!(
            "{} has no `{begin_marker}` ... `{end_marker}` markers",
            readme.display()
        );
    };
    let updated = format!("{}{begin_marker}\n{table}{}", &text[..begin], &text[end..]);
    fs::write(readme, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
