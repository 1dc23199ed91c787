//! Cgroup paths as runtimes make them (see each test), `/proc/PID/cgroup`
//! texts of v2, hybrid and v1 hosts, and the cache on a fake `/proc`.
use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A full container id; labels show its first 12 digits.
const ID: &str = "3f2a9c1b7d4e2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db0225";
const SHORT: &str = "3f2a9c1b7d4e";
const POD: &str = "8d4c6a1e-5b7f-4c3d-9e2a-1f0b6c8d7e9a";
const POD_UNDERSCORED: &str = "8d4c6a1e_5b7f_4c3d_9e2a_1f0b6c8d7e9a";

fn label(path: &str) -> Option<String> {
    label_from_cgroup(path).map(|workload| workload.to_string())
}

fn expect(path: &str, expected: &str) {
    assert_eq!(label(path).as_deref(), Some(expected), "{path}");
}

fn expect_none(path: &str) {
    assert_eq!(label(path), None, "{path}");
}

#[test]
fn docker_cgroupfs_driver() {
    expect(&format!("/docker/{ID}"), &format!("docker:{SHORT}"));
}

#[test]
fn docker_systemd_driver() {
    expect(
        &format!("/system.slice/docker-{ID}.scope"),
        &format!("docker:{SHORT}"),
    );
}

#[test]
fn rootless_docker_under_the_user_manager() {
    expect(
        &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"),
        &format!("docker:{SHORT}"),
    );
}

#[test]
fn docker_in_docker_is_labelled_by_the_inner_container() {
    let outer = "a".repeat(64);
    expect(
        &format!("/docker/{outer}/docker/{ID}"),
        &format!("docker:{SHORT}"),
    );
}

#[test]
fn nerdctl_systemd_driver() {
    // nerdctl asks for "system.slice:nerdctl:ID".
    expect(
        &format!("/system.slice/nerdctl-{ID}.scope"),
        &format!("containerd:{SHORT}"),
    );
}

#[test]
fn bare_containerd_namespaces_are_too_ambiguous() {
    expect_none(&format!("/default/{ID}"));
    expect_none(&format!("/k8s.io/{ID}"));
    expect_none(&format!("/actions_job/{ID}"));
}

#[test]
fn kubernetes_systemd_driver_containerd() {
    expect(
        &format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UNDERSCORED}.slice/cri-containerd-{ID}.scope"
        ),
        &format!("containerd:{SHORT} pod:{POD}"),
    );
}

#[test]
fn kubernetes_guaranteed_pods_have_no_qos_slice() {
    expect(
        &format!("/kubepods.slice/kubepods-pod{POD_UNDERSCORED}.slice/cri-containerd-{ID}.scope"),
        &format!("containerd:{SHORT} pod:{POD}"),
    );
}

#[test]
fn kubernetes_systemd_driver_crio_and_docker() {
    let pod = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UNDERSCORED}.slice"
    );
    expect(
        &format!("{pod}/crio-{ID}.scope"),
        &format!("cri-o:{SHORT} pod:{POD}"),
    );
    expect(
        &format!("{pod}/docker-{ID}.scope"),
        &format!("docker:{SHORT} pod:{POD}"),
    );
}

#[test]
fn kubernetes_cgroupfs_driver_names_no_runtime() {
    expect(
        &format!("/kubepods/burstable/pod{POD}/{ID}"),
        &format!("k8s:{SHORT} pod:{POD}"),
    );
    expect(
        &format!("/kubepods/pod{POD}/{ID}"),
        &format!("k8s:{SHORT} pod:{POD}"),
    );
}

#[test]
fn kubernetes_static_pods_have_hash_uids() {
    let uid = "2ed1b5ad28b1f4ae9e0a9bc6b36a2e4b";
    expect(
        &format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"
        ),
        &format!("containerd:{SHORT} pod:{uid}"),
    );
}

#[test]
fn kind_node_in_docker_is_labelled_by_the_pod_container() {
    let node = "b".repeat(64);
    expect(
        &format!(
            "/system.slice/docker-{node}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{POD_UNDERSCORED}.slice/cri-containerd-{ID}.scope"
        ),
        &format!("containerd:{SHORT} pod:{POD}"),
    );
}

