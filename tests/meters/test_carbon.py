"""Carbon intensity from codecarbon's packaged table, a fixed value, or a live API (a local test server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from wattlab.errors import ConfigError
from wattlab.meters.carbon import (
    API_KEY_ENV,
    WORLD_AVERAGE_G_PER_KWH,
    CarbonIntensity,
    country_intensity,
    gco2e,
    resolve_intensity,
)
from wattlab.meters.estimate import codecarbon_data_file


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def table_value(alpha3: str) -> float:
    """Straight from codecarbon's JSON, independently of the code under test."""
    path = codecarbon_data_file("private_infra/global_energy_mix.json")
    assert path is not None, "codecarbon's energy-mix data should be installed"
    return float(json.loads(path.read_text())[alpha3]["carbon_intensity"])


@pytest.mark.parametrize("code", ["FR", "FRA", "fr", " fra "])
def test_country_by_alpha2_or_alpha3(code: str) -> None:
    intensity = country_intensity(code)
    assert intensity.country == "FRA"
    assert intensity.g_per_kwh == table_value("FRA")
    assert 0 < intensity.g_per_kwh < 200  # France's grid is mostly nuclear
    assert "codecarbon" in intensity.source and "France" in intensity.source


def test_other_countries_differ() -> None:
    assert resolve_intensity(country="DE").g_per_kwh == table_value("DEU")
    assert resolve_intensity(country="USA").g_per_kwh == table_value("USA")
    assert table_value("DEU") != table_value("FRA")


@pytest.mark.parametrize("code", ["XX", "ZZZ", "France", "1"])
def test_unknown_country_says_how_to_find_codes(code: str) -> None:
    with pytest.raises(ConfigError, match="unknown country code") as info:
        resolve_intensity(country=code)
    assert "ISO-3166" in (info.value.fix or "")


def test_world_average_when_unset() -> None:
    intensity = resolve_intensity()
    assert intensity.g_per_kwh == WORLD_AVERAGE_G_PER_KWH == 475.0
    assert intensity.country is None and "world average" in intensity.source


def test_fixed_value_wins() -> None:
    intensity = resolve_intensity(country="FR", fixed_g_per_kwh=123.0)
    assert (intensity.g_per_kwh, intensity.source, intensity.country) == (123.0, "configured", "FRA")
    assert intensity.as_dict() == {"g_per_kwh": 123.0, "source": "configured", "country": "FRA", "note": None}
    with pytest.raises(ConfigError):
        resolve_intensity(fixed_g_per_kwh=-1)


def test_gco2e_is_kwh_times_pue_times_intensity() -> None:
    assert gco2e(3.6e6, 100.0) == pytest.approx(100.0)  # 1 kWh at 100 g/kWh
    assert gco2e(3.6e6, CarbonIntensity(100.0, "configured"), pue=1.5) == pytest.approx(150.0)
    assert gco2e(1800.0, 475.0, pue=1.2) == pytest.approx(1800 / 3.6e6 * 1.2 * 475)
    with pytest.raises(ConfigError, match="PUE"):
        gco2e(1.0, 100.0, pue=0.9)


# --- the live API against a local server ------------------------------------------------------------
class _Api(BaseHTTPRequestHandler):
    status = 200
    delay_s = 0.0
    seen: list[tuple[str, str | None]] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        zone = parse_qs(urlparse(self.path).query).get("zone", [""])[0]
        type(self).seen.append((zone, self.headers.get("auth-token")))
        body = json.dumps({"zone": zone, "carbonIntensity": 42, "datetime": "2026-01-01T00:00:00Z"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self.status == 200:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"seen": [], "status": 200, "delay_s": 0.0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v3/carbon-intensity/latest", handler
    server.shutdown()
    server.server_close()


def test_live_intensity_with_api_key(api, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = api
    monkeypatch.setenv(API_KEY_ENV, "secret")
    intensity = resolve_intensity(country="FRA", api_url=url)
    assert intensity.g_per_kwh == 42.0 and intensity.country == "FRA"
    assert "electricitymaps live" in intensity.source and "zone FR" in intensity.source
    assert handler.seen == [("FR", "secret")]  # alpha-3 turned into the API's alpha-2 zone


def test_live_failure_falls_back_with_a_message(api) -> None:
    url, handler = api
    handler.status = 401
    intensity = resolve_intensity(country="FR", api_key="bad", api_url=url)
    assert intensity.g_per_kwh == table_value("FRA")
    assert intensity.note is not None and "401" in intensity.note


def test_live_timeout_falls_back(api) -> None:
    url, handler = api
    handler.delay_s = 0.5
    started = time.monotonic()
    intensity = resolve_intensity(country="FR", api_key="k", api_url=url, timeout_s=0.1)
    assert time.monotonic() - started < 0.45
    assert intensity.g_per_kwh == table_value("FRA") and intensity.note


def test_key_without_country_explains_itself() -> None:
    intensity = resolve_intensity(api_key="k")
    assert intensity.g_per_kwh == WORLD_AVERAGE_G_PER_KWH and "country or zone" in (intensity.note or "")
