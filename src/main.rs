//! The `ringcast` binary: parse the command line, load the configuration, run the server.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    println!("ringcast");
}
