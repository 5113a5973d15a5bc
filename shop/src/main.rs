//! `shop`: see the library (`shop::app` wires the adapters; `shop::cli`
//! reads the command line).

fn main() -> std::process::ExitCode {
    shop::cli::main()
}
