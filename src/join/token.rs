//! Join tokens: the string an operator copies from the first host to a new one, and the
//! store of the secrets the first host issued.
//!
//! A token carries the join server's address, the SHA-256 of the cluster CA's certificate
//! (the joiner trusts only a server whose chain ends in that CA) and a random secret.
//!
//! Where the secrets live: in files under the first host's state directory
//! (`<state>/join/tokens/`, 0600, directory 0700), not in the DCS. The exchange needs the
//! CA's key, which exists only on the first host, so only that host can serve a join; a
//! secret in the DCS would be replicated to every member for no gain. A file holds only
//! the SHA-256 of its secret (the name) and its expiry, so reading the directory gives no
//! usable token. Consuming is a rename from `tokens/` to `used/`: of two joins presenting
//! the same secret at once, exactly one rename succeeds (the compare-and-delete), and the
//! record in `used/` lets a second attempt be told that the token was used rather than
//! that it is unknown.

use super::files;
use super::pki::sha256_hex;
use super::JoinError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "pgwj1.";

/// A parsed join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The join server, `host:port`.
    pub addr: String,
    /// SHA-256 (hex) of the CA certificate's DER.
    pub ca_pin: String,
    /// The one-time secret (base64url).
    pub secret: String,
}

impl Token {
    /// The copy-pasteable form: one word, no shell metacharacters.
    pub fn encode(&self) -> String {
        let body = format!("{}|{}|{}", self.addr, self.ca_pin, self.secret);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
    }

    /// Parses [`Token::encode`]'s form.
    pub fn decode(s: &str) -> Result<Token, JoinError> {
        let bad = |why: &str| JoinError::MalformedToken(why.to_string());
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with `pgwj1.`"))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not valid base64url"))?;
        let body = String::from_utf8(body).map_err(|_| bad("it is not text"))?;
        let mut parts = body.split('|');
        let (Some(addr), Some(pin), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it does not have three parts"));
        };
        if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the CA pin is not a SHA-256"));
        }
        if addr.rsplit_once(':').is_none() || secret.is_empty() {
            return Err(bad("the address or the secret is missing"));
        }
        Ok(Token {
            addr: addr.to_string(),
            ca_pin: pin.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }
}

/// A new secret: 32 bytes from the operating system's CSPRNG.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Why a secret was not accepted. The texts go back to the joiner.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown join token: this cluster never issued it (check that it was copied whole, or create one with `pgwarden token create` on the first host)")]
    Unknown,
    #[error("the join token expired {0} s ago (tokens are valid for a limited time; create a new one with `pgwarden token create` on the first host)")]
    Expired(u64),
    #[error("the join token was already used (a token is valid once; create a new one with `pgwarden token create` on the first host)")]
    Used,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The secrets one first host issued, under `<state>/join`.
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store in the join directory `dir`.
    pub fn new(dir: &Path) -> TokenStore {
        TokenStore {
            dir: dir.to_path_buf(),
        }
    }

    fn name(secret: &str) -> String {
        sha256_hex(secret.as_bytes())
    }

    /// Records a new secret valid for `ttl`, owned by `owner` (the daemon's user, which
    /// consumes it); returns the secret.
    pub fn issue(&self, ttl: Duration, owner: Option<files::Owner>) -> Result<String, JoinError> {
        let secret = new_secret();
        let tokens = self.dir.join("tokens");
        files::create_private_dir(&tokens, owner)?;
        let expiry = now_secs() + ttl.as_secs();
        let path = tokens.join(Self::name(&secret));
        files::write_now(&path, format!("{expiry}\n").as_bytes(), 0o600, owner)?;
        Ok(secret)
    }

    /// Consumes `secret` if it was issued, has not expired and was not used.
    pub fn consume(&self, secret: &str) -> Result<Result<(), Refusal>, JoinError> {
        let name = Self::name(secret);
        let issued = self.dir.join("tokens").join(&name);
        let used_dir = self.dir.join("used");
        let used = used_dir.join(&name);
        let expiry = match std::fs::read_to_string(&issued) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err(if used.exists() {
                    Refusal::Used
                } else {
                    Refusal::Unknown
                }));
            }
            Err(e) => return Err(JoinError::io(&issued)(e)),
        };
        let now = now_secs();
        if now >= expiry {
            return Ok(Err(Refusal::Expired(now - expiry)));
        }
        files::create_private_dir(&used_dir, None)?;
        match std::fs::rename(&issued, &used) {
            Ok(()) => Ok(Ok(())),
            // Another join consumed it between the read and the rename.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Err(Refusal::Used)),
            Err(e) => Err(JoinError::io(&issued)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_named() {
        let t = Token {
            addr: "10.0.0.1:5011".into(),
            ca_pin: "ab".repeat(32),
            secret: new_secret(),
        };
        assert_eq!(Token::decode(&t.encode()).unwrap(), t);
        assert!(Token::decode("hello").unwrap_err().to_string().contains("pgwj1."));
        assert!(Token::decode("pgwj1.!!").is_err());
    }

    /// A secret is accepted once; then it is "used"; an unknown one is "unknown"; an
    /// expired one is "expired" and stays unconsumed.
    #[test]
    fn secrets_are_valid_once_and_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let s = store.issue(Duration::from_secs(60), None).unwrap();
        assert_eq!(store.consume(&s).unwrap(), Ok(()));
        assert_eq!(store.consume(&s).unwrap(), Err(Refusal::Used));
        assert_eq!(store.consume("nope").unwrap(), Err(Refusal::Unknown));
        let e = store.issue(Duration::ZERO, None).unwrap();
        assert!(matches!(store.consume(&e).unwrap(), Err(Refusal::Expired(_))));
    }
}
