//! What the agent needs to load BPF programs, checked up front so a user
//! gets one clear sentence instead of an EPERM from deep inside the loader.

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
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
    if mask & (1u64 << CAP_SYS_ADMIN) != 0 {
        return Ok(());
    }
    match missing_of(mask, &[(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]) {
        None => Ok(()),
        Some(missing) => Err(MissingPrivileges { missing }),
    }
}

/// Of what reading other users' `/proc/PID/fd` takes (listing it
/// CAP_DAC_READ_SEARCH, reading its links CAP_SYS_PTRACE), what this
/// process lacks: `None` when it has both.
pub fn missing_for_other_users_files() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    missing_of(
        effective_capabilities(&status).unwrap_or(0),
        &[
            (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
            (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        ],
    )
}

/// The names of the `wanted` capabilities the mask lacks, if any.
fn missing_of(mask: u64, wanted: &[(u32, &str)]) -> Option<String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|&&(cap, _)| mask & (1u64 << cap) == 0)
        .map(|&(_, name)| name)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
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
    fn what_other_users_files_take_is_named() {
        let wanted = [
            (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
            (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        ];
        assert_eq!(missing_of(0x000001ffffffffff, &wanted), None);
        assert_eq!(
            missing_of(1 << CAP_DAC_READ_SEARCH, &wanted).as_deref(),
            Some("CAP_SYS_PTRACE")
        );
        assert_eq!(
            missing_of(0, &wanted).as_deref(),
            Some("CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE")
        );
    }

    #[test]
    fn cap_eff_is_parsed_from_proc_status() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name:\tcat\n"), None);
    }
}
