"""Credentials in store URLs never reach a message, a log line or a banner (issue 12,
item 10): every form libpq and MongoDB accept."""

from __future__ import annotations

import pytest

from hyperdock.redact import redact_url, scrub

SECRET = "Zq7-secret-VALUE"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{SECRET}@db:5432/hd", "postgresql://u:***@db:5432/hd"),
        # unencoded @, / and ? in the password: the userinfo ends at the last @
        (f"postgresql://u:p@ss{SECRET}@db/hd", "postgresql://u:***@db/hd"),
        (f"postgresql://u:a/b{SECRET}@db/hd", "postgresql://u:***@db/hd"),
        (f"postgresql://u:a?b{SECRET}@db/hd", "postgresql://u:***@db/hd"),
        (f"postgresql://u:a#b{SECRET}@db/hd", "postgresql://u:***@db/hd"),
        (
            f"postgresql://u@db/hd?password={SECRET}&sslmode=require",
            "postgresql://u@db/hd?password=***&sslmode=require",
        ),
        (
            f"postgresql:///hd?host=/run&sslpassword={SECRET}",
            "postgresql:///hd?host=/run&sslpassword=***",
        ),
        (
            f"mongodb://u:{SECRET}@a:27017,b:27017/hd?authSource=admin&replicaSet=rs",
            "mongodb://u:***@a:27017,b:27017/hd?authSource=admin&replicaSet=rs",
        ),
        (
            f"mongodb://a/hd?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
            "mongodb://a/hd?authMechanism=MONGODB-AWS&authMechanismProperties=***",
        ),
        (
            f"mongodb://a/hd?tls=true&tlsCertificateKeyFilePassword={SECRET}",
            "mongodb://a/hd?tls=true&tlsCertificateKeyFilePassword=***",
        ),
        (f"host=db user=u password={SECRET} dbname=hd", "host=db user=u password=*** dbname=hd"),
        (f"host=db password='{SECRET} x' dbname=hd", "host=db password=*** dbname=hd"),
        ("sqlite:///./hyperdock.db", "sqlite:///./hyperdock.db"),
        ("postgresql://u@db/hd?application_name=a@b", "postgresql://u@db/hd?application_name=a@b"),
    ],
)
def test_every_credential_form_is_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


def test_a_driver_message_loses_every_form_of_the_secret() -> None:
    url = f"postgresql://u:{SECRET}%21@db/hd?sslpassword=other-{SECRET}"
    message = f"could not parse {url}: near '{SECRET}!' and 'other-{SECRET}'"
    assert SECRET not in scrub(message, url)
    # a password equal to the user name is left alone: masking it would mask the name
    assert scrub("role postgres failed", "postgresql://postgres:postgres@db/x") == (
        "role postgres failed"
    )
