# The `tare` binary in a small image (for docker-compose.yml; not built in CI here).
# The locked crates need rustc >= 1.89 (async-nats 0.51, uuid 1.29).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tare

FROM debian:bookworm-slim
# tini is PID 1: it forwards SIGTERM to tare (which stops gracefully on it, as on
# Ctrl-C) and reaps children, so `docker compose stop` never ends in SIGKILL. curl is
# for the healthchecks (docker-compose.yml).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/tare --create-home tare \
    && mkdir -p /keys && chown tare:tare /keys
COPY --from=build /src/target/release/tare /usr/local/bin/tare
# Not root: the node needs no privilege (its ports are above 1024), and a volume mounted
# on /keys or /var/lib/tare takes the ownership of these directories when first made.
USER tare
WORKDIR /var/lib/tare
ENTRYPOINT ["/usr/bin/tini", "--", "tare"]
