//! The pgwarden daemon (placeholder until the HA daemon lands).
fn main() {
    eprintln!("pgwarden: the daemon is not built yet");
    std::process::exit(2);
}
