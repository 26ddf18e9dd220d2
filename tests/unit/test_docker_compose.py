"""docker-compose.yml, read as data (no Docker engine here to run ``docker compose
config``): the services the README promises, their health checks, persistence and
the settings that keep Redis from losing tasks."""

from __future__ import annotations

from typing import Any

import yaml

from tests.conftest import ROOT


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_every_service_is_there_and_the_long_running_ones_check_their_health() -> None:
    services = compose()["services"]
    assert set(services) == {
        "redis", "postgres", "migrate", "api", "worker", "beat", "flower", "simulator", "proxy"
    }  # fmt: skip
    for name in ("redis", "postgres", "api", "worker", "flower", "simulator"):
        assert "test" in services[name]["healthcheck"], name


def test_redis_keeps_tasks_across_restarts_and_never_evicts_them() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_state_lives_in_volumes_and_secrets_come_from_the_environment() -> None:
    data = compose()
    assert {"redis", "postgres", "reports"} <= set(data["volumes"])
    flower = data["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    env = data["services"]["api"]["environment"]
    assert env["WEBHOOK_TOKEN"].startswith("${WEBHOOK_TOKEN:?")
    assert env["DROP_DIR"] == "/app/campaigns"
    waits = data["services"]["worker"]["depends_on"]
    assert waits["migrate"]["condition"] == "service_completed_successfully"
    assert waits["postgres"]["condition"] == "service_healthy"


def test_the_proxy_is_the_only_public_entry_to_the_webhook_app() -> None:
    data = compose()
    proxy, api = data["services"]["proxy"], data["services"]["api"]
    assert sorted(proxy["ports"]) == ["443:443", "80:80"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    # The webhooks through the proxy only; the console, API and metrics on the host's
    # loopback (each behind an API key).
    assert api["ports"] == ["127.0.0.1:8001:8001"]
    assert api["expose"] == ["8000"]
    # The proxy's own address is the one whose X-Forwarded-For names the caller.
    assert api["environment"]["TRUSTED_PROXIES"] == proxy["networks"]["default"]["ipv4_address"]
    assert "--internal-port" in api["command"]
