# Multi-stage build from source; small non-root runtime image.
# Not yet built in CI (no Docker engine on the CI machine): issue #5 finishes it.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/procship /usr/bin/procship
# Watch the host: mount its /proc, /sys and / read-only at these paths.
ENV PROCSHIP_HOST_PROC=/host/proc PROCSHIP_HOST_SYS=/host/sys PROCSHIP_HOST_ROOT=/host/root
USER nonroot
ENTRYPOINT ["/usr/bin/procship"]
