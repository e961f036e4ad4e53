# pgwarden %post. Never enables, starts, stops or restarts pgwarden.service and never touches a
# PostgreSQL cluster (docs/install.md). $1 is 1 on install, 2 or more on upgrade.
# Raft data and the pgpass file: created only when missing, never removed by the package.
if [ ! -d /var/lib/pgwarden ]; then
    install -d -m 0750 -o postgres -g postgres /var/lib/pgwarden
fi
# Let a running systemd see the new or changed unit file; a running pgwarden keeps running
# the old binary until the administrator restarts it (rolling upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
# On an upgrade of a node whose daemon runs: nothing restarts it, so say it once, with the
# order the restarts take (a primary's restart is a hand-over).
if [ "$1" -ge 2 ] 2>/dev/null && [ -d /run/systemd/system ] &&
    systemctl is-active --quiet pgwarden.service 2>/dev/null; then
    echo "pgwarden: upgraded; the running pgwarden.service keeps the old version until it is restarted: replicas first, the primary after a switchover (Rolling upgrade in /usr/share/doc/pgwarden/install.md)." >&2
fi
exit 0
