//! A [`MetricsSnapshot`] in the Prometheus text format, or OpenMetrics when
//! the scraper asks for it, through `prometheus-client`, family by family.
use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit},
};

use crate::{
    metrics::labels::{
        Address, DestinationLabels, EndLabels, EndName, Endpoint, HandshakeLabels, LossCause,
        LossLabels, NamespaceHandshakeLabels, NamespaceName, NamespaceStateLabels, OutcomeName,
        PeerHandshakeLabels, PeerLabels, Port, PortLabels, Prefix, SideLabels, SideName,
        StateLabels, StateName, TransitionLabels,
    },
    metrics::snapshot::MetricsSnapshot,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    state::handshake_tracker::{Outcome, Side},
    state::live_counts::{Buckets, side_index},
    state::time_wait_tracker::TimeWaitEnd,
};

/// Which text format a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else Prometheus text.
    pub fn accepted(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The snapshot as the body of a scrape.
pub fn encode(snapshot: MetricsSnapshot, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(snapshot)));
    let mut body = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut body, &registry)?,
    }
    Ok(body)
}

/// Every family of one snapshot.
#[derive(Debug)]
struct Families(MetricsSnapshot);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.sockets(&mut encoder)?;
        self.handshakes(&mut encoder)?;
        self.time_wait(&mut encoder)?;
        self.listeners(&mut encoder)?;
        self.tracer(&mut encoder)
    }
}

impl Families {
    /// The label of `netns`: its name, or its inode.
    fn namespace(&self, netns: NetnsInode) -> NamespaceName {
        NamespaceName(
            self.0
                .namespace_names
                .get(&netns)
                .cloned()
                .unwrap_or_else(|| netns.to_string()),
        )
    }

    /// Sockets by state (per namespace when asked for), and transitions.
    fn sockets(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = &self.0.live;
        let counts = &self.0.live.counts;
        let mut sockets = gauge(
            encoder,
            "socktrace_sockets",
            "TCP sockets by state now, as ss -tan lists them",
            None,
        )?;
        for state in TcpState::ALL {
            sockets
                .encode_family(&StateLabels {
                    state: StateName(state),
                })?
                .encode_gauge(&live.states[state.index()])?;
        }

        if let Some(by_namespace) = &live.states_by_namespace {
            let mut sockets = gauge(
                encoder,
                "socktrace_namespace_sockets",
                "TCP sockets by state now in each network namespace (--metrics-namespaces), states with none left out",
                None,
            )?;
            for (netns, states) in by_namespace {
                for state in TcpState::ALL {
                    let n = states[state.index()];
                    if n > 0 {
                        let labels = NamespaceStateLabels {
                            namespace: self.namespace(*netns),
                            state: StateName(state),
                        };
                        sockets.encode_family(&labels)?.encode_gauge(&n)?;
                    }
                }
            }
        }
        let mut transitions = counter(
            encoder,
            "socktrace_transitions",
            "TCP state transitions by old and new state",
        )?;
        for from in TcpState::ALL {
            for to in TcpState::ALL {
                let n = counts.transitions[from.index()][to.index()];
                if n > 0 {
                    let labels = TransitionLabels {
                        from: StateName(from),
                        to: StateName(to),
                    };
                    encode_counter(&mut transitions.encode_family(&labels)?, n)?;
                }
            }
        }

        Ok(())
    }