#[test]
fn crio_systemd_and_cgroupfs_drivers() {
    expect(
        &format!("/machine.slice/crio-{ID}.scope"),
        &format!("cri-o:{SHORT}"),
    );
    expect(
        &format!("/kubepods/besteffort/pod{POD}/crio-{ID}"),
        &format!("cri-o:{SHORT} pod:{POD}"),
    );
}

#[test]
fn crio_conmon_is_labelled_as_its_container() {
    expect(
        &format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UNDERSCORED}.slice/crio-conmon-{ID}.scope"
        ),
        &format!("cri-o:{SHORT} pod:{POD}"),
    );
}

#[test]
fn crun_sub_cgroups_keep_the_container_label() {
    expect(
        &format!("/machine.slice/crio-{ID}.scope/container"),
        &format!("cri-o:{SHORT}"),
    );
    expect(
        &format!("/machine.slice/libpod-{ID}.scope/container/exec"),
        &format!("podman:{SHORT}"),
    );
}

#[test]
fn podman_forms() {
    expect(
        &format!("/machine.slice/libpod-{ID}.scope"),
        &format!("podman:{SHORT}"),
    );
    expect(
        &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
        &format!("podman:{SHORT}"),
    );
    expect(
        &format!("/libpod_parent/libpod-{ID}"),
        &format!("podman:{SHORT}"),
    );
    expect(
        &format!("/machine.slice/libpod-conmon-{ID}.scope"),
        &format!("podman:{SHORT}"),
    );
}

#[test]
fn lxc_forms() {
    expect("/lxc.payload.web1", "lxc:web1");
    expect("/lxc.payload.web1/system.slice/nginx.service", "lxc:web1");
    expect("/lxc.monitor.web1", "lxc:web1");
    expect("/lxc/web1", "lxc:web1");
    expect("/lxc/web1/init.scope", "lxc:web1");
    expect_none("/lxc");
    expect_none("/lxc.payload.");
}

#[test]
fn docker_inside_lxd_is_labelled_by_the_inner_container() {
    expect(
        &format!("/lxc.payload.dev/system.slice/docker-{ID}.scope"),
        &format!("docker:{SHORT}"),
    );
}

#[test]
fn systemd_services() {
    expect("/system.slice/nginx.service", "systemd:nginx.service");
    expect("/system.slice/docker.service", "systemd:docker.service");
    expect(
        "/system.slice/system-getty.slice/getty@tty1.service",
        "systemd:getty@tty1.service",
    );
    expect(
        "/user.slice/user-1000.slice/user@1000.service/init.scope",
        "systemd:user@1000.service",
    );
    expect(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service",
        "systemd:pipewire.service",
    );
    expect(
        "/system.slice/system-systemd\\x2dfsck.slice/systemd-fsck@dev-sda1.service",
        "systemd:systemd-fsck@dev-sda1.service",
    );
}

#[test]
fn per_connection_instances_fold_into_their_template() {
    expect(
        "/system.slice/system-sshd.slice/sshd@12-10.0.0.1:22-10.0.0.2:51234.service",
        "systemd:sshd@.service",
    );
    expect(
        "/system.slice/system-sshd\\x2dunix\\x2dlocal.slice/sshd-unix-local@3-4242-0.service",
        "systemd:sshd-unix-local@.service",
    );
}

#[test]
fn sessions_and_transient_units_have_no_label_of_their_own() {
    expect_none("/user.slice/user-1000.slice/session-3.scope");
    expect_none("/user.slice/user-1000.slice/session-c12.scope");
    expect_none("/system.slice/run-u42.service");
    expect_none("/system.slice/run-r0123456789abcdef0123456789abcdef.service");
    expect_none("/system.slice/run-p1234-i5678.service");
    expect(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.service",
        "systemd:user@1000.service",
    );
    expect(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope",
        "systemd:user@1000.service",
    );
    // Named like systemd-run's units, but not generated by it.
    expect(
        "/system.slice/run-rabbit.service",
        "systemd:run-rabbit.service",
    );
    expect(
        "/system.slice/run-postgres.service",
        "systemd:run-postgres.service",
    );
}

