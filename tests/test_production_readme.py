"""The README's production set-up, run as written against a fresh PostgreSQL database.

The first step of "Production deployment" is a shell block an operator copies. This test takes that
block from README.md, changes nothing but the database address (to a throw-away database), runs
it with bash in the project's virtual environment, answers the password prompt, and checks the
service is then set up: so the README cannot drift from what the commands really do.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, TEST_PASSWORD

ROOT = Path(__file__).resolve().parent.parent
README_URL = "postgresql://dps:secret@db.internal:5432/dps"

pytestmark = pytest.mark.postgres_only


def _production_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Production deployment", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no shell block in the README's production section"
    return re.sub(r"^ {3}", "", block.group(1), flags=re.M)  # the block sits inside a numbered list


@pytest.fixture
def empty_database(database_template):
    if database_template["kind"] != "postgresql":
        pytest.skip("needs PostgreSQL (DPS_TEST_DATABASE_URL)")
    url = make_url(PG_URL)
    name = f"{url.database}_readme"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(script: str, database_url: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DPS_CLOCK"] = ""  # production runs on real time
    # No terminal: the password prompt reads the answers from standard input, as under a script.
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace(README_URL, database_url)],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                          start_new_session=True)


def test_the_production_set_up_runs_as_the_readme_writes_it(empty_database):
    block = _production_block()
    assert README_URL in block and "flask --app dps setup" in block and "demo load" not in block
    done = _run(block, empty_database, stdin=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Set up Oldham Council as the accountable body" in done.stdout
    assert "/team/agreements" in done.stdout  # it says what to do next

    exports = "\n".join(line for line in block.splitlines() if line.startswith("export "))
    listed = _run(exports + "\nflask --app dps users list", empty_database)
    assert listed.returncode == 0, listed.stderr
    assert "you@oldham.gov.uk\tdps_admin\tactive\tOldham Council" in listed.stdout
    again = _run(block, empty_database, stdin=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n")
    assert again.returncode != 0 and "already set up" in again.stdout + again.stderr
