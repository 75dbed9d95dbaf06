//! Entry point: parse the command line, set up logging, dispatch to `cli`.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = verdict::cli::Cli::parse();
    if !matches!(cli.command, verdict::cli::Command::Serve(_)) {
        // `serve` sets up logging from its configuration.
        let log = verdict::config::LogConfig::default();
        verdict::telemetry::init_logging(
            &log.level,
            log.format == verdict::config::LogFormat::Json,
        );
    }
    match verdict::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
