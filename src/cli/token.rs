//! `verdict token keygen` and `verdict token sign`: development tools for trying token
//! verification without an identity provider ([`crate::token::dev`]). Not for production keys.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};

use super::read_json_arg;
use crate::token::dev::DevKey;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Development only: write a new Ed25519 key pair, DIR/jwks.json (for `serve --jwks-file`)
    /// and DIR/signing-key.pem (for `token sign --key`).
    Keygen(KeygenArgs),
    /// Development only: print a JWT with these claims, signed by a key from `token keygen`.
    Sign(SignArgs),
}

#[derive(Args)]
pub struct KeygenArgs {
    /// The directory to write jwks.json and signing-key.pem into (created if missing; existing
    /// files are not overwritten).
    #[arg(long, default_value = "dev-keys")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct SignArgs {
    /// The private key `token keygen` wrote.
    #[arg(long, default_value = "dev-keys/signing-key.pem")]
    pub key: PathBuf,
    /// The claims as a JSON object (or @file): {"sub": "dr-house", "iss": "...", "aud":
    /// "verdict", "roles": ["physician"], "practice_id": "7"}.
    #[arg(long)]
    pub claims: String,
    /// Lifetime of the token, in seconds: `exp` is now + this, unless the claims set it (`iat`
    /// too).
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
}

pub fn run(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Keygen(args) => keygen(args),
        TokenCommand::Sign(args) => sign(args),
    }
}

fn keygen(args: KeygenArgs) -> Result<()> {
    let key = DevKey::generate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let jwks = args.out.join("jwks.json");
    let pem = args.out.join("signing-key.pem");
    for path in [&jwks, &pem] {
        if path.exists() {
            bail!(
                "{} exists; not overwriting it (remove it, or choose another --out)",
                path.display()
            );
        }
    }
    let private = key.private_pem().map_err(anyhow::Error::msg)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(&pem)
            .with_context(|| format!("cannot write {}", pem.display()))?,
        private.as_bytes(),
    )?;
    std::fs::write(&jwks, serde_json::to_string_pretty(&key.jwks())? + "\n")
        .with_context(|| format!("cannot write {}", jwks.display()))?;
    println!(
        "{} (public, for `verdict serve --jwks-file`) and {} (private, for `verdict token sign \
         --key`): key id {}. For development only.",
        jwks.display(),
        pem.display(),
        key.kid()
    );
    Ok(())
}

fn sign(args: SignArgs) -> Result<()> {
    let pem =
        std::fs::read(&args.key).with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = DevKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    let serde_json::Value::Object(claims) = read_json_arg("claims", &args.claims)? else {
        bail!("--claims must be a JSON object");
    };
    println!(
        "{}",
        key.sign(claims, args.expires_in)
            .map_err(anyhow::Error::msg)?
    );
    Ok(())
}
