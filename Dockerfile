# syntax=docker/dockerfile:1
# The Verdict image: a release build of the daemon on distroless, as the nonroot user.
#
#   docker build -t registry.example.com/platform/verdict:0.1.0 .
#
# The runtime image has no shell and no package manager: the binary (dynamically linked against
# glibc, which distroless/cc provides), CA certificates, and the bundled clinic policies as an
# example. The Helm chart (helm/verdict) mounts the config file and the policies over it.

# Builder: Debian bookworm, the glibc the runtime image has (debian12).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads (see .dockerignore); build.rs compiles proto/ with a vendored protoc.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
# --locked: exactly the dependency versions of Cargo.lock. No debug info in the shipped binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --locked --bin verdict \
    && install -D -m 0755 target/release/verdict /out/verdict

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/verdict /usr/local/bin/verdict
COPY policies/ /etc/verdict/policies/
# distroless's nonroot user and group, by number so that runAsNonRoot can verify it (the chart's
# runAsUser).
USER 65532:65532
# gRPC and metrics (the chart's grpc.port and metrics.port).
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/verdict"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464", "--policies", "/etc/verdict/policies", "--log-format", "json"]
