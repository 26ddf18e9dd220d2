"""Dependency audit: every distribution the project needs against PyPI's vulnerability data.

The same source pip-audit reads by default (the ``vulnerabilities`` of PyPI's JSON API,
from the Python advisory database), queried directly so it also works behind a
registry mirror that only serves project pages: when ``/pypi/NAME/VERSION/json`` is
missing, ``/pypi/NAME/json`` answers for the newest release, which is then only used
if it is the installed one. Prints what it could and could not audit; exits 1 on any
known vulnerability, 2 when PyPI could not be asked or could not say for most.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import metadata
from typing import Any

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPI = "https://pypi.org/pypi"
PROJECT = "whatsapp-campaign-dispatcher"


def installed(root: str = PROJECT, extras: frozenset[str] = frozenset({"test"})) -> dict[str, str]:
    """``name: version`` of everything the project needs, its test tools included,
    followed through every requirement (not whatever else sits in the environment)."""
    found: dict[str, str] = {}
    pending = [(canonicalize_name(root), extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, wanted = pending.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = ""  # required but absent: reported as not audited
            continue
        if name != canonicalize_name(root):
            found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": e}) for e in wanted | {""}):
                continue
            pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


async def vulnerabilities(
    client: httpx.AsyncClient, name: str, version: str
) -> list[dict[str, Any]] | None:
    """The advisories for ``name==version`` (withdrawn ones left out); None when PyPI
    cannot say."""
    if not version:
        return None
    answer = await client.get(f"{PYPI}/{name}/{version}/json")
    if answer.status_code == 200:
        return _standing(answer.json())
    answer = await client.get(f"{PYPI}/{name}/json")
    if answer.status_code != 200:
        return None
    project = answer.json()
    if project["info"]["version"] != version:
        return None
    return _standing(project)


def _standing(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in page.get("vulnerabilities") or [] if not v.get("withdrawn")]


async def audit() -> int:
    packages = installed()
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=30, limits=limits, follow_redirects=True) as client:
        try:
            results = await asyncio.gather(
                *(vulnerabilities(client, name, version) for name, version in packages.items())
            )
        except httpx.HTTPError as exc:
            print(f"dependency audit FAILED: PyPI unreachable ({exc!r}); nothing audited")
            return 2
    found = dict(zip(packages, results, strict=True))
    unknown = sorted(name for name, vulns in found.items() if vulns is None)
    vulnerable = {name: vulns for name, vulns in found.items() if vulns}
    for name, vulns in sorted(vulnerable.items()):
        for vuln in vulns:
            fixed = ", ".join(str(v) for v in vuln.get("fixed_in") or []) or "no fix yet"
            print(f"VULNERABLE {name}=={packages[name]}: {vuln.get('id')} (fixed in {fixed})")
    print(
        f"dependency audit: {len(packages) - len(unknown)} of the {len(packages)} "
        f"distributions the project needs audited, {len(vulnerable)} with known vulnerabilities"
    )
    if unknown:
        print("not audited (PyPI has no data for the installed version): " + ", ".join(unknown))
    if len(unknown) * 2 > len(packages):
        print("dependency audit FAILED: PyPI could not say for most of them")
        return 2
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(audit()))
