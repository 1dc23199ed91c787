//! A listing does not hold up the ring: while the tracer takes a listing (a
//! sock_diag dump in every namespace it follows), it goes on draining the
//! kernel's ring buffer, so a listing that lasts longer than the ring can
//! hold the transitions coming meanwhile loses none of them.
//!
//! Each namespace's dump walks the kernel's one table of connected and
//! timewait sockets, the whole host's (a namespace gets a table of its own
//! only with `tcp_child_ehash_entries`). A crowd of timewait sockets in a
//! namespace the tracer does not follow makes every followed namespace's
//! dump long while it finds nothing to apply; a steady churn in a followed
//! namespace, whose connections leave no timewait socket, fills a small
//! ring faster than such a listing lasts.
use std::time::{Duration, Instant};

use socktrace_integration_tests::{Agent, Family, NetNs, churn::Churn, tcp};

/// Timewait sockets in the namespace nobody follows.
const CROWD: usize = 100_000;
/// Threads making them, each to a listener of its own (a listener's
/// clients have at most one timewait socket per local port).
const CROWD_THREADS: usize = 4;
/// Empty namespaces followed beside the churn's: each one's dump walks the
/// crowd. With ten, a fast machine listed in under 100 ms, too short for
/// the churn to fill the ring.
const EMPTY_NAMESPACES: usize = 20;
/// The ring, in KiB: about 630 records of 104 bytes.
const RING_KIB: u64 = 64;
const RECORD_BYTES: u64 = 104;
const CHURN_PER_SECOND: u32 = 2_000;
/// Transitions per connection of the churn (about ten).
const TRANSITIONS_PER_CONNECTION: u64 = 10;
/// Listings come at least this many times what they cost apart (README,
/// "Performance"; `LISTING_COST_FACTOR` in `host/listing.rs`), as the
/// summary's `listing_interval_ms` shows.
const LISTING_COST_FACTOR: f64 = 50.0;
/// The second listing comes fifty times the first one's cost after it.
const SECOND_LISTING: Duration = Duration::from_secs(120);

#[test]
fn a_listing_longer_than_the_ring_holds_loses_nothing() {
    let crowd = NetNs::new().unwrap();
    crowd
        .sysctl("net.ipv4.ip_local_port_range", "1024 65535")
        .unwrap();
    // Each connection leaves its own timewait socket, none taken over.
    crowd.sysctl("net.ipv4.tcp_tw_reuse", "0").unwrap();
    crowd
        .sysctl("net.ipv4.tcp_max_tw_buckets", "262144")
        .unwrap();
    fill_with_time_wait(&crowd);

    let ns = NetNs::new().unwrap();
    ns.sysctl("net.ipv4.tcp_max_tw_buckets", "0").unwrap();
    let empty: Vec<NetNs> = (0..EMPTY_NAMESPACES)
        .map(|_| NetNs::new().unwrap())
        .collect();
    let ring_kib = RING_KIB.to_string();
    let mut args = vec![
        "--ring-buffer-kib",
        &ring_kib,
        "--summary-every",
        "1",
        "-N",
        ns.name(),
    ];
    for other in &empty {
        args.extend(["-N", other.name()]);
    }
    let mut agent = Agent::start_following_all(&ns, "timewait", &args).unwrap();

    // The first listing came as the agent started; the churn runs through
    // the second, whose summary tells what the first one cost.
    let churn = Churn::start(&ns, 2, CHURN_PER_SECOND).unwrap();
    let started = Instant::now();
    let summary = agent
        .wait_for(
            "a summary after the second listing",
            |r| {
                r["type"] == "time_wait_summary"
                    && r["listing_interval_ms"]
                        .as_f64()
                        .is_some_and(|ms| ms > 1000.0)
            },
            SECOND_LISTING,
        )
        .unwrap();
    let per_second = churn.connections() as f64 / started.elapsed().as_secs_f64();
    drop(churn);
    // The second listing walked the crowd too.
    expect_crowd(&crowd);
    let stderr = agent.stop_with_stderr(libc::SIGTERM).unwrap();

    // The scenario: a listing lasts longer than the ring holds the churn's
    // transitions.
    let listing_ms = summary["listing_interval_ms"].as_f64().unwrap() / LISTING_COST_FACTOR;
    let during_listing = per_second * TRANSITIONS_PER_CONNECTION as f64 * listing_ms / 1000.0;
    let ring_records = (RING_KIB * 1024 / RECORD_BYTES) as f64;
    eprintln!(
        "a listing took {listing_ms:.0} ms; the churn made {per_second:.0} connections a \
         second, {during_listing:.0} transitions during it; the ring holds {ring_records:.0}"
    );
    assert!(
        during_listing > 2.0 * ring_records,
        "the listing ({listing_ms:.0} ms) is too short to fill the ring: {summary}"
    );
    let full: Vec<&String> = stderr
        .iter()
        .filter(|line| line.contains("kernel ring buffer full"))
        .collect();
    assert!(full.is_empty(), "events lost while listing: {full:?}");
}

/// Makes [`CROWD`] timewait sockets in `ns`: clients that close first.
fn fill_with_time_wait(ns: &NetNs) {
    let makers: Vec<_> = (0..CROWD_THREADS)
        .map(|_| {
            ns.spawn(|| -> anyhow::Result<()> {
                let listener = tcp::listen(Family::V4)?;
                for _ in 0..CROWD / CROWD_THREADS {
                    let (client, accepted) = tcp::connect_pair(&listener)?;
                    drop(client);
                    drop(accepted);
                }
                Ok(())
            })
            .unwrap()
        })
        .collect();
    // Every maker joined before any result is looked at: none goes on
    // making connections in a namespace about to be deleted.
    let results: Vec<_> = makers.into_iter().map(|maker| maker.join()).collect();
    for result in results {
        result.unwrap().unwrap();
    }
    // On loopback the server's FIN reaches the client within its close.
    expect_crowd(ns);
}

/// The crowd is (still) there: its timewait sockets last 60 s.
fn expect_crowd(ns: &NetNs) {
    let count = ns.time_wait_count().unwrap();
    assert!(count >= CROWD * 9 / 10, "only {count} timewait sockets");
}
