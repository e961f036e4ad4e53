# pgwarden %pre. The PostgreSQL server package normally creates the postgres user; create it
# only when missing, with the attributes RHEL's and PGDG's packages use.
if ! getent group postgres >/dev/null; then
    groupadd -r postgres
fi
if ! getent passwd postgres >/dev/null; then
    useradd -r -g postgres -d /var/lib/pgsql -s /bin/bash -c "PostgreSQL Server" postgres
fi
exit 0
