//! `socktrace top`: the full-screen live view, fed by the running agent or,
//! without one, by a tracer started in this process.
pub mod screen;
pub mod terminal;
pub mod view;
use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use tokio::sync::mpsc;

use crate::{
    agent::client,
    agent::live_consumer::{Answers, LiveConsumer},
    agent::protocol::{Request, Response},
    cli::TopArgs,
    cli::view_namespaces::ViewNamespaces,
    event_loop::{self, LossNotices},
    seed::Existing,
    state::live::LiveState,
    state::overview::Overview,
    top::terminal::OverviewSource,
};

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let namespaces = ViewNamespaces::resolve(&args.netns)?;
    let request = Request::Overview {
        netns: namespaces.inodes(),
    };
    let timeout = args.agent.timeout();
    if !args.agent.no_agent
        && let Some(response) = client::ask(&args.agent.agent, &request, timeout).await?
    {
        let mut agent = FromAgent {
            path: args.agent.agent,
            timeout,
            request,
            first: Some(overview_of(response)?),
        };
        return terminal::run(&mut agent, namespaces.title()).await;
    }
    let event_loop::Started {
        tracing,
        namespaces: mut followed,
        table,
        ..
    } = event_loop::attach_and_seed(&args.ring, &namespaces.as_args(), Existing::WithoutTimeWait)?;
    let (jobs, mut inbox) = mpsc::channel(1);
    let mut consumer = LiveConsumer::new(LiveState::new(table));
    let mut tracer = InProcess {
        answers: Answers::new(jobs),
        request,
    };
    let view = terminal::run(&mut tracer, namespaces.title());
    let tracing = event_loop::run(
        tracing,
        &mut followed,
        &mut consumer,
        None,
        Some(&mut inbox),
        LossNotices::InView,
    );
    // Whichever ends first ends both: the user quit, or the tracer stopped
    // (SIGTERM, or an error).
    tokio::select! {
        viewed = view => viewed,
        traced = tracing => traced.map(|summary| summary.report()),
    }
}

fn overview_of(response: Response) -> anyhow::Result<Overview> {
    match response {
        Response::Overview(overview) => Ok(*overview),
        Response::Refused(reason) => bail!("refused: {reason}"),
        Response::Sockets(_) => bail!("a socket list came instead of an overview"),
    }
}

/// Overviews from the running agent, one connection each.
struct FromAgent {
    path: PathBuf,
    timeout: Duration,
    request: Request,
    /// The answer to the question that found the agent.
    first: Option<Overview>,
}

impl OverviewSource for FromAgent {
    async fn overview(&mut self) -> anyhow::Result<Overview> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        match client::ask(&self.path, &self.request, self.timeout).await? {
            Some(response) => overview_of(response),
            None => bail!("the agent at {} is gone", self.path.display()),
        }
    }
}

/// Overviews from the tracer this process runs.
struct InProcess {
    answers: Answers,
    request: Request,
}

impl OverviewSource for InProcess {
    async fn overview(&mut self) -> anyhow::Result<Overview> {
        overview_of(self.answers.answer(self.request.clone()).await.response)
    }
}
