//! The one `tessera` binary: server, dev cluster and CLI (like `vault` / `bao`).

/// Every gRPC call, Raft message and log entry allocates and frees small buffers on many
/// threads at once; mimalloc serves those from per-thread pages. Secrets are zeroized by their
/// own types before their memory is freed, whichever allocator takes it back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    transparent_huge_pages_off();
    tessera_node::cli::main()
}

/// Turns transparent huge pages off for this process (and the nodes `tessera dev` starts).
///
/// mimalloc's heaps are eligible for huge pages, so the kernel zeroes a whole 2 MiB page the
/// first time any byte of it is touched; a node's work is many small, short-lived buffers, and
/// that zeroing cost it more than fewer TLB misses gave back (about 3% more writes/s at 32
/// with huge pages off, README "Benchmarks"). It only changes speed and memory footprint, so
/// a kernel that refuses the call is no reason to stop.
fn transparent_huge_pages_off() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_off_once_started() {
        super::transparent_huge_pages_off();
        assert!(nix::sys::prctl::get_thp_disable().expect("PR_GET_THP_DISABLE"));
    }
}
