"""Credentials in store URLs never reach a message, a log line or a banner (issue 12,
item 10): every form libpq and MongoDB accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clihelp import PY, hd

from hyperdock.redact import redact_url, scrub
from hyperdock.storage import open_store
from hyperdock.trial import TrialState

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
        (  # MongoDB also separates options with ";"
            f"mongodb://a/hd?authSource=admin;tlsCertificateKeyFilePassword={SECRET}",
            "mongodb://a/hd?authSource=admin;tlsCertificateKeyFilePassword=***",
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


def test_a_libpq_keyword_string_is_a_postgresql_store_and_its_password_is_never_shown(
    tmp_path: Path, postgres_url: Any, postgres_admin_url: str
) -> None:
    """It was taken for an SQLite file name: a file named after it, password included,
    and the password in the banner and the worker log."""
    import uuid

    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(postgres_url())
    role, password = f"hd_kw_{uuid.uuid4().hex[:8]}", f"{SECRET}-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'ALTER DATABASE "{info["dbname"]}" OWNER TO {role}')
    info.update(user=role, password=password)
    keywords = " ".join(f"{k}={v}" for k, v in info.items())
    (tmp_path / "space.json").write_text(json.dumps({"x": [1, 2]}))
    (tmp_path / "t.py").write_text(
        "import os\nopen(os.environ['HYPERDOCK_LOSS'], 'w').write('1.0')\n"
    )
    try:
        out = hd(
            "run", "space.json", "--command", f"{PY} t.py", "--store", keywords, "--name", "kw",
            "--loglevel", "info", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert SECRET not in out.stdout + out.stderr
        assert f"user={role} password=***" in out.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "space.json", "t.py"]
        with open_store(keywords) as st:
            assert st.count_trials(st.get_experiment("kw").id)[TrialState.COMPLETED] == 2
    finally:
        in_db = psycopg.conninfo.make_conninfo(postgres_admin_url, dbname=info["dbname"])
        with psycopg.connect(in_db, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
