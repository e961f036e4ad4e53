//! The two clients that measure a cluster from outside, and the log of their acknowledged
//! writes.
//!
//! - The HAProxy-style client: one health checker per member polls `GET /primary` every
//!   50 ms with a 1 s timeout, as HAProxy's `option httpchk` does with `inter 50ms` and
//!   `timeout check 1s`; the writer sends its INSERTs to the member it is using while that
//!   member still answers 200, and otherwise to the first member that does. A change of
//!   member drops the connection (HAProxy's `on-marked-down shutdown-sessions`).
//! - The libpq-style client: one connection string naming all three members with
//!   `target_session_attrs=read-write`, reconnecting after any error.
//!
//! Both insert a sequence number in autocommit, one write at a time with a 10 ms pause,
//! and record when each write was acknowledged and by which member (`inet_server_port()`).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Health check period and timeout of the HAProxy-style client.
const CHECK_EVERY: Duration = Duration::from_millis(50);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Limit on one connection attempt or one INSERT: a write to a dead or frozen member fails
/// after this long and the client moves on.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two writes of one client.
const WRITE_PAUSE: Duration = Duration::from_millis(10);

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through whichever member answers `GET /primary` with 200.
    Haproxy,
    /// Through the multi-host libpq string with `target_session_attrs=read-write`.
    Libpq,
}

impl Via {
    pub const ALL: [Via; 2] = [Via::Haproxy, Via::Libpq];

    pub fn label(self) -> &'static str {
        match self {
            Via::Haproxy => "GET /primary",
            Via::Libpq => "libpq multi-host",
        }
    }
}

/// One acknowledged write.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub at: Instant,
    pub via: Via,
    /// Index of the member that acknowledged it.
    pub node: usize,
}

/// Where the clients connect: member i has its REST API at `rest[i]` and PostgreSQL at
/// `pg[i]`, both on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub rest: Vec<u16>,
    pub pg: Vec<u16>,
    pub user: String,
    pub password: String,
}

impl Endpoints {
    fn node_of_port(&self, port: i32) -> Option<usize> {
        self.pg.iter().position(|p| i32::from(*p) == port)
    }
}

/// The running clients; they stop when this is dropped.
pub struct Clients {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: CancellationToken,
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Clients {
    /// Starts the health checkers and both writers.
    pub fn start(ep: Endpoints) -> Clients {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .timeout(CHECK_TIMEOUT)
            .build()
            .expect("an HTTP client with only a timeout set");
        let mut health = Vec::new();
        for &port in &ep.rest {
            let (tx, rx) = watch::channel(false);
            tokio::spawn(check_loop(http.clone(), port, tx, stop.clone()));
            health.push(rx);
        }
        tokio::spawn(haproxy_writer(ep.clone(), health, acks.clone(), stop.clone()));
        tokio::spawn(libpq_writer(ep, acks.clone(), stop.clone()));
        Clients { acks, stop }
    }

    /// A copy of the acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("ack log lock").clone()
    }

    /// The first write `via` acknowledged after `since` by a member other than `not`.
    pub fn first_ack_after(&self, via: Via, since: Instant, not: Option<usize>) -> Option<Instant> {
        self.acks
            .lock()
            .expect("ack log lock")
            .iter()
            .find(|a| a.via == via && a.at > since && Some(a.node) != not)
            .map(|a| a.at)
    }
}

/// The longest interval between two consecutive writes of `via` that ends after `from` and
/// starts before `to`: the write gap that an event at `from` caused, with `to` after
/// the cluster settled.
pub fn longest_gap(acks: &[Ack], via: Via, from: Instant, to: Instant) -> Option<Duration> {
    let times: Vec<Instant> = acks.iter().filter(|a| a.via == via).map(|a| a.at).collect();
    times
        .windows(2)
        .filter(|w| w[1] > from && w[0] < to)
        .map(|w| w[1] - w[0])
        .max()
}

async fn check_loop(http: reqwest::Client, port: u16, up: watch::Sender<bool>, stop: CancellationToken) {
    let url = format!("http://127.0.0.1:{port}/primary");
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = matches!(http.get(&url).send().await, Ok(r) if r.status().as_u16() == 200);
        up.send_if_modified(|v| std::mem::replace(v, ok) != ok);
    }
}

const INSERT: &str = "INSERT INTO ha_bench (client, seq) VALUES ($1, $2) RETURNING inet_server_port()";

