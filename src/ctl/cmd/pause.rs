//! `pause` and `resume`: switch the HA loop's automatic actions off and on.

use super::{cluster_of, Result};
use crate::ctl::client::Client;
use crate::pb;

pub(super) async fn pause(
    c: &mut Client,
    cluster: Option<&str>,
    scope: Option<&str>,
    on: bool,
    wait: bool,
) -> Result<()> {
    cluster_of(c, cluster, scope).await?;
    // The member that takes the request polls the others' REST status, as patronictl does.
    let wait_seconds = if wait { PAUSE_WAIT_SECONDS } else { 0 };
    if wait {
        println!(
            "'{}' request sent, waiting until it is recognized by all nodes",
            if on { "pause" } else { "resume" }
        );
    }
    let r = if on {
        c.pause(pb::PauseRequest { wait_seconds }).await
    } else {
        c.resume(pb::ResumeRequest { wait_seconds }).await
    };
    println!("{}", r?.into_inner().message);
    Ok(())
}

/// How long `pause --wait` / `resume --wait` waits for every member to report it.
const PAUSE_WAIT_SECONDS: u32 = 120;
