//! What the agent needs to load BPF programs, checked up front so a user
//! gets one clear sentence instead of an EPERM from deep inside the loader.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities the agent lacks.
#[derive(Debug, thiserror::Error)]
#[error("socktrace needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {missing})")]
pub struct MissingPrivileges {
    pub missing: String,
}

/// Checks the calling process's effective capabilities.
pub fn require_tracing_privileges() -> Result<(), MissingPrivileges> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    check(effective_capabilities(&status))
}

/// Decides from an effective capability mask (`CapEff`).
pub fn check(effective: Option<u64>) -> Result<(), MissingPrivileges> {
    let Some(mask) = effective else {
        return Err(MissingPrivileges {
            missing: "could not read CapEff from /proc/self/status".into(),
        });
    };
    let has = |cap: u32| mask & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<_> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    Err(MissingPrivileges {
        missing: missing.join(", "),
    })
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
pub fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_bpf_plus_perfmon_pass() {
        assert!(check(Some(0x000001ffffffffff)).is_ok());
        assert!(check(Some(1 << CAP_SYS_ADMIN)).is_ok());
        assert!(check(Some((1 << CAP_BPF) | (1 << CAP_PERFMON))).is_ok());
    }

    #[test]
    fn a_plain_user_is_told_what_is_missing() {
        let error = check(Some(0)).unwrap_err();
        assert_eq!(error.missing, "CAP_BPF, CAP_PERFMON");
        let error = check(Some(1 << CAP_BPF)).unwrap_err();
        assert_eq!(error.missing, "CAP_PERFMON");
        assert!(error.to_string().starts_with("socktrace needs root"));
    }

    #[test]
    fn cap_eff_is_parsed_from_proc_status() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name:\tcat\n"), None);
    }
}
