//! The join exchange on the wire: one JSON line each way over TLS. The joiner sends a
//! [`JoinRequest`]; the first host answers a [`JoinReply`].

use serde::{Deserialize, Serialize};

/// What a joining member sends.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The token's secret.
    pub secret: String,
    /// The member's name (unique in the cluster).
    pub name: String,
    /// The address the other members reach it at (an IP address or a host name).
    pub address: String,
    /// Its Raft port (its Raft address is `address:raft_port`).
    pub raft_port: u16,
    /// Whether it joins as a witness (a Raft voter without PostgreSQL).
    pub witness: bool,
    /// Its P-256 public key, the raw uncompressed point in base64: the CA signs a
    /// certificate for it; the private key never leaves the joiner.
    pub public_key: String,
}

/// The database and REST API credentials every member shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub superuser: String,
    pub replication: String,
    pub rewind: String,
    pub restapi: String,
}

/// The settings a joiner's configuration file needs from the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    /// Its certificate (PEM), signed by the CA.
    pub certificate: String,
    /// The CA's certificate (PEM).
    pub ca: String,
    pub scope: String,
    pub namespace: String,
    /// The other members' Raft addresses.
    pub partners: Vec<String>,
    pub credentials: Credentials,
}

/// The first host's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum JoinReply {
    Granted(Box<Grant>),
    /// Refused, with the reason for the operator.
    Refused(String),
}
