//! `shop`: see the library (`shop::app` wires the adapters; `shop::cli`
//! reads the command line).

// Under load glibc's malloc took about a third of the shop's CPU: arena
// lock waits, chunk consolidation (docs/benchmarks.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shop::cli::main()
}
