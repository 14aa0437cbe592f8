# The `tare` binary in a small image (for docker-compose.yml; not built in CI here).
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tare

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tare /usr/local/bin/tare
ENTRYPOINT ["tare"]
