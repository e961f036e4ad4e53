//! The admin service over a real socket, backed by the in-memory DCS: authentication,
//! the cluster view, REST-identical refusals with their status codes, compare-and-swap on
//! the configuration, and the watch stream.

use pgwarden::api::rest::ApiState;
use pgwarden::grpc::auth::AdminAuth;
use pgwarden::grpc::forward::Forwarder;
use pgwarden::grpc::pb::admin_service_client::AdminServiceClient;
use pgwarden::grpc::pb::{self, cluster_event::Kind};
use pgwarden::grpc::service::{Admin, RaftAdmin};
use pgwarden::ha::status::{DaemonInfo, NodeStatus};
use pgwarden_raft::command::Condition;
use pgwarden_raft::node::wire::{AdminError, AdminReply, AdminRequest};
use pgwarden_raft::{Dcs, MemDcs};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const P: &str = "/service/batman/";

/// No Raft here: every membership call finds no leader.
struct NoRaft;

impl RaftAdmin for NoRaft {
    async fn admin(&self, _: AdminRequest) -> Result<AdminReply, AdminError> {
        Err(AdminError::NoLeader)
    }
}

struct Server {
    addr: String,
    dcs: Arc<MemDcs>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn server(token: Option<&str>) -> Server {
    server_for(token, "batman").await
}

/// A member pg0 of cluster `scope` (two members, pg0 leading) on the in-memory DCS.
async fn server_for(token: Option<&str>, scope: &str) -> Server {
    server_tls(token, scope, None).await
}

/// [`server_for`], over TLS when `tls` is given.
async fn server_tls(token: Option<&str>, scope: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let prefix = format!("/service/{scope}/");
    let dcs = Arc::new(MemDcs::new());
    let put = |k: &str, v: &str| {
        let dcs = dcs.clone();
        let (k, v) = (format!("{prefix}{k}"), v.to_string());
        async move { dcs.put(&k, &v, None, Condition::Always).await.unwrap() }
    };
    put("initialize", "7277694203142172922").await;
    put("config", r#"{"ttl":30,"loop_wait":10}"#).await;
    put("leader", "pg0").await;
    put(
        "members/pg0",
        r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:1/patroni","state":"running","role":"primary","timeline":2}"#,
    )
    .await;
    put(
        "members/pg1",
        r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:1/patroni","state":"running","role":"replica","replication_state":"streaming","xlog_location":100,"receive_lsn":100,"replay_lsn":100,"timeline":2}"#,
    )
    .await;
    let info = DaemonInfo {
        version: "test".into(),
        scope: scope.into(),
        name: "pg0".into(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(NodeStatus::initial(info, false));
    // The sender is dropped: the status stays what it was, which is all these tests read.
    let api = ApiState::new(rx, dcs.clone(), &prefix, Duration::from_secs(30));
    let admin = Admin::new(api, Arc::new(NoRaft), Forwarder::new(None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let auth = AdminAuth::new(token.map(str::to_string));
    tokio::spawn(async move {
        pgwarden::grpc::serve::serve_tls(listener, tls, admin, auth, s.cancelled_owned())
            .await
            .unwrap();
    });
    Server { addr, dcs, stop }
}

async fn client(addr: &str) -> AdminServiceClient<tonic::transport::Channel> {
    AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// The view carries the system identifier, roles and lags as GET /cluster does.
#[tokio::test]
async fn cluster_view_matches_the_rest_document() {
    let s = server(None).await;
    let mut c = client(&s.addr).await;
    let cl = c
        .get_cluster(pb::GetClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cl.scope, "batman");
    assert_eq!(cl.system_identifier.as_deref(), Some("7277694203142172922"));
    assert_eq!(cl.answered_by, "pg0");
    assert_eq!(cl.members.len(), 2);
    assert_eq!(cl.members[0].role, "leader");
    assert_eq!(cl.members[1].role, "replica");
    assert_eq!(cl.members[1].state, "streaming");
    assert_eq!(cl.members[1].receive_lsn.as_deref(), Some("0/64"));
}

/// A configured token is required; a wrong one is refused with a message saying so.
#[tokio::test]
async fn calls_without_the_token_are_refused() {
    let s = server(Some("t0ken")).await;
    let mut c = client(&s.addr).await;
    let e = c.get_cluster(pb::GetClusterRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("requires a bearer token"), "{e:?}");
    let mut req = tonic::Request::new(pb::GetClusterRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    let e = c.get_cluster(req).await.unwrap_err();
    assert!(e.message().contains("wrong bearer token"), "{e:?}");
    let mut req = tonic::Request::new(pb::GetClusterRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer t0ken".parse().unwrap());
    assert!(c.get_cluster(req).await.is_ok());
}

/// Switchover refusals are the REST API's texts with matching codes and x-http-status.
#[tokio::test]
async fn switchover_refusals_carry_rest_texts_and_codes() {
    let s = server(None).await;
    let mut c = client(&s.addr).await;
    let e = c
        .switchover(pb::SwitchoverRequest {
            leader: "pg0".into(),
            candidate: "pg0".into(),
            scheduled_at: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "Switchover target and source are the same");
    assert_eq!(e.metadata().get("x-http-status").unwrap(), "400");
    let e = c
        .switchover(pb::SwitchoverRequest {
            leader: "pg1".into(),
            candidate: "pg0".into(),
            scheduled_at: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "leader name does not match");
    let e = c
        .switchover(pb::SwitchoverRequest {
            leader: "pg0".into(),
            candidate: "pg1".into(),
            scheduled_at: "2000-01-01T00:00:00+00:00".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "Cannot schedule switchover in the past");
    let r = c
        .switchover(pb::SwitchoverRequest {
            leader: "pg0".into(),
            candidate: "pg1".into(),
            scheduled_at: "2999-01-01T00:00:00+00:00".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.message.as_str(), r.http_status), ("Switchover scheduled", 202));
    let r = c
        .cancel_switchover(pb::CancelSwitchoverRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message, "scheduled switchover deleted");
    let e = c
        .cancel_switchover(pb::CancelSwitchoverRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .restart(pb::RestartRequest {
            member: "pg9".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "pg9 is not a member of cluster batman");
    let e = c
        .list_raft_members(pb::ListRaftMembersRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

/// Configuration writes with an expected revision fail with ABORTED after a concurrent change.
#[tokio::test]
async fn config_writes_are_compare_and_swap() {
    let s = server(None).await;
    let mut c = client(&s.addr).await;
    let cfg = c.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    let patched = c
        .patch_config(pb::PatchConfigRequest {
            patch_json: r#"{"loop_wait":5}"#.into(),
            expected_revision: Some(cfg.revision),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(patched.json.contains("\"loop_wait\":5"), "{patched:?}");
    let e = c
        .replace_config(pb::ReplaceConfigRequest {
            config_json: r#"{"ttl":20}"#.into(),
            expected_revision: Some(cfg.revision),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = c
        .patch_config(pb::PatchConfigRequest {
            patch_json: "{not json".into(),
            expected_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("patch_json is not valid JSON"), "{e:?}");
    let r = c
        .pause(pb::PauseRequest { wait_seconds: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message, "Success: cluster management is paused");
    let e = c.pause(pb::PauseRequest { wait_seconds: 0 }).await.unwrap_err();
    assert_eq!(e.message(), "Cluster is already paused");
}

/// The stream starts with a snapshot and reports a member joining and the leader changing.
#[tokio::test]
async fn watch_reports_changes() {
    let s = server(None).await;
    let mut c = client(&s.addr).await;
    let mut stream = c.watch(pb::WatchRequest {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.kind, Kind::Snapshot as i32);
    assert_eq!(first.cluster.unwrap().members.len(), 2);
    s.dcs
        .put(
            &format!("{P}members/pg2"),
            r#"{"api_url":"http://127.0.0.1:1/patroni","state":"running","role":"replica"}"#,
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    s.dcs
        .put(&format!("{P}leader"), "pg1", None, Condition::Always)
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while !kinds.contains(&Kind::LeaderChanged) {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        kinds.push(Kind::try_from(ev.kind).unwrap());
    }
    assert!(kinds.contains(&Kind::MemberJoined), "{kinds:?}");
    assert!(kinds.contains(&Kind::RoleChanged), "{kinds:?}");
}

/// A REST API server (the real router) for the in-memory cluster, as member pg1's
/// `api_url` would point at; returns its address and the token that stops it.
async fn rest_server(dcs: Arc<MemDcs>) -> (String, CancellationToken) {
    let info = DaemonInfo {
        version: "9.9.9".into(),
        scope: "batman".into(),
        name: "pg1".into(),
    };
    let mut status = NodeStatus::initial(info, false);
    status.server_version = Some(150008);
    let (_tx, rx) = tokio::sync::watch::channel(status);
    let api = ApiState::new(rx, dcs, P, Duration::from_secs(30));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        pgwarden::api::serve::serve(
            listener,
            pgwarden::api::rest::router(api),
            None,
            s.cancelled_owned(),
        )
        .await
        .unwrap();
    });
    (addr, stop)
}

/// `pgwardenctl version`'s data: each member's own GET /patroni, the answering member's
/// read directly, another's fetched from its REST API, one that does not answer
/// reported with the reason; an unknown member name is refused.
#[tokio::test]
async fn ctl_member_status_reports_each_member() {
    let s = server(None).await;
    let (rest, stop_rest) = rest_server(s.dcs.clone()).await;
    s.dcs
        .put(
            &format!("{P}members/pg1"),
            &format!(
                r#"{{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://{rest}/patroni","state":"running","role":"replica"}}"#
            ),
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    s.dcs
        .put(
            &format!("{P}members/pg2"),
            r#"{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"http://127.0.0.1:1/patroni","state":"running","role":"replica"}"#,
            None,
            Condition::Always,
        )
        .await
        .unwrap();
    let mut c = client(&s.addr).await;
    let r = c
        .get_member_status(pb::GetMemberStatusRequest { members: vec![] })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = r.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["pg0", "pg1", "pg2"]);
    let doc = |i: usize| serde_json::from_str::<serde_json::Value>(&r.members[i].status_json).unwrap();
    assert_eq!(doc(0)["patroni"]["pgwarden_version"], "test", "{r:?}");
    assert_eq!(doc(1)["patroni"]["pgwarden_version"], "9.9.9", "{r:?}");
    assert_eq!(doc(1)["server_version"], 150008, "{r:?}");
    assert!(
        r.members[2].status_json.is_empty() && !r.members[2].error.is_empty(),
        "{r:?}"
    );
    let one = c
        .get_member_status(pb::GetMemberStatusRequest {
            members: vec!["pg1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.members.len(), 1);
    let e = c
        .get_member_status(pb::GetMemberStatusRequest {
            members: vec!["nosuch".into()],
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("nosuch is not a member of cluster batman"),
        "{e:?}"
    );
    stop_rest.cancel();
}

/// pgwardenctl pointed at the REST API's port (the real router, which speaks HTTP/2
/// too), or at a plain HTTP/1 server, says that this is not the admin API and where the
/// admin API is, instead of an HTTP/2 error.
// Several threads: the pgwardenctl runs below block one while the servers answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_rest_port_is_explained() {
    let s = server(None).await;
    let (rest, stop_rest) = rest_server(s.dcs.clone()).await;
    // A plain HTTP/1.1 server: answers anything with a 400 and closes.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap().to_string();
    let plain_task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = plain.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    // Python's http.server, which Patroni's REST API is built on: it refuses "HTTP/2.0"
    // before choosing a protocol version, so its error page comes without a status line.
    let python = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let python_addr = python.local_addr().unwrap().to_string();
    let python_task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = python.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"<!DOCTYPE HTML>\n<html lang=\"en\">\n<head><title>Error response</title></head>\n<body><p>Error code: 505</p></body></html>\n")
                .await;
        }
    });
    for addr in [&rest, &plain_addr, &python_addr] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
            .args(["-d", addr, "list"])
            .env_remove("PGWARDENCTL_CONFIG_FILE")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .unwrap()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "{addr} is not pgwarden's admin API (the REST API port?)"
            )),
            "{addr}: {err}"
        );
    }
    // The admin API itself still works, and a URL is refused before any connection.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
        .args(["-d", &s.addr, "list", "-f", "yml"])
        .env_remove("PGWARDENCTL_CONFIG_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Member: pg0"),
        "{out:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
        .args(["-d", &format!("http://{}", s.addr), "list"])
        .env_remove("PGWARDENCTL_CONFIG_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("expected host:port"),
        "{err}"
    );
    plain_task.abort();
    python_task.abort();
    stop_rest.cancel();
}

/// With nothing listening: the error names the endpoint once, says "tcp connect error"
/// once, and hints at what to check.
#[tokio::test]
async fn ctl_refused_connection_has_a_hint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
        .args(["-d", &format!("127.0.0.1:{port}"), "list"])
        .env_remove("PGWARDENCTL_CONFIG_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("tcp connect error").count(), 1, "{err}");
    assert!(err.contains("is pgwarden running there?"), "{err}");
    assert!(err.contains("not to the REST API on 8008"), "{err}");
}

/// `list a b` over two endpoints serving two clusters prints both; a cluster no endpoint
/// serves is named with what each endpoint serves; `reinit --force` without members is
/// refused (no one to ask which).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_list_several_clusters_and_reinit_needs_members() {
    let a = server(None).await;
    let b = server_for(None, "robin").await;
    let eps = format!("{},{}", a.addr, b.addr);
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
            .args(args)
            .env_remove("PGWARDENCTL_CONFIG_FILE")
            .output()
            .unwrap()
    };
    let out = ctl(&["-d", &eps, "list", "robin", "batman", "-f", "tsv"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let at = |c: &str| {
        text.find(&format!("\n{c}\tpg0\t"))
            .unwrap_or_else(|| panic!("{c}: {text}"))
    };
    assert!(at("robin") < at("batman"), "{text}");
    let out = ctl(&["-d", &eps, "topology", "batman", "joker"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("+ Cluster: batman"),
        "{out:?}"
    );
    assert!(
        err.contains("cluster joker is not served by the endpoints given"),
        "{err}"
    );
    assert!(err.contains(&format!("{} serves robin", b.addr)), "{err}");
    let out = ctl(&["-d", &a.addr, "list", "robin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster robin is not served here"), "{err}");
    let out = ctl(&["-d", &a.addr, "reinit", "batman", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("reinit --force needs the members"),
        "{err}"
    );
    assert!(err.contains("replicas of batman: pg1"), "{err}");
}

/// -k and ctl.insecure: TLS to a member whose certificate pgwardenctl cannot verify (no CA
/// given) works, with a warning on stderr; without them the connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_insecure_skips_certificate_verification() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pgwarden_testkit::ca::Ca::new("pgwarden test CA");
    let (cert, key) = ca.issue_loopback_files(dir.path(), "member");
    let ctl_cfg = pgwarden::config::Ctl {
        certfile: Some(cert),
        keyfile: Some(key),
        ..Default::default()
    };
    let tls = pgwarden::grpc::serve::tls_config(&ctl_cfg).unwrap();
    let s = server_tls(None, "batman", tls).await;
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgwardenctl"))
            .args(args)
            .env_remove("PGWARDENCTL_CONFIG_FILE")
            .output()
            .unwrap()
    };
    // Without -k or --cacert: the TLS answer is named, with what to pass.
    let out = ctl(&["-d", &s.addr, "list"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it answers TLS: pass --cacert"),
        "{out:?}"
    );
    for args in [
        vec!["-k", "-d", &s.addr, "list"],
        vec!["--insecure", "-d", &s.addr, "list", "-f", "json"],
    ] {
        let out = ctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("pg0"), "{out:?}");
        assert!(err.contains("Warning: -k/--insecure"), "{err}");
    }
    // ctl.insecure from the configuration file given with -c.
    let file = dir.path().join("pgwarden.yml");
    std::fs::write(
        &file,
        format!(
            "scope: batman\nname: pg0\n\
             restapi: {{listen: 127.0.0.1:1, connect_address: 127.0.0.1:1}}\n\
             raft: {{self_addr: 127.0.0.1:2, data_dir: {dir}/raft, single_node: true}}\n\
             postgresql:\n  listen: 127.0.0.1:3\n  connect_address: 127.0.0.1:3\n  data_dir: {dir}/pg\n\
             \x20 authentication: {{superuser: {{username: postgres}}, replication: {{username: rep}}}}\n\
             ctl:\n  connect_address: {addr}\n  insecure: true\n",
            dir = dir.path().display(),
            addr = s.addr
        ),
    )
    .unwrap();
    let out = ctl(&["-c", file.to_str().unwrap(), "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Warning: -k/--insecure"),
        "{out:?}"
    );
}
