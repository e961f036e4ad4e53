//! The admin service. Reads and DCS writes run here on whatever member received the call
//! (the DCS forwards writes to the Raft leader and reads linearizably); actions on a
//! member's PostgreSQL run on that member, locally through the HA loop's request channel
//! or remotely through its REST API.

use super::convert;
use super::dcs_ops::{self, LeaseClock};
use super::error::AdminError;
use super::forward::Forwarder;
use super::pb::admin_service_server::AdminService;
use super::pb::{self, cluster_event::Kind};
use super::watch;
use crate::api::actions;
use crate::api::cluster::{self, Snapshot};
use crate::api::error::ApiError;
use crate::api::manual::{self, Action};
use crate::api::rest::ApiState;
use crate::config::merge_patch;
use crate::dcs::Dcs;
use pgwarden_raft::command::Condition;
use pgwarden_raft::command::KeyValue;
use pgwarden_raft::dcs::DcsError;
use pgwarden_raft::node::wire::{
    AdminError as RaftAdminError, AdminReply, AdminRequest, ClusterStatus, NodeReport,
};
use pgwarden_raft::RaftNode;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Raft membership administration, the one thing the service needs beyond the DCS, and
/// what the DCS operations ([`dcs_ops`]) read of the node; their defaults answer for a
/// service with no Raft node (the in-memory DCS of the service's tests).
pub trait RaftAdmin: Send + Sync + 'static {
    /// Runs a membership request on the Raft leader (forwarded by the node if needed).
    fn admin(&self, req: AdminRequest) -> impl Future<Output = Result<AdminReply, RaftAdminError>> + Send;

    /// The Raft id of this member (0: none).
    fn my_id(&self) -> u64 {
        0
    }

    /// The index this member has applied (0: unknown).
    fn applied(&self) -> u64 {
        0
    }

    /// The own state of the member at peer address `addr`.
    fn report_at(&self, addr: &str) -> impl Future<Output = Result<NodeReport, String>> + Send {
        let _ = addr;
        async { Err("this member has no Raft node".to_string()) }
    }

    /// One consistent state of the keys under `prefix` with the index it was read at,
    /// confirmed through the Raft leader; `None` when the node cannot give one.
    fn consistent_list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Option<Result<(u64, Vec<KeyValue>), DcsError>>> + Send {
        let _ = prefix;
        async { None }
    }
}

impl RaftAdmin for RaftNode {
    fn admin(&self, req: AdminRequest) -> impl Future<Output = Result<AdminReply, RaftAdminError>> + Send {
        RaftNode::admin(self, req)
    }

    fn my_id(&self) -> u64 {
        self.id()
    }

    fn applied(&self) -> u64 {
        *self.revision().borrow()
    }

    fn report_at(&self, addr: &str) -> impl Future<Output = Result<NodeReport, String>> + Send {
        RaftNode::report_at(self, addr, dcs_ops::REPORT_TIMEOUT)
    }

    async fn consistent_list(&self, prefix: &str) -> Option<Result<(u64, Vec<KeyValue>), DcsError>> {
        Some(RaftNode::consistent_list(self, prefix).await)
    }
}

/// The service state of one member.
pub struct Admin<D: Dcs, R: RaftAdmin> {
    api: ApiState<D>,
    raft: Arc<R>,
    forward: Forwarder,
    leases: LeaseClock,
}

impl<D: Dcs, R: RaftAdmin> Admin<D, R> {
    /// A service answering from the REST API's state `api` (which carries the DCS, the
    /// request channel to the HA loop and the published status).
    pub fn new(api: ApiState<D>, raft: Arc<R>, forward: Forwarder) -> Self {
        let leases = LeaseClock::start(api.dcs.clone(), &api.prefix);
        Admin {
            api,
            raft,
            forward,
            leases,
        }
    }

    fn me(&self) -> String {
        self.api.status.borrow().patroni.name.clone()
    }

