# syntax=docker/dockerfile:1
#
# The guard image: `guard daemon` on Debian bookworm-slim.
#
#   docker build -t registry.example.com/platform/guard:0.1.0 .
#
# The build compiles the eBPF programs too (guard-user/build.rs, with aya-build), so
# the builder carries what `cargo xtask setup` installs on a development machine:
# clang-19 and libbpf headers for the C CO-RE shim, rust-src for `-Z build-std=core`,
# and bpf-linker built against the toolchain's own LLVM.
# How to run it: deploy/kubernetes, deploy/helm and docs/deploy.md.

FROM rust:1.95-bookworm AS builder

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang-19 libbpf-dev \
 && rm -rf /var/lib/apt/lists/*

# aya-build compiles guard-ebpf with `rustup run stable cargo`, and this image names
# its toolchain `1.95.0`: install the `stable` channel and make it the default, so
# that the host code, the eBPF code and bpf-linker's LLVM all come from one
# toolchain. rust-src: guard-ebpf builds `core` for the bpf target itself.
RUN rustup toolchain install stable --profile minimal --component rust-src \
 && rustup default stable \
 && rustup component add rust-src \
 && rustc -vV

# bpf-linker against rustc's LLVM shared library, as xtask/src/setup.rs does: no
# separate LLVM to download, and the linker reads exactly the bitcode rustc writes.
# A layer of its own, so that source changes do not rebuild it.
RUN set -eux; \
    llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9][0-9]*\)\..*/\1/p')"; \
    test -n "$llvm_major"; \
    libdir="$(rustc --print sysroot)/lib"; \
    dylib="$(cd "$libdir" && { ls libLLVM-"$llvm_major".so libLLVM-"$llvm_major"-*.so 2>/dev/null; ls libLLVM-*.so; } | head -n 1)"; \
    test -n "$dylib"; \
    dylib="${dylib#lib}"; dylib="${dylib%.so}"; \
    RUSTFLAGS="-L $libdir -l dylib=$dylib -C link-arg=-Wl,-rpath,$libdir" \
      cargo install bpf-linker --version '^0.13' --force \
        --no-default-features --features "llvm-$llvm_major,no-llvm-linking"; \
    rm -rf "$CARGO_HOME/registry"; \
    bpf-linker --version

WORKDIR /src
COPY . .

# RUSTC_BOOTSTRAP=1: `-Z build-std=core` for the bpf target on a stable toolchain
# (guard-user/build.rs sets it too; setting it here makes the build's environment
# explicit). The caches keep the registry and the target directory between builds;
# the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTC_BOOTSTRAP=1 cargo build --release --locked -p guard \
 && install -D -m 0755 target/release/guard /out/guard

FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="guard" \
      org.opencontainers.image.description="Watch AI coding agents from the Linux kernel and stop them when they break policy" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

COPY --from=builder /out/guard /usr/local/bin/guard
# The built-in policies, for reference (`guard policy show NAME` prints the same),
# and the default policy where the entrypoint's default arguments look for it.
# Kubernetes mounts its own policy over /etc/guard.
COPY guard-policy/policies/ /usr/share/guard/policies/
COPY guard-policy/policies/workstation.toml /etc/guard/guard.toml

# guard loads eBPF programs: it runs as root, with the capabilities the runtime
# grants (see deploy/kubernetes/base/daemonset.yaml for the minimal set).
USER root
# guard stops cleanly on SIGTERM: it detaches its programs and ends every stream.
STOPSIGNAL SIGTERM
EXPOSE 9464

ENTRYPOINT ["/usr/local/bin/guard", "daemon"]
CMD ["--policy", "/etc/guard/guard.toml", "--events", "-"]