#[test]
fn roots_scopes_slices_and_unknown_paths_have_no_label() {
    expect_none("/");
    expect_none("");
    expect_none("/init.scope");
    expect_none("/system.slice");
    expect_none("/machine.slice/machine-qemu\\x2d1\\x2dvm.scope");
    expect_none("/process_api/6229868754949204c3446e8b1d1e323f");
    expect_none("/system.slice/.service");
}

#[test]
fn almost_container_ids_are_rejected() {
    expect_none(&format!("/docker/{}", &ID[..63]));
    expect_none(&format!("/docker/{ID}0"));
    expect_none(&format!("/docker/{}", ID.to_uppercase()));
    expect_none(&format!("/system.slice/docker-{}.scope", &ID[..63]));
    expect_none(&format!("/system.slice/docker-{}x.scope", &ID[..63]));
    // A bare id needs a pod with a well-formed uid.
    expect_none(&format!("/kubepods/burstable/pod1234/{ID}"));
    expect_none(&format!("/kubepods/burstable/{ID}"));
}

#[test]
fn a_container_seen_from_another_cgroup_namespace() {
    // Relative to a reader in a container with its own cgroup namespace.
    expect(
        &format!("/../../system.slice/docker-{ID}.scope"),
        &format!("docker:{SHORT}"),
    );
}

#[test]
fn display_and_kind() {
    let workload = Workload {
        runtime: Runtime::CriO,
        id: SHORT.to_owned(),
        pod_uid: Some(POD.to_owned()),
    };
    assert_eq!(workload.kind(), "cri-o");
    assert_eq!(workload.to_string(), format!("cri-o:{SHORT} pod:{POD}"));
    let kinds = [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Kubernetes,
        Runtime::Lxc,
        Runtime::Systemd,
    ]
    .map(Runtime::kind);
    assert_eq!(
        kinds,
        [
            "docker",
            "containerd",
            "cri-o",
            "podman",
            "k8s",
            "lxc",
            "systemd"
        ]
    );
}

#[test]
fn cgroup_path_on_a_pure_v2_host() {
    let text = format!("0::/system.slice/docker-{ID}.scope\n");
    assert_eq!(
        cgroup_path(&text),
        Some(format!("/system.slice/docker-{ID}.scope").as_str())
    );
    assert_eq!(cgroup_path("0::/\n"), Some("/"));
}

#[test]
fn cgroup_path_on_a_hybrid_host_prefers_name_systemd() {
    // Docker's cgroupfs driver on a hybrid host: the unified hierarchy
    // still shows dockerd's service.
    let text = format!(
        "12:memory:/docker/{ID}\n\
         11:cpu,cpuacct:/docker/{ID}\n\
         1:name=systemd:/docker/{ID}\n\
         0::/system.slice/docker.service\n"
    );
    assert_eq!(cgroup_path(&text), Some(format!("/docker/{ID}").as_str()));
    let same = "1:name=systemd:/system.slice/nginx.service\n0::/system.slice/nginx.service\n";
    assert_eq!(cgroup_path(same), Some("/system.slice/nginx.service"));
}

#[test]
fn cgroup_path_falls_back_to_v2_then_any_controller() {
    let text = "1:name=systemd:/\n0::/system.slice/nginx.service\n";
    assert_eq!(cgroup_path(text), Some("/system.slice/nginx.service"));
    // As on this project's CI sandbox: everything at the root but memory.
    let sandbox = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/62298687\n3:cpuset:/\n0::/\n";
    assert_eq!(cgroup_path(sandbox), Some("/process_api/62298687"));
}