    fn scope(&self) -> String {
        self.api.status.borrow().patroni.scope.clone()
    }

    async fn cluster_now(&self) -> (pb::Cluster, String) {
        let (snap, _) = Snapshot::read(self.api.dcs.as_ref(), &self.api.prefix).await;
        self.view(&snap)
    }

    fn view(&self, snap: &Snapshot) -> (pb::Cluster, String) {
        view(&self.api, snap)
    }

    /// Where an action on `member` runs: here, or at that member's REST API.
    async fn locate(&self, member: &str) -> Result<Option<String>, AdminError> {
        if member.is_empty() {
            return Err(AdminError::InvalidArgument("a member name is required".into()));
        }
        if member == self.me() {
            return Ok(None);
        }
        let snap = Snapshot::read_fresh(self.api.dcs.as_ref(), &self.api.prefix).await?;
        let api_url = snap
            .view
            .members
            .iter()
            .find(|(n, _)| n.as_str() == member)
            .map(|(_, m)| m.api_url.clone())
            .filter(|u| !u.is_empty());
        match api_url {
            Some(u) => Ok(Some(u)),
            None => Err(AdminError::UnknownMember {
                member: member.to_string(),
                scope: self.scope(),
            }),
        }
    }

    /// Runs a member action here (`local`) or forwards it as `method path body`.
    async fn member_action<F, Fut>(
        &self,
        member: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        local: F,
    ) -> Result<pb::ActionReply, AdminError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(u16, String), ApiError>>,
    {
        let (code, message) = match self.locate(member).await? {
            None => local().await?,
            Some(url) => {
                self.forward
                    .call(member, &url, method, path, body.as_ref())
                    .await?
            }
        };
        reply(code, message)
    }

    async fn config_value(&self) -> Result<(Value, u64), AdminError> {
        let snap = Snapshot::read_fresh(self.api.dcs.as_ref(), &self.api.prefix).await?;
        match (snap.config_raw, &snap.view.config) {
            (Some(raw), Some(c)) => Ok((raw, c.revision)),
            _ => Err(AdminError::FailedPrecondition(
                "the cluster has no dynamic configuration yet (it is written at bootstrap)".into(),
            )),
        }
    }

    /// Writes `new` as the configuration if it is still at `revision`.
    async fn write_config_cas(&self, new: &Value, revision: u64) -> Result<pb::DynamicConfig, AdminError> {
        let key = format!("{}config", self.api.prefix);
        let out = self
            .api
            .dcs
            .put(
                &key,
                &new.to_string(),
                None,
                Condition::ModRevisionEquals(revision),
            )
            .await
            .map_err(ApiError::Dcs)?;
        if !out.succeeded {
            return Err(AdminError::Conflict(format!(
                "the configuration changed after revision {revision}: re-read it and apply the change again"
            )));
        }
        self.api.wakeup();
        Ok(pb::DynamicConfig {
            json: new.to_string(),
            revision: out.revision,
        })
    }

    async fn toggle_pause(&self, pause: bool, wait_seconds: u32) -> Result<pb::ActionReply, AdminError> {
        let snap = Snapshot::read_fresh(self.api.dcs.as_ref(), &self.api.prefix).await?;
        if snap.view.paused() == pause {
            return Err(AdminError::FailedPrecondition(format!(
                "Cluster is {} paused",
                if pause { "already" } else { "not" }
            )));
        }
        let mut patch = Map::new();
        patch.insert("pause".into(), if pause { json!(true) } else { Value::Null });
        cluster::patch_config(self.api.dcs.as_ref(), &self.api.prefix, &patch).await?;
        self.api.wakeup();
        if wait_seconds > 0 {
            self.wait_pause_seen(pause, Duration::from_secs(u64::from(wait_seconds)))
                .await?;
        }
        Ok(pb::ActionReply {
            message: format!(
                "Success: cluster management is {}",
                if pause { "paused" } else { "resumed" }
            ),
            http_status: 200,
        })
    }

