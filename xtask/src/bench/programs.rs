//! The BPF programs a tracer process holds, and their cost counters
//! (`run_time_ns`, `run_cnt`: kept by the kernel while
//! `kernel.bpf_stats_enabled` is 1), read from `/proc/PID/fdinfo` like
//! `bpftool prog show` does.
use std::{collections::BTreeMap, fs};

use anyhow::{Context, Result};

/// Stats of one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
    /// Runs the kernel skipped because the program would have nested in
    /// another on that CPU (for classic tracepoints and kprobes: in any
    /// other tracing program): events the tool never saw.
    pub recursion_misses: u64,
}

/// Programs by id.
pub type Programs = BTreeMap<u32, ProgramStats>;

/// The programs process `pid` holds descriptors of, with their names from
/// the kernel's program list.
pub fn of_process(pid: u32) -> Result<Programs> {
    let names = names()?;
    let mut programs = Programs::new();
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing the descriptors of process {pid}"))?;
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        if target.as_os_str() != "anon_inode:bpf-prog" {
            continue;
        }
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let Ok(text) = fs::read_to_string(&fdinfo) else {
            continue;
        };
        if let Some((id, mut stats)) = parse_fdinfo(&text) {
            stats.name = names.get(&id).cloned().unwrap_or_default();
            programs.insert(id, stats);
        }
    }
    Ok(programs)
}

/// Every loaded program's name by id.
fn names() -> Result<BTreeMap<u32, String>> {
    let mut names = BTreeMap::new();
    for info in aya::programs::loaded_programs() {
        let info = info.context("listing loaded BPF programs")?;
        names.insert(info.id(), info.name_as_str().unwrap_or_default().to_owned());
    }
    Ok(names)
}

/// `prog_id`, `run_time_ns`, `run_cnt` and `recursion_misses` of a program
/// descriptor's fdinfo.
fn parse_fdinfo(text: &str) -> Option<(u32, ProgramStats)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some((
        u32::try_from(field("prog_id")?).ok()?,
        ProgramStats {
            name: String::new(),
            run_time_ns: field("run_time_ns").unwrap_or(0),
            run_count: field("run_cnt").unwrap_or(0),
            recursion_misses: field("recursion_misses").unwrap_or(0),
        },
    ))
}

/// What ran between two readings of the same programs.
pub fn delta(before: &Programs, after: &Programs) -> Programs {
    after
        .iter()
        .map(|(id, now)| {
            let then = before.get(id).cloned().unwrap_or_default();
            (
                *id,
                ProgramStats {
                    name: now.name.clone(),
                    run_time_ns: now.run_time_ns.saturating_sub(then.run_time_ns),
                    run_count: now.run_count.saturating_sub(then.run_count),
                    recursion_misses: now.recursion_misses.saturating_sub(then.recursion_misses),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields_are_read_by_name() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t5\n\
                    prog_jited:\t1\nprog_tag:\t6deef7357e7b4530\nmemlock:\t4096\nprog_id:\t342\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t7\nverified_insns:\t40\n";
        let (id, stats) = parse_fdinfo(text).unwrap();
        assert_eq!(id, 342);
        assert_eq!((stats.run_time_ns, stats.run_count), (123456, 789));
        assert_eq!(stats.recursion_misses, 7);
        assert_eq!(parse_fdinfo("pos:\t0\n"), None);
    }

    #[test]
    fn deltas_subtract_what_ran_before() {
        let stats = |time, count| ProgramStats {
            name: "p".into(),
            run_time_ns: time,
            run_count: count,
            recursion_misses: count / 5,
        };
        let before = Programs::from([(1, stats(100, 10))]);
        let after = Programs::from([(1, stats(350, 15)), (2, stats(40, 4))]);
        let delta = delta(&before, &after);
        assert_eq!(delta[&1], stats(250, 5));
        assert_eq!(delta[&2], stats(40, 4), "a program loaded in between");
    }
}
