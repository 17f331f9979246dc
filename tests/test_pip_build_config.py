"""scripts/pip_build_config.py: the host's pip configuration, as one pip.conf and the mounts it needs."""

from __future__ import annotations

from pathlib import Path

from scripts.pip_build_config import CONTAINER_CONF, parse, paths, render, volumes

# What `pip config list` prints: files' sections, and PIP_* variables as `:env:`.
LISTING = """\
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.index-url='https://mirror.example/simple'
global.timeout='60'
install.user='true'
install.timeout='30'
:env:.timeout='180'
:env:.config-file='/elsewhere/pip.conf'
not a configuration line
"""


def test_variables_win_over_files_in_every_section() -> None:
    sections = parse(LISTING)
    assert sections["global"]["timeout"] == "180"
    assert sections["install"]["timeout"] == "180"
    assert sections["global"]["index-url"] == "https://mirror.example/simple"


def test_keys_that_say_where_pip_installs_or_reads_config_are_left_out() -> None:
    sections = parse(LISTING)
    assert "user" not in sections["install"]
    assert all("config-file" not in values for values in sections.values())


def test_no_configuration_gives_nothing() -> None:
    assert parse("") == {}


def test_render_writes_sections_and_indents_continued_values() -> None:
    text = render({"global": {"extra-index-url": "a\nb", "timeout": "5"}, "install": {"no-compile": "1"}})
    assert text == "[global]\nextra-index-url = a\n    b\ntimeout = 5\n[install]\nno-compile = 1\n"


def test_paths_mount_existing_files_and_file_index_roots(tmp_path: Path) -> None:
    repository = tmp_path / "pypi"
    (repository / "simple").mkdir(parents=True)
    wheels = tmp_path / "wheels"
    (wheels / "inner").mkdir(parents=True)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2\n")
    sections = {
        "global": {
            # A simple index's pages link to ../../files/...: its parent folder is mounted.
            "extra-index-url": f"file://{repository}/simple https://pypi.org/simple",
            "find-links": f"{wheels} {wheels / 'inner'}",
            "constraint": str(constraints),
            "cert": str(tmp_path / "missing.pem"),
            "timeout": "60",
        }
    }
    assert paths(sections) == sorted([constraints, repository, wheels])


def test_volumes_mount_the_conf_as_the_global_one_and_paths_read_only(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    assert volumes(conf, [Path("/opt/wheels")]) == [
        f"--volume={conf}:{CONTAINER_CONF}:ro",
        "--volume=/opt/wheels:/opt/wheels:ro",
    ]
