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
exit 0
