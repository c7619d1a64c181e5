"""Put the JavaScript and CSS that solara pages load into solara's asset cache, from the npm registry.

A solara page loads its front end (``@widgetti/solara-vuetify3-app``,
``requirejs``, font-awesome, ...) through the solara server, which fetches
each file from the jsDelivr CDN on first use and keeps it under
``solara.settings.assets.proxy_cache_dir`` (``<venv>/share/solara/cdn``).
Where the CDN cannot be reached (CI runners and sandboxes whose network
reaches only package registries) the page stays blank. jsDelivr's ``/npm/``
paths are the contents of npm packages, so this script fills the cache with
``npm pack`` from the npm registry instead: the page then loads offline.

The packages are read from the installed solara's page template (so they
follow solara upgrades), plus the few that solara widgets load at run time.

Usage (in the project's virtual environment; needs ``npm`` on PATH)::

    python .ci/solara_assets.py            # fill the cache (skips packages already there)
    python .ci/solara_assets.py --check    # exit 1 if a package is missing from the cache
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: Loaded by solara widgets at run time rather than named in the page template.
RUNTIME_PACKAGES = ("@widgetti/vue-grid-layout@2.3.13-alpha.2",)
_SPEC = re.compile(r"\{\{\s*cdn\s*\}\}/((?:@[\w.-]+/)?[\w.-]+@[\w.-]+)/")


def required_packages() -> list[str]:
    """``name@version`` of every npm package the installed solara's page and widgets load."""
    import solara.server
    import solara.server.settings
    from solara.util import IPYVUETIFY_V3

    template = Path(solara.server.__file__).parent / "templates" / "solara.html.j2"
    specs = dict.fromkeys(_SPEC.findall(template.read_text(encoding="utf-8")))
    fontawesome = solara.server.settings.assets.fontawesome_path.strip("/").split("/")[0]
    specs.update(dict.fromkeys([fontawesome, *RUNTIME_PACKAGES]))
    # the template names the front ends for Vuetify 2 and 3; the installed ipyvuetify picks one
    unused = "@widgetti/solara-vuetify-app@" if IPYVUETIFY_V3 else "@widgetti/solara-vuetify3-app@"
    return [spec for spec in specs if not spec.startswith(unused)]


def cache_dir() -> Path:
    import solara.server.settings

    return Path(solara.server.settings.assets.proxy_cache_dir)


def install(spec: str, cache: Path, work: Path) -> None:
    """``npm pack`` one package and unpack its ``package/`` folder to ``cache/spec``."""
    out = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(work)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tarball = work / out.stdout.strip().splitlines()[-1]
    target = cache / spec
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(staging, filter="data")
        (root,) = [p for p in staging.iterdir() if p.is_dir()]  # npm tarballs hold one folder, usually package/
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        root.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report packages missing from the cache")
    args = parser.parse_args(argv)
    cache = cache_dir()
    missing = [spec for spec in required_packages() if not (cache / spec).is_dir()]
    if args.check or not missing:
        for spec in missing:
            print(f"missing: {cache / spec}")
        return 1 if missing else 0
    if shutil.which("npm") is None:
        print("solara_assets: npm is not on PATH (apt-get install -y npm)", file=sys.stderr)
        return 2
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for spec in missing:
            install(spec, cache, Path(work))
            print(f"cached {spec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
