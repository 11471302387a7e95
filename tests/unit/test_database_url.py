"""The connection URL a function builds from the RDS secret: the proxy's endpoint over the
instance host the secret names, credentials quoted, TLS required."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from pagemill.db.connect import url_from_secret
from pagemill.errors import InternalError

# The shape RDS gives a generated secret once it is attached to an instance.
SECRET = {
    "engine": "postgres", "host": "pagemill-instance.abc.eu-west-1.rds.amazonaws.com", "port": 5432,
    "dbname": "pagemill", "username": "pagemill", "password": "p@ss:w/rd%=",
}


def test_the_proxy_host_replaces_the_instance_and_everything_else_comes_from_the_secret() -> None:
    url = url_from_secret(SECRET, host="pagemill-proxy.proxy-abc.eu-west-1.rds.amazonaws.com")
    assert conninfo_to_dict(url) == {
        "host": "pagemill-proxy.proxy-abc.eu-west-1.rds.amazonaws.com", "port": "5432", "dbname": "pagemill",
        "user": "pagemill", "password": "p@ss:w/rd%=", "sslmode": "require",
    }


def test_without_a_host_override_the_secret_host_is_used_and_defaults_fill_in() -> None:
    url = url_from_secret({"host": "db.example.com", "username": "u", "password": "p"})
    assert conninfo_to_dict(url) == {
        "host": "db.example.com", "port": "5432", "dbname": "postgres", "user": "u", "password": "p",
        "sslmode": "require",
    }


@pytest.mark.parametrize(("secret", "missing"), [
    ({"host": "h", "password": "p"}, "username"),
    ({"username": "u", "password": "p"}, "host"),
    ({"host": "h", "username": "u", "password": ""}, "password"),
])
def test_a_secret_without_what_a_connection_needs_is_a_clear_error(secret: dict[str, str], missing: str) -> None:
    with pytest.raises(InternalError, match=f"the database secret has no {missing}"):
        url_from_secret(secret)
