package bpf

// The objects and their Go bindings are generated and committed; `make
// generate` rebuilds them with Debian 12's clang 14 and libbpf-dev 1.1
// (the pinned toolchain: TestObjectsReproducible rebuilds the object with
// it and compares the manifest), then writes the SHA-256 manifest that is
// embedded and checked before any load.

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -go-package bpf -type event -type conn_key -type conn_stats -type conn_info flow src/flow.bpf.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate sh -c "sha256sum flow_bpfel.o > objects.sha256"