async fn connect(conn: String) -> Option<tokio_postgres::Client> {
    let (c, task) = tokio::time::timeout(OP_TIMEOUT, tokio_postgres::connect(&conn, tokio_postgres::NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(async move {
        let _ = task.await;
    });
    Some(c)
}

/// One INSERT with the time limit; the port of the member that acknowledged it.
async fn insert(c: &tokio_postgres::Client, client: &str, seq: i64) -> Option<i32> {
    let row = tokio::time::timeout(OP_TIMEOUT, c.query_one(INSERT, &[&client, &seq]))
        .await
        .ok()?
        .ok()?;
    row.try_get(0).ok()
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(WRITE_PAUSE) => {}
    }
}

async fn haproxy_writer(
    ep: Endpoints,
    health: Vec<watch::Receiver<bool>>,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: CancellationToken,
) {
    let mut seq = 0i64;
    let mut conn: Option<(usize, tokio_postgres::Client)> = None;
    while !stop.is_cancelled() {
        let up: Vec<bool> = health.iter().map(|h| *h.borrow()).collect();
        let current = conn.as_ref().map(|(i, _)| *i);
        let backend = current.filter(|i| up[*i]).or_else(|| up.iter().position(|u| *u));
        if backend != current {
            conn = None;
        }
        let Some(node) = backend else {
            pause(&stop).await;
            continue;
        };
        if conn.is_none() {
            let s = format!(
                "host=127.0.0.1 port={} user={} password={} dbname=postgres connect_timeout=1",
                ep.pg[node], ep.user, ep.password
            );
            match connect(s).await {
                Some(c) => conn = Some((node, c)),
                None => {
                    pause(&stop).await;
                    continue;
                }
            }
        }
        let Some((node, c)) = &conn else { continue };
        seq += 1;
        match insert(c, "haproxy", seq).await {
            // The proxy forwards to one member: the port only confirms it.
            Some(port) if ep.node_of_port(port) == Some(*node) => {
                acks.lock().expect("ack log lock").push(Ack {
                    at: Instant::now(),
                    via: Via::Haproxy,
                    node: *node,
                })
            }
            _ => conn = None,
        }
        pause(&stop).await;
    }
}

async fn libpq_writer(ep: Endpoints, acks: Arc<Mutex<Vec<Ack>>>, stop: CancellationToken) {
    let ports: Vec<String> = ep.pg.iter().map(u16::to_string).collect();
    let hosts = vec!["127.0.0.1"; ep.pg.len()].join(",");
    let s = format!(
        "host={hosts} port={} user={} password={} dbname=postgres connect_timeout=1 target_session_attrs=read-write",
        ports.join(","),
        ep.user,
        ep.password
    );
    let mut seq = 0i64;
    let mut conn: Option<tokio_postgres::Client> = None;
    while !stop.is_cancelled() {
        if conn.is_none() {
            conn = connect(s.clone()).await;
            if conn.is_none() {
                pause(&stop).await;
                continue;
            }
        }
        let Some(c) = &conn else { continue };
        seq += 1;
        match insert(c, "libpq", seq).await.and_then(|p| ep.node_of_port(p)) {
            Some(node) => acks.lock().expect("ack log lock").push(Ack {
                at: Instant::now(),
                via: Via::Libpq,
                node,
            }),
            None => conn = None,
        }
        pause(&stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_counts_only_intervals_around_the_event() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let acks: Vec<Ack> = [0, 10, 500, 510, 2000, 2010, 2020]
            .iter()
            .map(|ms| Ack {
                at: at(*ms),
                via: Via::Haproxy,
                node: 0,
            })
            .chain(std::iter::once(Ack {
                at: at(1000),
                via: Via::Libpq,
                node: 1,
            }))
            .collect();
        // The event at 505 ms: the 490 ms gap before it does not count, 510 -> 2000 does.
        assert_eq!(
            longest_gap(&acks, Via::Haproxy, at(505), at(2020)),
            Some(Duration::from_millis(1490))
        );
        // An event at 5 ms with the window closing at 400 ms: only 10 -> 500 overlaps it.
        assert_eq!(
            longest_gap(&acks, Via::Haproxy, at(5), at(400)),
            Some(Duration::from_millis(490))
        );
        assert_eq!(longest_gap(&acks, Via::Libpq, at(0), at(3000)), None);
    }
}
