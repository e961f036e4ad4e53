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
    let dcs = Arc::new(MemDcs::new());
    let put = |k: &str, v: &str| {
        let dcs = dcs.clone();
        let (k, v) = (format!("{P}{k}"), v.to_string());
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
        scope: "batman".into(),
        name: "pg0".into(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(NodeStatus::initial(info, false));
    // The sender is dropped: the status stays what it was, which is all these tests read.
    let api = ApiState::new(rx, dcs.clone(), P, Duration::from_secs(30));
    let admin = Admin::new(api, Arc::new(NoRaft), Forwarder::new(None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let auth = AdminAuth::new(token.map(str::to_string));
    tokio::spawn(async move {
        pgwarden::grpc::serve::serve(listener, admin, auth, s.cancelled_owned())
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
