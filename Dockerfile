# procship in a container, watching its host. Multi-stage: build from
# source on Debian's Rust image, run on distroless (glibc, no shell) as the
# non-root user 65532. See README "Deploy" for the docker run line.
# The toolchain is pinned to the one packaging/symbol-order.txt was made
# with: symbol names carry rustc's version, and a list made by another
# rustc no longer orders the binary's hot code together (README, Performance).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && mkdir -p /out/spool \
 && cp target/release/procship /out/procship

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/procship /usr/bin/procship
# The spool directory, owned by the runtime user: mount a volume here.
COPY --from=build --chown=65532:65532 /out/spool /var/lib/procship
# Watch the host: mount its /proc, /sys and / read-only at these paths.
ENV PROCSHIP_HOST_PROC=/host/proc \
    PROCSHIP_HOST_SYS=/host/sys \
    PROCSHIP_HOST_ROOT=/host/root \
    PROCSHIP_SPOOL_DIR=/var/lib/procship
USER 65532:65532
VOLUME ["/var/lib/procship"]
ENTRYPOINT ["/usr/bin/procship"]
