# The `tare` binary in a small image (for docker-compose.yml; not built in CI here).
# The locked crates need rustc >= 1.89 (async-nats 0.51, uuid 1.29).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tare

FROM debian:bookworm-slim
# tini is PID 1: it forwards SIGTERM to tare (which stops gracefully on it, as on
# Ctrl-C) and reaps children, so `docker compose stop` never ends in SIGKILL.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tare /usr/local/bin/tare
ENTRYPOINT ["/usr/bin/tini", "--", "tare"]
