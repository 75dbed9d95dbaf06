//! Compiles `proto/` into Rust (tonic + prost) with a vendored protoc, and writes the descriptor
//! set that server reflection serves.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let well_known = well_known.to_string_lossy().into_owned();
    tonic_prost_build::configure()
        // prost's codec with concise INVALID_ARGUMENT decode errors (src/server/codec.rs).
        .codec_path("crate::server::codec::Codec")
        .file_descriptor_set_path(out.join("verdict_descriptor.bin"))
        .compile_protos(
            &[
                "proto/verdict/v1/authorizer.proto",
                "proto/verdict/v1/admin.proto",
            ],
            &["proto", well_known.as_str()],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