    /// Polls every member's GET /patroni (this member's own status directly) until each
    /// reports `pause == pause`, as patronictl's `pause --wait` does.
    async fn wait_pause_seen(&self, pause: bool, limit: Duration) -> Result<(), AdminError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let snap = Snapshot::read_local(self.api.dcs.as_ref(), &self.api.prefix);
            let mut behind = Vec::new();
            for (name, m) in &snap.view.members {
                let seen = if name.as_str() == self.me() {
                    self.api.status.borrow().pause
                } else if m.api_url.is_empty() {
                    continue;
                } else {
                    match self
                        .forward
                        .call(name.as_str(), &m.api_url, reqwest::Method::GET, "patroni", None)
                        .await
                    {
                        Ok((200, body)) => serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|v| v.get("pause").and_then(Value::as_bool))
                            .unwrap_or(false),
                        _ => !pause,
                    }
                };
                if seen != pause {
                    behind.push(name.to_string());
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Rest {
                    code: 503,
                    message: format!(
                        "{} requested, but after {}s these members do not report it yet: {}",
                        if pause { "pause" } else { "resume" },
                        limit.as_secs(),
                        behind.join(", ")
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A membership request, retried while no Raft leader is known: right after a
    /// membership change or a leader's removal an election is under way for a second or
    /// two, and the caller should not have to retry by hand.
    async fn raft_admin(&self, req: AdminRequest) -> Result<AdminReply, AdminError> {
        let deadline = tokio::time::Instant::now() + RAFT_LEADER_WAIT;
        loop {
            match self.raft.admin(req.clone()).await {
                Err(RaftAdminError::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                r => return Ok(r?),
            }
        }
    }

    async fn raft_status(&self) -> Result<ClusterStatus, AdminError> {
        match self.raft_admin(AdminRequest::Status).await? {
            AdminReply::Status(s) => Ok(s),
            other => Err(AdminError::Raft(RaftAdminError::Raft(format!(
                "unexpected reply to a status request: {other:?}"
            )))),
        }
    }

    async fn add_raft_member(&self, addr: String, replace: bool) -> Result<pb::RaftMember, AdminError> {
        if addr.trim().is_empty() {
            return Err(AdminError::InvalidArgument(
                "the new member's Raft address (host:port) is required".into(),
            ));
        }
        match self.raft_admin(AdminRequest::AddMember { addr, replace }).await? {
            AdminReply::Added(m) => Ok(pb::RaftMember {
                id: m.id,
                name: m.name,
                addr: m.addr,
                voter: m.voter,
                leader: false,
                matched: m.matched,
                site: m.site.unwrap_or_default(),
                why: m.why,
            }),
            other => Err(AdminError::Raft(RaftAdminError::Raft(format!(
                "unexpected reply to an add request: {other:?}"
            )))),
        }
    }
}

/// How long a membership request waits for a Raft leader to be elected.
const RAFT_LEADER_WAIT: Duration = Duration::from_secs(10);

/// How long `GetMemberStatus` waits for each other member's REST API.
const MEMBER_STATUS_WAIT: Duration = Duration::from_secs(5);

/// A REST answer as an admin reply: 2xx is success, anything else an error with its text.
fn reply(code: u16, message: String) -> Result<pb::ActionReply, AdminError> {
    if (200..300).contains(&code) {
        Ok(pb::ActionReply {
            message,
            http_status: u32::from(code),
        })
    } else {
        Err(AdminError::Rest { code, message })
    }
}

fn parse_object(what: &str, text: &str) -> Result<Map<String, Value>, AdminError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AdminError::InvalidArgument(format!(
            "{what} must be a JSON object"
        ))),
        Err(e) => Err(AdminError::InvalidArgument(format!(
            "{what} is not valid JSON: {e}"
        ))),
    }
}

fn nonempty(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| json!(s))
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<D: Dcs, R: RaftAdmin> AdminService for Admin<D, R> {
    async fn get_cluster(&self, _: Request<pb::GetClusterRequest>) -> Res<pb::Cluster> {
        Ok(Response::new(self.cluster_now().await.0))
    }

    async fn get_history(&self, _: Request<pb::GetHistoryRequest>) -> Res<pb::History> {
        let (snap, _) = Snapshot::read(self.api.dcs.as_ref(), &self.api.prefix).await;
        Ok(Response::new(convert::history(&cluster::history_json(&snap))))
    }

    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Res<pb::DynamicConfig> {
        let (value, revision) = self.config_value().await?;
        Ok(Response::new(pb::DynamicConfig {
            json: value.to_string(),
            revision,
        }))
    }

    async fn patch_config(&self, req: Request<pb::PatchConfigRequest>) -> Res<pb::DynamicConfig> {
        let req = req.into_inner();
        let patch = parse_object("patch_json", &req.patch_json)?;
        match req.expected_revision {
            None => {
                let new = cluster::patch_config(self.api.dcs.as_ref(), &self.api.prefix, &patch)
                    .await
                    .map_err(AdminError::from)?;
                self.api.wakeup();
                let (_, revision) = self.config_value().await?;
                Ok(Response::new(pb::DynamicConfig {
                    json: new.to_string(),
                    revision,
                }))
            }
            Some(expected) => {
                let (old, revision) = self.config_value().await?;
                if revision != expected {
                    return Err(AdminError::Conflict(format!(
                        "the configuration changed after revision {expected} (now {revision}): re-read it and \
                         apply the change again"
                    ))
                    .into());
                }
                let new = merge_patch(&old, &Value::Object(patch));
                Ok(Response::new(self.write_config_cas(&new, expected).await?))
            }
        }
    }

    async fn replace_config(&self, req: Request<pb::ReplaceConfigRequest>) -> Res<pb::DynamicConfig> {
        let req = req.into_inner();
        let new = parse_object("config_json", &req.config_json)?;
        match req.expected_revision {
            None => {
                let new = cluster::put_config(self.api.dcs.as_ref(), &self.api.prefix, &new)
                    .await
                    .map_err(AdminError::from)?;
                self.api.wakeup();
                let (_, revision) = self.config_value().await?;
                Ok(Response::new(pb::DynamicConfig {
                    json: new.to_string(),
                    revision,
                }))
            }
            Some(expected) => Ok(Response::new(
                self.write_config_cas(&Value::Object(new), expected).await?,
            )),
        }
    }

    async fn switchover(&self, req: Request<pb::SwitchoverRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let mut body = Map::new();
        for (k, v) in [
            ("leader", &r.leader),
            ("candidate", &r.candidate),
            ("scheduled_at", &r.scheduled_at),
        ] {
            if let Some(v) = nonempty(v) {
                body.insert(k.into(), v);
            }
        }
        let (code, msg) = manual::post_manual(&self.api, body, Action::Switchover)
            .await
            .map_err(AdminError::from)?;
        Ok(Response::new(reply(code, msg)?))
    }

    async fn failover(&self, req: Request<pb::FailoverRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let mut body = Map::new();
        if let Some(c) = nonempty(&r.candidate) {
            body.insert("candidate".into(), c);
        }
        let (code, msg) = manual::post_manual(&self.api, body, Action::Failover)
            .await
            .map_err(AdminError::from)?;
        Ok(Response::new(reply(code, msg)?))
    }

    async fn cancel_switchover(&self, _: Request<pb::CancelSwitchoverRequest>) -> Res<pb::ActionReply> {
        let msg = cluster::delete_switchover(self.api.dcs.as_ref(), &self.api.prefix)
            .await
            .map_err(AdminError::from)?;
        self.api.wakeup();
        Ok(Response::new(reply(200, msg.to_string())?))
    }

    async fn restart(&self, req: Request<pb::RestartRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let mut body = Map::new();
        if r.pending {
            body.insert("restart_pending".into(), json!(true));
        }
        if let Some(v) = nonempty(&r.role) {
            body.insert("role".into(), v);
        }
        if let Some(v) = nonempty(&r.postgres_version) {
            body.insert("postgres_version".into(), v);
        }
        if r.timeout_seconds > 0 {
            body.insert("timeout".into(), json!(r.timeout_seconds));
        }
        if let Some(v) = nonempty(&r.scheduled_at) {
            body.insert("schedule".into(), v);
        }
        let local_body = body.clone();
        let out = self
            .member_action(
                &r.member,
                reqwest::Method::POST,
                "restart",
                Some(Value::Object(body)),
                || actions::post_restart(&self.api, local_body),
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn cancel_restart(&self, req: Request<pb::CancelRestartRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let out = self
            .member_action(&r.member, reqwest::Method::DELETE, "restart", None, || async {
                actions::delete_restart(&self.api).await.map(|m| (200, m))
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn reload(&self, req: Request<pb::ReloadRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let out = self
            .member_action(&r.member, reqwest::Method::POST, "reload", None, || async {
                actions::post_reload(&self.api).await.map(|m| (202, m))
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn reinitialize(&self, req: Request<pb::ReinitializeRequest>) -> Res<pb::ActionReply> {
        let r = req.into_inner();
        let mut body = Map::new();
        body.insert("force".into(), json!(r.force));
        body.insert("from-leader".into(), json!(r.from_leader));
        let local_body = body.clone();
        let out = self
            .member_action(
                &r.member,
                reqwest::Method::POST,
                "reinitialize",
                Some(Value::Object(body)),
                || async {
                    actions::post_reinitialize(&self.api, local_body)
                        .await
                        .map(|m| (200, m))
                },
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn pause(&self, req: Request<pb::PauseRequest>) -> Res<pb::ActionReply> {
        let wait = req.into_inner().wait_seconds;
        Ok(Response::new(self.toggle_pause(true, wait).await?))
    }

    async fn resume(&self, req: Request<pb::ResumeRequest>) -> Res<pb::ActionReply> {
        let wait = req.into_inner().wait_seconds;
        Ok(Response::new(self.toggle_pause(false, wait).await?))
    }

    async fn remove_member(&self, req: Request<pb::RemoveMemberRequest>) -> Res<pb::ActionReply> {
        let member = req.into_inner().member;
        if member.is_empty() {
            return Err(AdminError::InvalidArgument("a member name is required".into()).into());
        }
        let snap = Snapshot::read_fresh(self.api.dcs.as_ref(), &self.api.prefix)
            .await
            .map_err(AdminError::from)?;
        if snap.view.leader_name().map(|l| l.as_str()) == Some(member.as_str()) {
            return Err(AdminError::FailedPrecondition(format!(
                "{member} is the leader of cluster {}: switch over to another member first",
                self.scope()
            ))
            .into());
        }
        let mut done = Vec::new();
        let status = self.raft_status().await?;
        if status.members.iter().any(|m| m.name == member) {
            self.raft_admin(AdminRequest::RemoveMember {
                member: member.clone(),
            })
            .await?;
            done.push("removed from the Raft membership");
        }
        if snap.view.members.keys().any(|n| n.as_str() == member) {
            let key = format!("{}members/{member}", self.api.prefix);
            self.api
                .dcs
                .delete(&key, Condition::Always)
                .await
                .map_err(|e| AdminError::Api(ApiError::Dcs(e)))?;
            done.push("member key deleted");
        }
        if done.is_empty() {
            return Err(AdminError::UnknownMember {
                member,
                scope: self.scope(),
            }
            .into());
        }
        Ok(Response::new(pb::ActionReply {
            message: format!("Success: {member} {}", done.join(", ")),
            http_status: 200,
        }))
    }

    async fn remove_cluster(&self, req: Request<pb::RemoveClusterRequest>) -> Res<pb::ActionReply> {
        let scope = req.into_inner().scope;
        if scope != self.scope() {
            return Err(AdminError::InvalidArgument(format!(
                "Cluster names specified do not match: this member belongs to {}, not {scope:?}",
                self.scope()
            ))
            .into());
        }
        self.api
            .dcs
            .delete_prefix(&self.api.prefix)
            .await
            .map_err(|e| AdminError::Api(ApiError::Dcs(e)))?;
        tracing::warn!(scope = %scope, "admin API: every key of the cluster was removed from the DCS");
        Ok(Response::new(pb::ActionReply {
            message: format!("Success: cluster {scope} removed from the DCS"),
            http_status: 200,
        }))
    }

    async fn list_raft_members(&self, _: Request<pb::ListRaftMembersRequest>) -> Res<pb::RaftMembers> {
        let s = self.raft_status().await?;
        let leader = s.leader.unwrap_or(0);
        Ok(Response::new(pb::RaftMembers {
            answered_by: s.me,
            leader_id: leader,
            term: s.term,
            last_log_index: s.last_log_index,
            applied: s.applied,
            members: s
                .members
                .into_iter()
                .map(|m| pb::RaftMember {
                    leader: m.id == leader,
                    id: m.id,
                    name: m.name,
                    addr: m.addr,
                    voter: m.voter,
                    matched: m.matched,
                    site: m.site.unwrap_or_default(),
                    why: m.why,
                })
                .collect(),
        }))
    }

    async fn add_raft_member(&self, req: Request<pb::AddRaftMemberRequest>) -> Res<pb::RaftMember> {
        Ok(Response::new(
            self.add_raft_member(req.into_inner().addr, false).await?,
        ))
    }

    async fn remove_raft_member(&self, req: Request<pb::RemoveRaftMemberRequest>) -> Res<pb::ActionReply> {
        let member = req.into_inner().member;
        if member.is_empty() {
            return Err(AdminError::InvalidArgument("a member name or id is required".into()).into());
        }
        match self
            .raft_admin(AdminRequest::RemoveMember {
                member: member.clone(),
            })
            .await?
        {
            AdminReply::Removed(id) => Ok(Response::new(pb::ActionReply {
                message: format!("Success: removed Raft member {member} (id {id})"),
                http_status: 200,
            })),
            other => Err(AdminError::Raft(RaftAdminError::Raft(format!(
                "unexpected reply to a remove request: {other:?}"
            )))
            .into()),
        }
    }

    async fn replace_raft_member(&self, req: Request<pb::ReplaceRaftMemberRequest>) -> Res<pb::RaftMember> {
        Ok(Response::new(
            self.add_raft_member(req.into_inner().addr, true).await?,
        ))
    }

    async fn dcs_get(&self, req: Request<pb::DcsGetRequest>) -> Res<pb::DcsKeys> {
        let r = dcs_ops::get(&self.api, self.raft.as_ref(), &self.leases, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn dcs_status(&self, _: Request<pb::DcsStatusRequest>) -> Res<pb::DcsStatus> {
        Ok(Response::new(dcs_ops::status(self.raft.as_ref()).await?))
    }

    async fn dcs_put(&self, req: Request<pb::DcsPutRequest>) -> Res<pb::ActionReply> {
        Ok(Response::new(dcs_ops::put(&self.api, req.into_inner()).await?))
    }

    async fn dcs_delete(&self, req: Request<pb::DcsDeleteRequest>) -> Res<pb::ActionReply> {
        Ok(Response::new(dcs_ops::delete(&self.api, req.into_inner()).await?))
    }

    async fn dcs_snapshot(&self, _: Request<pb::DcsSnapshotRequest>) -> Res<pb::DcsSnapshot> {
        let r = dcs_ops::snapshot(&self.api, self.raft.as_ref(), self.scope()).await?;
        Ok(Response::new(r))
    }

    async fn get_member_status(&self, req: Request<pb::GetMemberStatusRequest>) -> Res<pb::MemberStatuses> {
        let wanted = req.into_inner().members;
        let snap = Snapshot::read_local(self.api.dcs.as_ref(), &self.api.prefix);
        let me = self.me();
        let mut out = Vec::new();
        for (name, m) in &snap.view.members {
            let name = name.to_string();
            if !wanted.is_empty() && !wanted.contains(&name) {
                continue;
            }
            let (status_json, error) = if name == me {
                let doc = crate::api::rest::status_json(&self.api.status.borrow(), &snap);
                (doc.to_string(), String::new())
            } else if m.api_url.is_empty() {
                (String::new(), "the member publishes no REST API address".into())
            } else {
                // A member that does not answer within a few seconds is reported, not
                // waited for: the others' versions are still worth printing.
                match self
                    .forward
                    .call_within(
                        &name,
                        &m.api_url,
                        reqwest::Method::GET,
                        "patroni",
                        None,
                        MEMBER_STATUS_WAIT,
                    )
                    .await
                {
                    Ok((200, body)) => (body, String::new()),
                    Ok((code, body)) => (String::new(), format!("status code={code}, ({body})")),
                    Err(e) => (String::new(), crate::ctl::chain(&e)),
                }
            };
            out.push(pb::MemberStatus {
                name,
                status_json,
                error,
            });
        }
        for w in &wanted {
            if !out.iter().any(|s| &s.name == w) {
                return Err(AdminError::UnknownMember {
                    member: w.clone(),
                    scope: self.scope(),
                }
                .into());
            }
        }
        Ok(Response::new(pb::MemberStatuses { members: out }))
    }

    type WatchStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ClusterEvent, Status>> + Send>>;

    async fn watch(&self, _: Request<pb::WatchRequest>) -> Res<Self::WatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut sub = self.api.dcs.watch(&self.api.prefix);
        let (mut cluster, mut config) = self.cluster_now().await;
        let first = event(Kind::Snapshot, &cluster, None);
        let api = self.api.clone();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    ev = sub.next() => if ev.is_none() { return },
                }
                // Changes come in bursts (a member key per member per loop); look once
                // the burst has been applied rather than once per key.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let snap = Snapshot::read_local(api.dcs.as_ref(), &api.prefix);
                let (new, new_config) = view(&api, &snap);
                for c in watch::diff(&cluster, &config, &new, &new_config) {
                    if tx.send(Ok(event(c.kind, &new, Some(c)))).await.is_err() {
                        return;
                    }
                }
                cluster = new;
                config = new_config;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The cluster view the admin API shows, and the dynamic configuration's text.
fn view<D: Dcs>(api: &ApiState<D>, snap: &Snapshot) -> (pb::Cluster, String) {
    let who = api.status.borrow().patroni.clone();
    let doc = cluster::cluster_json(snap, &who.scope);
    let config = snap.config().map(Value::to_string).unwrap_or_default();
    let mut c = convert::cluster(&doc, snap.view.initialize.as_deref(), &who.name);
    for m in &mut c.members {
        m.paused = snap
            .raw_members
            .get(&m.name)
            .and_then(|r| r.get("pause"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    (c, config)
}

fn event(kind: Kind, cluster: &pb::Cluster, c: Option<watch::Change>) -> pb::ClusterEvent {
    let c = c.unwrap_or(watch::Change {
        kind,
        member: String::new(),
        old_value: String::new(),
        new_value: String::new(),
    });
    pb::ClusterEvent {
        kind: kind as i32,
        member: c.member,
        old_value: c.old_value,
        new_value: c.new_value,
        observed_at: chrono::Utc::now().to_rfc3339(),
        cluster: Some(cluster.clone()),
    }
}
