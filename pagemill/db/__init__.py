"""PostgreSQL: connections, the embedded server, migrations, status bookkeeping and the Write stage's COPY."""
