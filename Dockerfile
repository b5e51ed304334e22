FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/oxeye /oxeye

FROM debian:bookworm-slim
COPY --from=build /oxeye /usr/local/bin/oxeye
EXPOSE 9090 4317 4318 9200
# The listeners are beyond loopback: Oxeye starts only with credentials,
# e.g. -e OXEYE_AUTH__TOKENS='[{name="admin", token_sha256="…", roles=["admin"]}]'
# (token digests from `oxeye hash-token`).
ENTRYPOINT ["/usr/local/bin/oxeye"]
CMD ["serve", "--listen", "0.0.0.0:9090", "--data", "/data", "--otlp-grpc", "0.0.0.0:4317", "--otlp-http", "0.0.0.0:4318", "--elasticsearch", "0.0.0.0:9200"]
