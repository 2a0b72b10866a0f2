"""The docs site builds with ``mkdocs build --strict``: a broken link or anchor, a page left
out of the nav, or a docstring mkdocstrings cannot parse fails the build, and so this test.
The build must need no network: Material's web fonts are off (``theme.font: false``) and
the pages may load nothing from another host."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build(config, site_dir):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", config,
         "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_site_builds_strict_without_warnings_or_remote_assets(tmp_path):
    result = _build(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    # every page of the nav, and the API reference rendered from the docstrings
    api = (tmp_path / "site" / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert 'id="keras_resnet.models.ResNet"' in api
    assert "<code>ResNeXt50_32x4d</code>" in api  # the table written from specs.MODELS
    remote = []
    for folder, _, files in os.walk(tmp_path / "site"):
        for name in files:
            if name.endswith(".html"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    remote += re.findall(r'<(?:link|script|img)\b[^>]*(?:href|src)="(?:https?:)?//[^"]+"',
                                         f.read())
    assert not remote, remote[:5]


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    # the site's own configuration over two pages, one with a broken link and anchor
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n## Install\n", encoding="utf-8")
    (docs / "page.md").write_text(
        "# Page\n\n[gone](missing.md) and [no anchor](index.md#no-such-section)\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {os.path.join(ROOT, 'mkdocs.yml')}\n"
        "docs_dir: docs\nhooks: []\nwatch: []\nnav:\n  - index.md\n  - page.md\n", encoding="utf-8")
    result = _build(str(config), tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "missing.md" in log and "no-such-section" in log, log


def test_readme_links_point_at_files_of_the_repository():
    # the README is read on the repository's page, outside the site: its relative links
    # (docs pages, BENCHMARKS.md) must name files that exist
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", f.read())
    relative = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert relative, "the README links to no docs page"
    missing = [t for t in relative if not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, missing