#[test]
fn cgroup_path_on_a_v1_host() {
    let text = format!(
        "11:pids:/system.slice/docker-{ID}.scope\n\
         4:cpu,cpuacct:/system.slice/docker-{ID}.scope\n\
         1:name=systemd:/system.slice/docker-{ID}.scope\n"
    );
    let path = cgroup_path(&text);
    assert_eq!(
        path,
        Some(format!("/system.slice/docker-{ID}.scope").as_str())
    );
    assert_eq!(
        path.and_then(label_from_cgroup).map(|w| w.to_string()),
        Some(format!("docker:{SHORT}"))
    );
    assert_eq!(
        cgroup_path("3:cpu:/lxc/web1\n2:memory:/lxc/web1\n"),
        Some("/lxc/web1")
    );
}

#[test]
fn cgroup_path_keeps_colons_and_drops_the_deleted_mark() {
    let sshd = "0::/system.slice/system-sshd.slice/sshd@1-10.0.0.1:22-10.0.0.2:5.service\n";
    assert_eq!(
        cgroup_path(sshd),
        Some("/system.slice/system-sshd.slice/sshd@1-10.0.0.1:22-10.0.0.2:5.service")
    );
    assert_eq!(
        cgroup_path("0::/system.slice/nginx.service (deleted)\n"),
        Some("/system.slice/nginx.service")
    );
}

#[test]
fn cgroup_path_of_nothing_or_garbage() {
    assert_eq!(cgroup_path(""), None);
    assert_eq!(cgroup_path("garbage\n0:\n1:cpu:relative\n"), None);
}

/// A `/proc/PID/stat` line for `comm` with start time `start`.
fn stat_line(comm: &[u8], start: u64) -> Vec<u8> {
    let mut line = b"4242 (".to_vec();
    line.extend_from_slice(comm);
    line.extend_from_slice(
        format!(
            ") S 1 4242 4242 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 1 0 {start} 12345678 900 \
             18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n"
        )
        .as_bytes(),
    );
    line
}

#[test]
fn start_time_is_field_22() {
    assert_eq!(start_time(&stat_line(b"nginx", 814826)), Some(814826));
    // This very line, from `cat /proc/self/stat`.
    let real = b"11983 (cat) R 11980 11980 11401 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 814826 3133440 352 18446744073709551615";
    assert_eq!(start_time(real), Some(814826));
}

#[test]
fn start_time_counts_fields_after_the_last_parenthesis() {
    assert_eq!(start_time(&stat_line(b"a) b (c) 1 2", 77)), Some(77));
    assert_eq!(start_time(&stat_line(b")", 78)), Some(78));
    assert_eq!(start_time(&stat_line(b"", 79)), Some(79));
    assert_eq!(start_time(&stat_line(b"\xff\xfe bad utf8", 80)), Some(80));
}

#[test]
fn start_time_of_truncated_or_garbage_stat() {
    assert_eq!(start_time(b""), None);
    assert_eq!(start_time(b"4242 (nginx"), None);
    assert_eq!(start_time(b"4242 (nginx) S 1 2 3"), None);
    assert_eq!(start_time(&stat_line(b"x", 0)[..40]), None);
}

/// A fake `/proc` in the temp dir, removed on drop.
struct FakeProc(PathBuf);

