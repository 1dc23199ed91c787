//! `socktrace ss`: the sockets `ss -tan` lists, with ss's options and
//! filter, from the running agent or, without one, from sock_diag in this
//! process.
pub mod filter;
pub mod output;
pub mod recorded;
use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, bail};

use crate::{
    agent::client,
    agent::protocol::{Request, Response},
    cli::view_namespaces::ViewNamespaces,
    cli::{SsArgs, SsView},
    host::namespaces::Namespaces,
    host::proc_owners::socket_owners,
    host::sock_diag::{DiagSocket, DumpRequest},
    model::tuple::NetnsInode,
    ss::filter::{SsQuery, StateSet},
    ss::output::Shown,
    state::listed_socket::ListedSocket,
    state::live::LiveState,
    state::table::SocketTable,
    support::clock::monotonic_now_ns,
};

pub async fn run(args: SsArgs) -> anyhow::Result<()> {
    let query = query(&args.view)?;
    let namespaces = ViewNamespaces::resolve(&args.netns)?;
    let request = Request::Sockets {
        netns: namespaces.inodes(),
        owners: args.view.processes,
    };
    let from_agent = if args.agent.no_agent {
        None
    } else {
        client::ask(&args.agent.agent, &request, args.agent.timeout()).await?
    };
    let sockets = match from_agent {
        Some(Response::Sockets(sockets)) => sockets,
        Some(_) => bail!("the agent answered something else than a socket list"),
        None => {
            log::info!(
                "no agent at {}: listing in-process",
                args.agent.agent.display()
            );
            in_process(&namespaces, args.view.processes)?
        }
    };
    print_listing(&args.view, &query, sockets, namespaces.several(), |netns| {
        namespaces.label(netns)
    })
}

/// The view's filter, with the states it lists by default.
pub fn query(view: &SsView) -> anyhow::Result<SsQuery> {
    let default_states = if view.all {
        StateSet::ALL
    } else if view.listening {
        StateSet::LISTENING
    } else {
        StateSet::CONNECTED_DEFAULT
    };
    let services = filter::system_services();
    filter::parse(&view.filter, default_states, &services)
        .map_err(|error| anyhow::anyhow!("{error}\n{}", error.pointer()))
}

/// Prints `sockets` as ss would with `view`'s options and `query`: a
/// namespace column when `several` can show up, named by `label`.
pub fn print_listing(
    view: &SsView,
    query: &SsQuery,
    sockets: Vec<ListedSocket>,
    several: bool,
    label: impl Fn(NetnsInode) -> String,
) -> anyhow::Result<()> {
    // As ss: the summary counts every socket, whatever -a, -l, -4, -6 and
    // the filter say; the list follows it only when asked for with -t, -4,
    // -6 or a filter.
    let mut text = match (view.summary, view.json) {
        (true, true) => output::summary_json(&sockets),
        (true, false) => output::summary(&sockets),
        (false, _) => String::new(),
    };
    let listed = view.tcp || view.ipv4 || view.ipv6 || !view.filter.is_empty();
    if view.summary && !listed {
        return print_all(&text);
    }
    if view.summary && !view.json {
        text.push('\n');
    }
    let selected: Vec<ListedSocket> = sockets
        .into_iter()
        .filter(|s| !view.ipv4 || s.is_ipv4())
        .filter(|s| !view.ipv6 || !s.is_ipv4())
        .filter(|s| query.matches(s.state, s.local, s.remote))
        .collect();
    if view.json {
        text.push_str(&output::json(&selected));
    } else {
        let columns = Shown {
            state: query.states.single().is_none(),
            netns: several,
            processes: view.processes,
            timers: view.timers,
            no_header: view.no_header,
        };
        text.push_str(&output::table(&selected, columns, label));
    }
    print_all(&text)
}

/// The sockets of `namespaces` listed here: what ss itself knows, and
/// owners from /proc with `owners`. No tracer has watched them yet, so
/// times in state and retries are unknown.
fn in_process(namespaces: &ViewNamespaces, owners: bool) -> anyhow::Result<Vec<ListedSocket>> {
    let mut followed = Namespaces::discover(&[], &[], monotonic_now_ns())?;
    let dumps = followed
        .dump_in(&namespaces.inodes(), &DumpRequest::all())
        .context("listing sockets")?;
    let sockets: Vec<DiagSocket> = dumps.into_iter().flat_map(|d| d.sockets).collect();
    let owners = if owners {
        socket_owners(Path::new("/proc")).context("reading the sockets' owners")?
    } else {
        HashMap::new()
    };
    Ok(LiveState::new(SocketTable::new()).listing(&sockets, monotonic_now_ns(), &owners))
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no error.
fn print_all(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("writing to stdout")
        }
        _ => Ok(()),
    }
}
