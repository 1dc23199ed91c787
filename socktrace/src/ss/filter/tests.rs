//! The `ss` filter vocabulary: state words, operators and their precedence,
//! host forms, services, and errors with the token they point at.
use super::*;

use TcpState::*;

/// A stand-in for `/etc/services`.
fn services(name: &str) -> Option<u16> {
    match name {
        "ssh" => Some(22),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|&word| word.to_owned()).collect()
}

fn query(args: &[&str]) -> Result<SsQuery, FilterError> {
    parse(&words(args), StateSet::CONNECTED_DEFAULT, &services)
}

/// The filter given as one line, split at spaces like a shell would.
fn line(text: &str) -> Result<SsQuery, FilterError> {
    query(&text.split_whitespace().collect::<Vec<_>>())
}

fn states(text: &str) -> Vec<TcpState> {
    line(text).unwrap().states.iter().collect()
}

fn expr(text: &str) -> Expr {
    line(text).unwrap().expr.expect("an expression")
}

fn error(text: &str) -> FilterError {
    line(text).expect_err("an error")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Whether a socket with these ends passes the expression in `text`.
fn passes(text: &str, local: &str, remote: &str) -> bool {
    expr(text).matches(addr(local), addr(remote))
}

/// A condition on the remote port, as `dport = :PORT` parses.
fn dport(port: u16) -> Expr {
    Expr::Host(
        Side::Remote,
        HostCond {
            prefix: None,
            port: Some(port),
        },
    )
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::And(vec![left, right])
}

fn or(left: Expr, right: Expr) -> Expr {
    Expr::Or(vec![left, right])
}

fn not(inner: Expr) -> Expr {
    Expr::Not(Box::new(inner))
}

/// The condition a `dst HOST` parsed to.
fn host(text: &str) -> HostCond {
    match expr(&format!("dst {text}")) {
        Expr::Host(Side::Remote, cond) => cond,
        other => panic!("`dst {text}` parsed to {other:?}"),
    }
}

fn cond(prefix: Option<&str>, port: Option<u16>) -> HostCond {
    HostCond {
        prefix: prefix.map(|prefix| prefix.parse().unwrap()),
        port,
    }
}

#[test]
fn without_state_words_the_default_states_stay() {
    let parsed = parse(&[], StateSet::LISTENING, &services).unwrap();
    assert_eq!(
        parsed,
        SsQuery {
            states: StateSet::LISTENING,
            expr: None
        }
    );
    assert_eq!(
        line("dport = :22").unwrap().states,
        StateSet::CONNECTED_DEFAULT
    );
}

#[test]
fn the_default_sets_are_those_of_ss() {
    assert_eq!(
        StateSet::CONNECTED_DEFAULT.iter().collect::<Vec<_>>(),
        [
            Established,
            SynSent,
            FinWait1,
            FinWait2,
            CloseWait,
            LastAck,
            Closing
        ]
    );
    assert_eq!(
        StateSet::LISTENING.iter().collect::<Vec<_>>(),
        [Close, Listen]
    );
    assert_eq!(
        StateSet::ALL.iter().collect::<Vec<_>>(),
        TcpState::ALL.to_vec()
    );
}

#[test]
fn each_state_name_selects_its_state() {
    let names = [
        ("established", Established),
        ("syn-sent", SynSent),
        ("syn-recv", SynRecv),
        ("syn-rcv", SynRecv),
        ("fin-wait-1", FinWait1),
        ("fin-wait-2", FinWait2),
        ("time-wait", TimeWait),
        ("closed", Close),
        ("close", Close),
        ("unconnected", Close),
        ("close-wait", CloseWait),
        ("last-ack", LastAck),
        ("listening", Listen),
        ("listen", Listen),
        ("closing", Closing),
    ];
    for (name, state) in names {
        let selected = line(&format!("state {name}")).unwrap().states;
        assert_eq!(selected.single(), Some(state), "state {name}");
    }
}

#[test]
fn group_names_select_what_ss_selects() {
    assert_eq!(states("state all"), TcpState::ALL.to_vec());
    assert_eq!(
        states("state connected"),
        [
            Established,
            SynSent,
            SynRecv,
            FinWait1,
            FinWait2,
            TimeWait,
            CloseWait,
            LastAck,
            Closing,
            NewSynRecv
        ]
    );
    assert_eq!(
        states("state synchronized"),
        [
            Established,
            SynRecv,
            FinWait1,
            FinWait2,
            TimeWait,
            CloseWait,
            LastAck,
            Closing,
            NewSynRecv
        ]
    );
    assert_eq!(states("state bucket"), [SynRecv, TimeWait, NewSynRecv]);
    assert_eq!(
        states("state big"),
        [
            Established,
            SynSent,
            FinWait1,
            FinWait2,
            Close,
            CloseWait,
            LastAck,
            Listen,
            Closing
        ]
    );
}

#[test]
fn state_names_ignore_case_but_keywords_do_not() {
    assert_eq!(states("state ESTABLISHED"), [Established]);
    assert_eq!(states("state Time-Wait"), [TimeWait]);
    assert_eq!(
        error("State established").to_string(),
        "unknown filter word `State`: expected dst, src, dport, sport, not or `(`"
    );
}

#[test]
fn later_states_add_and_excludes_remove() {
    assert_eq!(
        states("state established state syn-sent"),
        [Established, SynSent]
    );
    let all_but_listen: Vec<_> = TcpState::ALL.into_iter().filter(|&s| s != Listen).collect();
    assert_eq!(states("exclude listening"), all_but_listen);
    assert_eq!(
        states("excl time-wait exclude closed exclude syn-recv state established"),
        [
            Established,
            SynSent,
            FinWait1,
            FinWait2,
            CloseWait,
            LastAck,
            Listen,
            Closing
        ]
    );
    // As in ss, `state` and `exclude` share "the first one": a `state`
    // after an `exclude` adds to what the exclude left.
    assert_eq!(
        states("exclude listening state listening"),
        TcpState::ALL.to_vec()
    );
    assert_eq!(
        states("state established exclude established"),
        Vec::<TcpState>::new()
    );
    assert_eq!(
        states("state established state time-wait exclude established"),
        [TimeWait]
    );
}

#[test]
fn syn_recv_covers_request_sockets() {
    let syn_recv = line("state syn-recv").unwrap().states;
    assert!(syn_recv.contains(SynRecv));
    assert!(syn_recv.contains(NewSynRecv));
    assert!(!syn_recv.contains(Established));
    assert_eq!(syn_recv.single(), Some(SynRecv));
    assert_eq!(syn_recv.iter().collect::<Vec<_>>(), [SynRecv, NewSynRecv]);
    assert!(!StateSet::CONNECTED_DEFAULT.contains(NewSynRecv));
    assert!(
        !line("exclude syn-recv")
            .unwrap()
            .states
            .contains(NewSynRecv)
    );
}

#[test]
fn single_is_none_unless_exactly_one_state_is_selected() {
    assert_eq!(StateSet::ALL.single(), None);
    assert_eq!(StateSet::LISTENING.single(), None);
    assert_eq!(
        line("state established exclude established")
            .unwrap()
            .states
            .single(),
        None
    );
    assert_eq!(
        line("state time-wait").unwrap().states.single(),
        Some(TimeWait)
    );
    assert_eq!(
        line("exclude connected exclude closed")
            .unwrap()
            .states
            .single(),
        Some(Listen)
    );
}

#[test]
fn a_query_needs_both_the_state_and_the_expression() {
    let query = line("state established dport = :443").unwrap();
    let local = addr("10.0.0.1:40000");
    assert!(query.matches(Established, local, addr("192.0.2.1:443")));
    assert!(!query.matches(Established, local, addr("192.0.2.1:80")));
    assert!(!query.matches(TimeWait, local, addr("192.0.2.1:443")));
    let any = line("state time-wait").unwrap();
    assert!(any.matches(TimeWait, local, addr("192.0.2.1:80")));
}

#[test]
fn port_operators_in_every_spelling() {
    let compare = |op| Expr::Port(Side::Remote, op, 443);
    let cases = [
        (&["=", "==", "eq", ""][..], dport(443)),
        (&["!=", "ne", "neq"], not(dport(443))),
        (&[">", "gt"], compare(PortOp::Gt)),
        (&["<", "lt"], compare(PortOp::Lt)),
        (&[">=", "ge", "geq"], compare(PortOp::Ge)),
        (&["<=", "le", "leq"], compare(PortOp::Le)),
    ];
    for (spellings, expected) in cases {
        for op in spellings {
            assert_eq!(expr(&format!("dport {op} :443")), expected, "{op}");
            assert_eq!(expr(&format!("dport {op} 443")), expected, "{op}");
        }
    }
    assert_eq!(
        expr("sport >= :1024"),
        Expr::Port(Side::Local, PortOp::Ge, 1024)
    );
}

#[test]
fn port_comparisons_select_ranges() {
    let filter = "dport > :1024 and dport < :2000";
    let local = "10.0.0.1:22";
    assert!(!passes(filter, local, "192.0.2.1:1024"));
    assert!(passes(filter, local, "192.0.2.1:1025"));
    assert!(passes(filter, local, "192.0.2.1:1999"));
    assert!(!passes(filter, local, "192.0.2.1:2000"));
    let inclusive = "sport ge 1024 sport le 2000";
    assert!(passes(inclusive, "10.0.0.1:1024", "192.0.2.1:1"));
    assert!(passes(inclusive, "10.0.0.1:2000", "192.0.2.1:1"));
    assert!(!passes(inclusive, "10.0.0.1:2001", "192.0.2.1:1"));
    assert!(!passes(inclusive, "10.0.0.1:1023", "192.0.2.1:1"));
}

#[test]
fn port_equality_and_inequality_match_one_end() {
    assert!(passes("sport = :22", "10.0.0.1:22", "192.0.2.1:5000"));
    assert!(!passes("sport = :22", "10.0.0.1:5000", "192.0.2.1:22"));
    assert!(passes("dport = :22", "10.0.0.1:5000", "192.0.2.1:22"));
    assert!(!passes("dport != :22", "10.0.0.1:5000", "192.0.2.1:22"));
    assert!(passes("dport neq :22", "10.0.0.1:22", "192.0.2.1:23"));
    assert!(passes("dport = :*", "10.0.0.1:22", "192.0.2.1:23"));
}

#[test]
fn address_operators_in_every_spelling() {
    let remote = HostCond {
        prefix: Some("10.0.0.0/8".parse().unwrap()),
        port: None,
    };
    for op in ["", "=", "==", "eq"] {
        assert_eq!(
            expr(&format!("dst {op} 10.0.0.0/8")),
            Expr::Host(Side::Remote, remote),
            "{op}"
        );
    }
    for op in ["!=", "ne", "neq"] {
        assert_eq!(
            expr(&format!("src {op} 10.0.0.0/8")),
            not(Expr::Host(Side::Local, remote)),
            "{op}"
        );
    }
}

#[test]
fn dst_looks_at_the_remote_end_and_src_at_the_local_one() {
    assert!(passes("dst 192.0.2.1", "10.0.0.1:22", "192.0.2.1:5000"));
    assert!(!passes("dst 10.0.0.1", "10.0.0.1:22", "192.0.2.1:5000"));
    assert!(passes("src 10.0.0.1", "10.0.0.1:22", "192.0.2.1:5000"));
    assert!(!passes("src != 10.0.0.1", "10.0.0.1:22", "192.0.2.1:5000"));
}

#[test]
fn a_host_with_a_port_needs_both_to_match() {
    let filter = "dst 192.0.2.0/24:443";
    assert!(passes(filter, "10.0.0.1:40000", "192.0.2.9:443"));
    assert!(!passes(filter, "10.0.0.1:40000", "192.0.2.9:80"));
    assert!(!passes(filter, "10.0.0.1:40000", "192.0.3.9:443"));
}

#[test]
fn not_binds_tighter_than_and_and_and_tighter_than_or() {
    assert_eq!(
        expr("dport :1 or dport :2 and dport :3"),
        or(dport(1), and(dport(2), dport(3)))
    );
    assert_eq!(
        expr("dport :1 and dport :2 or dport :3"),
        or(and(dport(1), dport(2)), dport(3))
    );
    assert_eq!(
        expr("not dport :1 and dport :2"),
        and(not(dport(1)), dport(2))
    );
    assert_eq!(
        expr("dport :1 or dport :2 or dport :3"),
        Expr::Or(vec![dport(1), dport(2), dport(3)])
    );
    assert_eq!(
        expr("dport :1 dport :2 and dport :3"),
        Expr::And(vec![dport(1), dport(2), dport(3)])
    );
    assert_eq!(
        expr("not ( dport :1 or dport :2 ) dport :3"),
        and(not(or(dport(1), dport(2))), dport(3))
    );
    assert_eq!(expr("! ! dport :1"), not(not(dport(1))));
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error_pointing_at_the_opener() {
    let nested = |depth: usize| format!("{} dport :1 {}", "( ".repeat(depth), ") ".repeat(depth));
    assert_eq!(expr(&nested(MAX_NESTING)), dport(1));
    let err = error(&nested(MAX_NESTING + 1));
    assert_eq!(
        err.to_string(),
        format!("the filter nests `(` and `not` more than {MAX_NESTING} deep")
    );
    assert_eq!(
        err.span(),
        2 * MAX_NESTING..2 * MAX_NESTING + 1,
        "the 101st `(`"
    );
    let nots = |depth: usize| format!("{}dport :1", "not ".repeat(depth));
    assert!(line(&nots(MAX_NESTING)).is_ok());
    assert!(line(&nots(MAX_NESTING + 1)).is_err());
    let mixed = format!(
        "{}dport :1{}",
        "not ( ".repeat(MAX_NESTING / 2 + 1),
        " )".repeat(51)
    );
    assert!(line(&mixed).is_err(), "`not` and `(` count together");
}

/// A filter nested 10,000 deep overflowed the parser's stack (SIGABRT).
#[test]
fn a_filter_nested_ten_thousand_deep_is_an_error_not_a_crash() {
    let parens = format!("{}dport :1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(error(&parens).to_string().contains("more than 100 deep"));
    let nots = format!("{}dport :1", "! ".repeat(10_000));
    assert!(error(&nots).to_string().contains("more than 100 deep"));
}

/// Long chains of `and` and `or` are flat: matching and dropping them
/// recurse no deeper than one term.
#[test]
fn a_chain_of_twenty_thousand_conditions_matches_and_drops() {
    let ports: Vec<String> = (1..=20_000)
        .map(|port| format!("dport != :{}", 1 + port % 60_000))
        .collect();
    let all_but = ports.join(" and ");
    assert!(passes(&all_but, "10.0.0.1:40000", "10.0.0.2:65535"));
    assert!(!passes(&all_but, "10.0.0.1:40000", "10.0.0.2:443"));
    let any = ports.join(" or ");
    assert!(passes(&any, "10.0.0.1:40000", "10.0.0.2:443"));
    let mixed = ports.join(" or dport :1 and ");
    assert!(passes(&mixed, "10.0.0.1:40000", "10.0.0.2:443"));
}

#[test]
fn every_spelling_of_and_or_not() {
    for and_word in ["and", "&&", "&", ""] {
        assert_eq!(
            expr(&format!("dport :1 {and_word} dport :2")),
            and(dport(1), dport(2)),
            "{and_word}"
        );
    }
    for or_word in ["or", "||", "|"] {
        assert_eq!(
            expr(&format!("dport :1 {or_word} dport :2")),
            or(dport(1), dport(2)),
            "{or_word}"
        );
    }
    for not_word in ["not", "!"] {
        assert_eq!(
            expr(&format!("{not_word} dport :1")),
            not(dport(1)),
            "{not_word}"
        );
    }
}

#[test]
fn juxtaposition_is_and() {
    assert!(passes(
        "dst 192.0.2.1 dport :443",
        "10.0.0.1:40000",
        "192.0.2.1:443"
    ));
    assert!(!passes(
        "dst 192.0.2.1 dport :443",
        "10.0.0.1:40000",
        "192.0.2.2:443"
    ));
}

#[test]
fn parentheses_are_tokens_wherever_they_are() {
    let http_or_https = or(
        Expr::Host(Side::Local, cond(None, Some(80))),
        Expr::Host(Side::Local, cond(None, Some(443))),
    );
    let one_word = query(&["( sport = :http or sport = :https )"]).unwrap();
    assert_eq!(one_word.expr, Some(http_or_https.clone()));
    let glued = query(&["(sport", "=", ":http", "or", "sport", "=", ":https)"]).unwrap();
    assert_eq!(glued.expr, Some(http_or_https.clone()));
    let tight = query(&["(sport=:http)"]);
    assert!(tight.is_err(), "`sport=:http` is one word, as in ss");
    let negated = query(&["!(sport", ":http", "or", "sport", ":https)"]).unwrap();
    assert_eq!(negated.expr, Some(not(http_or_https)));
    let man_page = query(&[
        "state",
        "fin-wait-1",
        "( sport = :http or sport = :https )",
        "dst",
        "193.233.7/24",
    ])
    .unwrap();
    assert_eq!(man_page.states.single(), Some(FinWait1));
    assert!(man_page.matches(FinWait1, addr("10.0.0.1:443"), addr("193.233.7.200:50000")));
    assert!(!man_page.matches(FinWait1, addr("10.0.0.1:443"), addr("193.233.8.1:50000")));
}

#[test]
fn ipv4_host_forms() {
    assert_eq!(host("*"), cond(None, None));
    assert_eq!(host("*:80"), cond(None, Some(80)));
    assert_eq!(host(":80"), cond(None, Some(80)));
    assert_eq!(host(":*"), cond(None, None));
    assert_eq!(host("10.1.2.3"), cond(Some("10.1.2.3/32"), None));
    assert_eq!(host("10.1.2.3/8"), cond(Some("10.0.0.0/8"), None));
    assert_eq!(host("10.1.2.3:80"), cond(Some("10.1.2.3/32"), Some(80)));
    assert_eq!(host("10.1.2.3:*"), cond(Some("10.1.2.3/32"), None));
    assert_eq!(host("10.0.0.0/8:80"), cond(Some("10.0.0.0/8"), Some(80)));
    assert_eq!(host("[10.1.2.3]:80"), cond(Some("10.1.2.3/32"), Some(80)));
}

#[test]
fn partial_ipv4_addresses_fill_with_zeros_like_ss() {
    assert_eq!(host("193.233.7/24"), cond(Some("193.233.7.0/24"), None));
    assert_eq!(host("10/8"), cond(Some("10.0.0.0/8"), None));
    // Without a length a partial address is still one host, as in ss.
    assert_eq!(host("193.233.7"), cond(Some("193.233.7.0/32"), None));
    assert_eq!(host("10.1:22"), cond(Some("10.1.0.0/32"), Some(22)));
}

#[test]
fn ipv6_host_forms() {
    assert_eq!(host("[::1]"), cond(Some("::1/128"), None));
    assert_eq!(host("[::1]:80"), cond(Some("::1/128"), Some(80)));
    assert_eq!(host("[2001:db8::]/32"), cond(Some("2001:db8::/32"), None));
    assert_eq!(
        host("[2001:db8::/32]:443"),
        cond(Some("2001:db8::/32"), Some(443))
    );
    assert_eq!(
        host("[2001:db8::]/32:443"),
        cond(Some("2001:db8::/32"), Some(443))
    );
    assert_eq!(host("::1"), cond(Some("::1/128"), None));
    assert_eq!(host("2001:db8::/32"), cond(Some("2001:db8::/32"), None));
    // A bare IPv6 word is an address even when it ends like a port.
    assert_eq!(host("fe80::1:80"), cond(Some("fe80::1:80/128"), None));
    // ss's own rule still applies when the whole word is not an address.
    assert_eq!(
        host("2001:db8::/32:443"),
        cond(Some("2001:db8::/32"), Some(443))
    );
    assert_eq!(host("[::]:*"), cond(Some("::/128"), None));
    assert!(passes(
        "dst [2001:db8::]/32",
        "[::1]:1",
        "[2001:db8:5::1]:9"
    ));
    assert!(!passes("dst [2001:db8::]/32", "[::1]:1", "[2001:db9::1]:9"));
    assert!(!passes("dst [2001:db8::]/32", "[::1]:1", "10.0.0.1:9"));
}

#[test]
fn ipv4_rules_match_mapped_ipv6_sockets() {
    let local = "[::ffff:10.0.0.1]:22";
    assert!(passes("dst 192.0.2.0/24", local, "[::ffff:192.0.2.7]:5000"));
    assert!(!passes(
        "dst 192.0.2.0/24",
        local,
        "[::ffff:192.0.3.7]:5000"
    ));
    assert!(!passes("dst 192.0.2.0/24", local, "[2001:db8::1]:5000"));
    assert!(passes("src 10.0.0.1:22", local, "[::ffff:192.0.2.7]:5000"));
    // A mapped prefix stands for its IPv4 prefix.
    assert_eq!(
        host("[::ffff:192.0.2.0/120]"),
        cond(Some("192.0.2.0/24"), None)
    );
    assert!(passes("dst [::ffff:192.0.2.0/120]", local, "192.0.2.7:1"));
    assert_eq!(host("[::ffff:1.2.3.4]/80"), cond(Some("::/80"), None));
}

#[test]
fn ipv4_rules_do_not_match_ipv6_sockets_and_stars_match_both() {
    assert!(!passes("dst 0.0.0.0/0", "[::1]:1", "[::1]:2"));
    assert!(passes("dst 0.0.0.0/0", "10.0.0.1:1", "10.0.0.2:2"));
    assert!(passes("dst *", "[::1]:1", "[::1]:2"));
    assert!(passes("dst *:2", "[::1]:1", "[::1]:2"));
    assert!(passes("dst *:2", "10.0.0.1:1", "10.0.0.2:2"));
}

#[test]
fn ports_may_be_service_names() {
    assert_eq!(
        expr("sport = :ssh"),
        Expr::Host(Side::Local, cond(None, Some(22)))
    );
    assert_eq!(expr("dport https"), dport(443));
    assert_eq!(
        expr("dport > http"),
        Expr::Port(Side::Remote, PortOp::Gt, 80)
    );
    assert_eq!(host("*:http"), cond(None, Some(80)));
    assert_eq!(host("10.0.0.1:https"), cond(Some("10.0.0.1/32"), Some(443)));
    assert_eq!(host("[::1]:ssh"), cond(Some("::1/128"), Some(22)));
}

#[test]
fn services_come_from_tcp_lines_and_aliases() {
    let text = "\
# comment line
ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
https\t\t443/udp
https\t\t443/tcp
kerberos\t88/tcp\t\tkerberos5 krb5 kerberos-sec
www\t\t8080/tcp
broken\t\tnot-a-port/tcp
";
    let services = services_from(text);
    assert_eq!(services.get("ssh"), Some(&22));
    assert_eq!(services.get("www"), Some(&80), "the first entry wins");
    assert_eq!(services.get("https"), Some(&443));
    assert_eq!(services.get("krb5"), Some(&88));
    assert_eq!(services.get("broken"), None);
    assert_eq!(services.get("comment"), None);
    assert_eq!(services.len(), 8);
}

#[test]
fn system_services_know_the_common_names() {
    // From /etc/services, or from the built-in table without one.
    let lookup = system_services();
    assert_eq!(lookup("ssh"), Some(22));
    assert_eq!(lookup("https"), Some(443));
    assert_eq!(lookup("no-such-service"), None);
}

#[test]
fn unknown_state_names_list_the_valid_ones() {
    let err = error("state established state bogus");
    assert_eq!(err.span(), 24..29);
    assert!(
        err.to_string()
            .starts_with("unknown state `bogus`: expected one of established, syn-sent,"),
        "{err}"
    );
    assert!(err.to_string().ends_with("bucket, big"), "{err}");
    assert_eq!(
        err.pointer(),
        "state established state bogus\n                        ^^^^^"
    );
}

#[test]
fn a_missing_state_name_points_past_the_end() {
    let err = error("exclude");
    assert_eq!(err.to_string(), "expected a state name after `exclude`");
    assert_eq!(err.span(), 7..7);
    assert_eq!(err.pointer(), "exclude\n       ^");
}

#[test]
fn unsupported_ss_filters_are_named() {
    for word in ["dev", "autobound", "cgroup", "mark", "fwmark"] {
        let err = error(&format!("dport :22 {word} x"));
        assert_eq!(
            err.to_string(),
            format!("socktrace does not support the ss filter `{word}`")
        );
        assert_eq!(err.span(), 10..10 + word.len());
    }
    let err = error("sport :22 state listening");
    assert_eq!(
        err.to_string(),
        "`state` must come before the address and port conditions"
    );
    assert_eq!(err.span(), 10..15);
    let err = error("localhost");
    assert_eq!(
        err.to_string(),
        "unknown filter word `localhost`: expected dst, src, dport, sport, not or `(`"
    );
    assert_eq!(err.span(), 0..9);
}

#[test]
fn missing_operands_point_past_the_end_or_at_what_came_instead() {
    let err = error("dport =");
    assert_eq!(err.to_string(), "expected a port after `dport =`");
    assert_eq!(err.pointer(), "dport =\n       ^");
    let err = error("src");
    assert_eq!(err.to_string(), "expected an address after `src`");
    assert_eq!(err.span(), 3..3);
    let err = error("( dst != )");
    assert_eq!(
        err.to_string(),
        "expected an address after `dst !=`, found `)`"
    );
    assert_eq!(err.span(), 9..10);
    let err = error("dport and dport :1");
    assert_eq!(
        err.to_string(),
        "expected a port after `dport`, found `and`"
    );
    assert_eq!(err.span(), 6..9);
    let err = error("not");
    assert_eq!(err.to_string(), "expected a condition after `not`");
    assert_eq!(err.span(), 3..3);
}

#[test]
fn a_trailing_or_leading_connective_is_an_error() {
    let err = error("dst 10.0.0.1 and");
    assert_eq!(err.to_string(), "expected a condition after `and`");
    assert_eq!(err.span(), 16..16);
    assert_eq!(err.pointer(), "dst 10.0.0.1 and\n                ^");
    let err = error("( dport :1 or )");
    assert_eq!(
        err.to_string(),
        "expected a condition after `or`, found `)`"
    );
    assert_eq!(err.span(), 14..15);
    let err = error("or dport :1");
    assert_eq!(err.to_string(), "expected a condition, found `or`");
    assert_eq!(err.span(), 0..2);
}

#[test]
fn unbalanced_and_empty_parentheses() {
    let err = error("( dport :1 or ( dport :2 )");
    assert_eq!(err.to_string(), "`(` without a matching `)`");
    assert_eq!(err.span(), 0..1);
    let err = query(&["dport", ":1)"]).unwrap_err();
    assert_eq!(err.to_string(), "`)` without a matching `(`");
    assert_eq!(err.pointer(), "dport :1)\n        ^");
    let err = error("dport :1 ( )");
    assert_eq!(
        err.to_string(),
        "empty parentheses: expected a condition between `(` and `)`"
    );
    assert_eq!(err.span(), 9..12);
    let err = query(&["()"]).unwrap_err();
    assert_eq!(err.pointer(), "()\n^^");
}

#[test]
fn comparisons_need_ports() {
    let err = error("dst > 10.0.0.1");
    assert_eq!(
        err.to_string(),
        "`>` cannot compare addresses: `dst` takes `=` or `!=`"
    );
    assert_eq!(err.span(), 4..5);
    let err = error("src le 10.0.0.1");
    assert_eq!(err.span(), 4..6);
    let err = error("dport > :*");
    assert_eq!(err.to_string(), "`>` needs a port number, not `*`");
    assert_eq!(err.span(), 8..10);
}

#[test]
fn bad_addresses_point_at_the_bad_part() {
    let err = error("dst 10.0.0.300/8");
    assert_eq!(
        err.to_string(),
        "`10.0.0.300` is not an IPv4 or IPv6 address (socktrace does not resolve host names)"
    );
    assert_eq!(err.span(), 4..14);
    let err = error("dst example.com:443");
    assert_eq!(err.span(), 4..15);
    let err = error("dst 10.0.0.0/33");
    assert_eq!(
        err.to_string(),
        "prefix length `33` is not a number from 0 to 32"
    );
    assert_eq!(err.pointer(), "dst 10.0.0.0/33\n             ^^");
    let err = error("dst [2001:db8::]/129");
    assert_eq!(
        err.to_string(),
        "prefix length `129` is not a number from 0 to 128"
    );
    assert_eq!(err.span(), 17..20);
    let err = error("dst 1.2.3.4.5");
    assert_eq!(err.span(), 4..13);
    let err = error("dst /8");
    assert_eq!(err.to_string(), "missing address before `/8`");
    assert_eq!(err.span(), 4..4);
    let err = error("dst [::1");
    assert_eq!(err.to_string(), "`[` without a matching `]` in `[::1`");
    assert_eq!(err.span(), 4..8);
    let err = error("dst [::1]x");
    assert_eq!(err.to_string(), "unexpected `x` after `]`");
    assert_eq!(err.span(), 9..10);
    let err = error("dst [::1/64]/64");
    assert_eq!(err.span(), 12..15);
    let err = error("dst *80");
    assert_eq!(err.to_string(), "expected `*` or `*:PORT`, found `*80`");
}

#[test]
fn bad_ports_point_at_the_port() {
    let err = query(&["(sport", "=", ":70000)"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "port `70000` is not a number from 0 to 65535"
    );
    assert_eq!(err.pointer(), "(sport = :70000)\n          ^^^^^");
    let err = error("dport 65536");
    assert_eq!(err.span(), 6..11);
    assert_eq!(expr("dport 65535"), dport(65535));
    assert_eq!(expr("dport :0"), dport(0));
    let err = error("dst 10.0.0.1:99999");
    assert_eq!(err.span(), 13..18);
    let err = error("sport = :nosuch");
    assert_eq!(
        err.to_string(),
        "`nosuch` is neither a port number nor a known service"
    );
    assert_eq!(err.span(), 9..15);
    let err = error("dport :");
    assert_eq!(err.to_string(), "missing port after `:`");
    assert_eq!(err.span(), 7..7);
}

#[test]
fn errors_carry_the_joined_text() {
    let err = query(&["dst", "10.0.0.1", "dev", "eth0"]).unwrap_err();
    assert_eq!(err.text(), "dst 10.0.0.1 dev eth0");
    assert_eq!(err.pointer(), "dst 10.0.0.1 dev eth0\n             ^^^");
}