impl FakeProc {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "socktrace-container-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(name);
        fs::create_dir_all(&root).expect("create fake proc");
        FakeProc(root)
    }

    /// Adds (or replaces) process `pid` started at `start` in `cgroup`.
    fn process(&self, pid: u32, start: u64, cgroup: &str) {
        let dir = self.0.join(pid.to_string());
        fs::create_dir_all(&dir).expect("create pid dir");
        fs::write(dir.join("stat"), stat_line(b"proc (x)", start)).expect("write stat");
        fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).expect("write cgroup");
    }

    fn exit(&self, pid: u32) {
        fs::remove_dir_all(self.0.join(pid.to_string())).expect("remove pid dir");
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn label_of(labels: &mut ContainerLabels, pid: u32) -> Option<String> {
    labels.of(pid).map(|workload| workload.to_string())
}

#[test]
fn the_cache_reads_once_and_keeps_answers_until_refresh() {
    let proc = FakeProc::new();
    let docker = format!("docker:{SHORT}");
    proc.process(10, 100, &format!("/system.slice/docker-{ID}.scope"));
    proc.process(11, 101, "/user.slice/user-1000.slice/session-3.scope");
    let mut labels = ContainerLabels::new(proc.0.clone(), 100);
    assert_eq!(label_of(&mut labels, 10).as_deref(), Some(docker.as_str()));
    assert_eq!(label_of(&mut labels, 11), None);
    assert_eq!(label_of(&mut labels, 12), None, "no such process");
    assert_eq!(labels.entries.len(), 3, "absent answers are cached too");

    // Cached: a changed file is not read again.
    proc.process(10, 100, "/system.slice/nginx.service");
    assert_eq!(label_of(&mut labels, 10).as_deref(), Some(docker.as_str()));
    // Until forgotten.
    labels.forget(10);
    assert_eq!(
        label_of(&mut labels, 10).as_deref(),
        Some("systemd:nginx.service")
    );
}

#[test]
fn refresh_drops_exited_and_reused_pids_only() {
    let proc = FakeProc::new();
    proc.process(10, 100, "/system.slice/nginx.service");
    proc.process(11, 101, "/system.slice/sshd.service");
    proc.process(12, 102, "/system.slice/cron.service");
    let mut labels = ContainerLabels::new(proc.0.clone(), 100);
    for pid in [10, 11, 12, 13] {
        labels.of(pid);
    }
    proc.exit(11);
    proc.process(12, 555, &format!("/docker/{ID}"));
    proc.process(13, 103, "/system.slice/redis.service");
    labels.refresh();
    let mut kept: Vec<u32> = labels.entries.keys().copied().collect();
    kept.sort_unstable();
    assert_eq!(kept, [10], "11 exited, 12 reused, 13 was absent when read");
    assert_eq!(
        label_of(&mut labels, 12),
        Some(format!("docker:{SHORT}")),
        "the new process behind a reused pid"
    );
    assert_eq!(
        label_of(&mut labels, 13).as_deref(),
        Some("systemd:redis.service")
    );
}

#[test]
fn the_cache_is_cleared_when_full() {
    let proc = FakeProc::new();
    for pid in 1..=4 {
        proc.process(
            pid,
            u64::from(pid),
            &format!("/system.slice/s{pid}.service"),
        );
    }
    let mut labels = ContainerLabels::new(proc.0.clone(), 3);
    for pid in 1..=3 {
        labels.of(pid);
    }
    assert_eq!(labels.entries.len(), 3);
    labels.of(2);
    assert_eq!(labels.entries.len(), 3, "a hit does not evict");
    assert_eq!(labels.clears, 0);
    assert_eq!(
        label_of(&mut labels, 4).as_deref(),
        Some("systemd:s4.service")
    );
    assert_eq!(labels.entries.len(), 1, "cleared, then the new pid");
    assert_eq!(labels.clears, 1, "and counted in the warning");
    assert_eq!(
        label_of(&mut labels, 1).as_deref(),
        Some("systemd:s1.service")
    );

    let mut tiny = ContainerLabels::new(proc.0.clone(), 0);
    assert_eq!(
        label_of(&mut tiny, 1).as_deref(),
        Some("systemd:s1.service")
    );
    assert_eq!(
        label_of(&mut tiny, 2).as_deref(),
        Some("systemd:s2.service")
    );
    assert_eq!(tiny.entries.len(), 1);
}

#[test]
fn this_process_in_real_proc_matches_the_pure_parsers() {
    let text = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let expected = cgroup_path(&text).and_then(label_from_cgroup);
    let mut labels = ContainerLabels::new(PathBuf::from("/proc"), 16);
    let pid = std::process::id();
    assert_eq!(
        labels.of(pid).map(|label| label.to_string()),
        expected.map(|workload| workload.to_string())
    );
    assert!(
        labels.entries[&pid].start_time.is_some(),
        "this process's own stat parses"
    );
    labels.refresh();
    assert!(labels.entries.contains_key(&pid), "alive and not reused");
}
