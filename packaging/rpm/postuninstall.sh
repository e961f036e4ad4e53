# pgwarden %postun. Never removes /var/lib/pgwarden or any PostgreSQL data, and does not stop a
# running pgwarden.service. $1 is 0 on erase, 1 or more on upgrade.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
