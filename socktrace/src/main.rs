use std::process::ExitCode;

use clap::Parser;
use socktrace::{
    cli::{Cli, Command},
    support::error_line::ErrorLine,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Trace(args) => socktrace::trace::run(args).await,
            Command::Handshakes(args) => socktrace::handshakes::run(args).await,
            Command::Timewait(args) => socktrace::timewait::run(args).await,
            Command::Agent(args) => socktrace::agent::run(args).await,
            Command::Ss(args) => socktrace::ss::run(args).await,
            Command::Top(args) => socktrace::top::run(args).await,
            Command::Replay(args) => socktrace::replay::run(args).await,
            // The one command whose status says more than success.
            Command::Probe(args) => return socktrace::probe::run(args).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    result.unwrap_or_else(|error| fail(&error))
}

/// One line on stderr, with the chain of causes, and exit status 1.
fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("socktrace: error: {}", ErrorLine(error.as_ref()));
    ExitCode::FAILURE
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
}