    /// Handshakes by side and outcome (per namespace and peer prefix when
    /// asked for), their retransmits and durations.
    fn handshakes(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = &self.0.live.counts;
        if let Some(by_namespace) = &counts.by_namespace {
            let mut handshakes = counter(
                encoder,
                "socktrace_namespace_handshakes",
                "Handshake attempts resolved in each network namespace (--metrics-namespaces), by side and outcome, those never seen left out",
            )?;
            for (netns, sides) in by_namespace {
                for side in SIDES {
                    for outcome in Outcome::ALL {
                        let n = sides[side_index(side)][outcome.index()];
                        if n > 0 {
                            let labels = NamespaceHandshakeLabels {
                                namespace: self.namespace(*netns),
                                side: SideName(side),
                                outcome: OutcomeName(outcome),
                            };
                            encode_counter(&mut handshakes.encode_family(&labels)?, n)?;
                        }
                    }
                }
            }
        }

        let mut handshakes = counter(
            encoder,
            "socktrace_handshakes",
            "Handshake attempts resolved, by side (client: connect, server: accept) and outcome",
        )?;
        for side in SIDES {
            for outcome in Outcome::ALL {
                let labels = HandshakeLabels {
                    side: SideName(side),
                    outcome: OutcomeName(outcome),
                };
                let n = counts.side(side).outcomes[outcome.index()];
                encode_counter(&mut handshakes.encode_family(&labels)?, n)?;
            }
        }
        if !counts.peers.is_empty() {
            let mut peer_handshakes = counter(
                encoder,
                "socktrace_peer_handshakes",
                "Handshake attempts with remotes in a prefix asked for (--metrics-peer), by side and outcome",
            )?;
            for (peer, sides) in &counts.peers {
                for side in SIDES {
                    for outcome in Outcome::ALL {
                        let labels = PeerHandshakeLabels {
                            peer: Prefix(*peer),
                            side: SideName(side),
                            outcome: OutcomeName(outcome),
                        };
                        let n = sides[side_index(side)].outcomes[outcome.index()];
                        encode_counter(&mut peer_handshakes.encode_family(&labels)?, n)?;
                    }
                }
            }
            let mut peer_retransmits = counter(
                encoder,
                "socktrace_peer_retransmits",
                "SYN (client) and SYN-ACK (server) retransmits with remotes in a prefix asked for",
            )?;
            for (peer, sides) in &counts.peers {
                for side in SIDES {
                    let labels = PeerLabels {
                        peer: Prefix(*peer),
                        side: SideName(side),
                    };
                    let n = sides[side_index(side)].retransmits;
                    encode_counter(&mut peer_retransmits.encode_family(&labels)?, n)?;
                }
            }
        }
        encode_counter(
            &mut counter(
                encoder,
                "socktrace_syn_retransmits",
                "SYN retransmits of connects (as TcpExtTCPSynRetrans counts them on the client side)",
            )?,
            counts.client.retransmits,
        )?;
        encode_counter(
            &mut counter(
                encoder,
                "socktrace_synack_retransmits",
                "SYN-ACK retransmits of half-open connections (a SYN-RECV pile-up)",
            )?,
            counts.server.retransmits,
        )?;
        let mut duration = encoder.encode_descriptor(
            "socktrace_handshake_duration",
            "First SYN (client) or SYN-ACK (server) to the outcome, when seen",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for side in SIDES {
            encode_buckets(
                &mut duration.encode_family(&SideLabels {
                    side: SideName(side),
                })?,
                &counts.side(side).seconds,
            )?;
        }

        Ok(())
    }

    /// TIME-WAIT entries, ends and lifetimes, the share of
    /// `tcp_max_tw_buckets` used, and the ports held per destination.
    fn time_wait(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = &self.0.live;
        let counts = &self.0.live.counts;
        encode_counter(
            &mut counter(
                encoder,
                "socktrace_time_wait_entries",
                "Connections that entered TIME-WAIT, or an orphan FIN-WAIT-2 (a timewait socket too)",
            )?,
            counts.time_wait_entries,
        )?;
        let mut ends = counter(
            encoder,
            "socktrace_time_wait_ends",
            "TIME-WAIT sockets that ended, by how: expired, reused by a new connection, killed (RST), teardown (namespace gone)",
        )?;
        for end in TimeWaitEnd::ALL {
            let labels = EndLabels {
                reason: EndName(end),
            };
            encode_counter(
                &mut ends.encode_family(&labels)?,
                counts.time_wait_ends[end.index()],
            )?;
        }
        let mut lifetime = encoder.encode_descriptor(
            "socktrace_time_wait_lifetime",
            "How long TIME-WAIT sockets lived, entry to end",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        encode_buckets(&mut lifetime, &counts.time_wait_seconds)?;

        if let Some(used) = live.time_wait_buckets_used {
            gauge(
                encoder,
                "socktrace_time_wait_buckets_used_ratio",
                "The highest share of tcp_max_tw_buckets that timewait sockets fill in a namespace",
                None,
            )?
            .encode_gauge(&used)?;
        }
        // The same addresses in two namespaces are one series: the larger.
        let mut pressure: BTreeMap<(IpAddr, SocketAddr), f64> = BTreeMap::new();
        for row in &live.port_pressure.rows {
            let ratio = pressure.entry((row.local, row.remote)).or_default();
            *ratio = ratio.max(row.ratio());
        }
        let mut ports = gauge(
            encoder,
            "socktrace_ephemeral_ports_used_ratio",
            "Share of the ephemeral port range that TIME-WAIT sockets hold towards a destination, for the destinations holding the most",
            None,
        )?;
        for ((source, destination), ratio) in pressure {
            let labels = DestinationLabels {
                source: Address(source),
                destination: Endpoint(destination),
            };
            ports.encode_family(&labels)?.encode_gauge(&ratio)?;
        }

        Ok(())
    }

    /// The namespaces' own listen and TIME-WAIT overflow counters, and the
    /// listeners of the ports asked for.
    fn listeners(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = &self.0.live;
        let namespace_counters = [
            (
                "socktrace_listen_overflows",
                "Connections refused by full accept queues (TcpExtListenOverflows), since each namespace was first read",
                live.listen_overflows,
            ),
            (
                "socktrace_listen_drops",
                "Every SYN or ACK a listener dropped (TcpExtListenDrops), overflows included",
                live.listen_drops,
            ),
            (
                "socktrace_time_wait_overflows",
                "TIME-WAIT sockets not created because tcp_max_tw_buckets was reached (TcpExtTCPTimeWaitOverflow)",
                live.time_wait_overflows,
            ),
        ];
        for (name, help, value) in namespace_counters {
            if let Some(value) = value {
                encode_counter(&mut counter(encoder, name, help)?, value)?;
            }
        }
        if !live.listeners.is_empty() {
            let mut queue = gauge(
                encoder,
                "socktrace_listen_queue",
                "Connections waiting in the fullest accept queue of the port's listeners (--metrics-port), at the last listing",
                None,
            )?;
            for (&port, listeners) in &live.listeners {
                queue
                    .encode_family(&PortLabels { port: Port(port) })?
                    .encode_gauge(&listeners.accept_queue)?;
            }
            let mut backlog = gauge(
                encoder,
                "socktrace_listen_backlog",
                "The largest backlog (accept queue limit) of the port's listeners",
                None,
            )?;
            for (&port, listeners) in &live.listeners {
                backlog
                    .encode_family(&PortLabels { port: Port(port) })?
                    .encode_gauge(&listeners.backlog)?;
            }
            let mut drops = counter(
                encoder,
                "socktrace_listener_drops",
                "SYNs and ACKs the port's listeners dropped since each was created (sock_diag), added up",
            )?;
            for (&port, listeners) in &live.listeners {
                encode_counter(
                    &mut drops.encode_family(&PortLabels { port: Port(port) })?,
                    listeners.drops,
                )?;
            }
        }

        Ok(())
    }

    /// The oldest CLOSE-WAIT, and the tracer's losses and costs.
    fn tracer(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let MetricsSnapshot {
            live,
            lost,
            malformed_records,
            usage,
            listing_ns,
            namespace_names: _,
        } = &self.0;
        if let Some(ns) = live.close_wait_oldest_ns {
            gauge(
                encoder,
                "socktrace_close_wait_oldest",
                "Age of the oldest socket in CLOSE-WAIT (the application has not closed it)",
                Some(&Unit::Seconds),
            )?
            .encode_gauge(&(ns as f64 / 1e9))?;
        }

        let mut lost_events = counter(
            encoder,
            "socktrace_lost_events",
            "Transitions and events that never reached the agent, by cause",
        )?;
        for (cause, n) in [
            (LossCause::RingFull, lost.ring_full),
            (LossCause::Skipped, lost.skipped),
        ] {
            encode_counter(&mut lost_events.encode_family(&LossLabels { cause })?, n)?;
        }
        encode_counter(
            &mut counter(
                encoder,
                "socktrace_malformed_records",
                "Kernel records the agent could not decode",
            )?,
            *malformed_records,
        )?;

        if let Some(usage) = usage {
            counter_with_unit(
                encoder,
                "socktrace_agent_cpu",
                "The agent's own CPU time, user and system",
                &Unit::Seconds,
            )?
            .encode_counter::<NoLabelSet, _, f64>(&usage.cpu_seconds, None)?;
            gauge(
                encoder,
                "socktrace_agent_resident_memory",
                "The agent's resident memory",
                Some(&Unit::Bytes),
            )?
            .encode_gauge(&usage.resident_bytes)?;
        }
        if let Some(ns) = listing_ns {
            gauge(
                encoder,
                "socktrace_listing_duration",
                "What the last sock_diag listing of request and timewait sockets cost",
                Some(&Unit::Seconds),
            )?
            .encode_gauge(&(*ns as f64 / 1e9))?;
        }
        Ok(())
    }
}

const SIDES: [Side; 2] = [Side::Client, Side::Server];

fn counter<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, help, None, MetricType::Counter)
}

fn counter_with_unit<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    unit: &'a Unit,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, help, Some(unit), MetricType::Counter)
}

fn gauge<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    unit: Option<&'a Unit>,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, help, unit, MetricType::Gauge)
}

fn encode_counter(metric: &mut MetricEncoder, value: u64) -> Result<(), fmt::Error> {
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn encode_buckets<const N: usize>(
    metric: &mut MetricEncoder,
    buckets: &Buckets<N>,
) -> Result<(), fmt::Error> {
    metric.encode_histogram::<NoLabelSet>(buckets.sum, buckets.count, &buckets.pairs(), None)
}

#[cfg(test)]
mod tests;
