//! Entry point: parse the command line, set up logging, dispatch to `cli`.
use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = verdict::cli::Cli::parse();
    if !matches!(cli.command, verdict::cli::Command::Serve(_)) {
        // `serve` sets up logging from its configuration.
        verdict::telemetry::init_logging(&verdict::config::LogConfig::default());
    }
    if let Err(e) = verdict::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
